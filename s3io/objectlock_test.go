package s3io

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
)

// lockServer answers just enough S3 for the object-lock paths and
// records each request's method, query, lock headers and whether its
// Content-MD5 matched its body.
type lockServer struct {
	mu    sync.Mutex
	reqs  []string
	until time.Time // GetObjectRetention's answer; zero: none
}

func (s *lockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	md5ok := "no-md5"
	if m := r.Header.Get("Content-MD5"); m != "" {
		sum := md5.Sum(body)
		md5ok = fmt.Sprint("md5=", m == base64.StdEncoding.EncodeToString(sum[:]))
	}
	q := r.URL.Query()
	what := r.Method
	for _, k := range []string{"uploads", "uploadId", "retention", "object-lock"} {
		if q.Has(k) {
			what += " ?" + k
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, fmt.Sprintf("%s %s mode=%s until=%s %s", what, r.URL.Path,
		r.Header.Get("x-amz-object-lock-mode"), r.Header.Get("x-amz-object-lock-retain-until-date"), md5ok))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml")
	switch {
	case q.Has("object-lock"):
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `<Error><Code>ObjectLockConfigurationNotFoundError</Code><Message>Object Lock configuration does not exist for this bucket</Message></Error>`)
	case q.Has("retention") && r.Method == http.MethodGet:
		if s.until.IsZero() {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<Error><Code>NoSuchObjectLockConfiguration</Code><Message>none</Message></Error>`)
			return
		}
		fmt.Fprintf(w, `<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>`, s.until.Format(time.RFC3339))
	case q.Has("uploads"):
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
	case q.Has("uploadId") && r.Method == http.MethodPost:
		fmt.Fprint(w, `<CompleteMultipartUploadResult><ETag>"e"</ETag></CompleteMultipartUploadResult>`)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("ETag", `"e"`)
	}
}

func (s *lockServer) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reqs
	s.reqs = nil
	return r
}

// Under a policy, a pack's PUT, a multipart upload's start and each of
// its parts carry the lock (mode, date N days ahead) and a matching
// Content-MD5; a lock object and a storage without a policy carry
// neither.
func TestObjectLockPuts(t *testing.T) {
	ctx := context.Background()
	srv := &lockServer{}
	st := NewStorage(testClient(t, srv))
	pack := store.Handle{Kind: store.KindDataPack, Name: strings.Repeat("ab", 32)}
	lock := store.Handle{Kind: store.KindLock, Name: "prune"}

	if err := st.Put(ctx, pack, []byte("unlocked")); err != nil {
		t.Fatal(err)
	}
	if got := srv.take(); len(got) != 1 || !strings.Contains(got[0], "mode= until= no-md5") {
		t.Fatalf("put without a policy: %q", got)
	}

	st.SetRetention(store.RetentionPolicy{Mode: store.Compliance, Days: 3})
	before := time.Now()
	if err := st.Put(ctx, pack, []byte("locked")); err != nil {
		t.Fatal(err)
	}
	got := srv.take()
	if len(got) != 1 || !strings.Contains(got[0], "mode=COMPLIANCE") || !strings.Contains(got[0], "md5=true") {
		t.Fatalf("locked put: %q", got)
	}
	_, after, _ := strings.Cut(got[0], "until=")
	until, err := time.Parse(time.RFC3339, strings.Fields(after)[0])
	if err != nil || until.Before(before.Add(72*time.Hour-time.Second)) || until.After(time.Now().Add(72*time.Hour)) {
		t.Fatalf("retain-until %s (%v), want 3 days after %s", until, err, before)
	}
	if err := st.Put(ctx, lock, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := srv.take(); len(got) != 1 || !strings.Contains(got[0], "mode= until= no-md5") {
		t.Fatalf("put of a lock object: %q", got)
	}

	big := make([]byte, storeMultipartAbove+100)
	big[5] = 1
	if err := st.Put(ctx, pack, big); err != nil {
		t.Fatal(err)
	}
	got = srv.take()
	if len(got) != 4 || !strings.HasPrefix(got[0], "POST ?uploads") || !strings.Contains(got[0], "mode=COMPLIANCE until=2") {
		t.Fatalf("locked multipart upload: %q", got)
	}
	for _, r := range got[1:3] {
		if !strings.HasPrefix(r, "PUT ?uploadId") || !strings.Contains(r, "md5=true") {
			t.Fatalf("part of a locked upload: %q", got)
		}
	}
}

// Delete reads the lock first: while it holds, nothing is deleted and
// the error is a *store.LockedError; once past, the DELETE is sent.
// CheckRetention names the bucket when it has no Object Lock.
func TestObjectLockDelete(t *testing.T) {
	ctx := context.Background()
	srv := &lockServer{until: time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)}
	st := NewStorage(testClient(t, srv))
	st.SetRetention(store.RetentionPolicy{Mode: store.Governance, Days: 2})
	snap := store.Handle{Kind: store.KindSnapshot, Name: strings.Repeat("cd", 32)}
	err := st.Delete(ctx, snap)
	var le *store.LockedError
	if !errors.As(err, &le) || !le.Until.Equal(srv.until) || le.Mode != store.Governance {
		t.Fatalf("Delete of a locked snapshot: %v", err)
	}
	if got := srv.take(); len(got) != 1 || !strings.HasPrefix(got[0], "GET ?retention") {
		t.Fatalf("a refused Delete sent %q", got)
	}
	srv.until = time.Now().Add(-time.Hour)
	if err := st.Delete(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if got := srv.take(); len(got) != 2 || !strings.HasPrefix(got[1], "DELETE") {
		t.Fatalf("Delete after the date sent %q", got)
	}

	err = st.CheckRetention(ctx, store.RetentionPolicy{Mode: store.Governance, Days: 1})
	if !errors.Is(err, ErrNoObjectLock) || !store.IsPermanent(err) || !strings.Contains(err.Error(), "bucket b does not have Object Lock enabled") ||
		!strings.Contains(err.Error(), "--object-lock-enabled-for-bucket") {
		t.Fatalf("CheckRetention on a bucket without Object Lock: %v", err)
	}
}

// A locked write refused names both actions it needs.
func TestClassifyLockedPut(t *testing.T) {
	err := classify(sdkError("PutObject", 403, "AccessDenied", "Access Denied."), "put", lockedPutAction, "b", "p/k")
	if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "access denied: s3:PutObject and s3:PutObjectRetention on arn:aws:s3:::b/p/k") {
		t.Fatalf("classify: %v", err)
	}
}
