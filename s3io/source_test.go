package s3io

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/store"
)

// fakeBucket serves n keys p/k00000…, 1000 a page; HEAD and GET of the
// keys in headErr answer that status; listFailAt fails that page.
func fakeBucket(n int, headErr map[int]int, listFailAt int, heads *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("list-type") == "2" {
			start, _ := strconv.Atoi(r.URL.Query().Get("continuation-token"))
			if listFailAt >= 0 && start/1000 == listFailAt {
				w.WriteHeader(403)
				fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>no</Message></Error>`)
				return
			}
			end := min(start+1000, n)
			var b strings.Builder
			fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys>`, end-start)
			if end < n {
				fmt.Fprintf(&b, `<IsTruncated>true</IsTruncated><NextContinuationToken>%d</NextContinuationToken>`, end)
			} else {
				b.WriteString(`<IsTruncated>false</IsTruncated>`)
			}
			for i := start; i < end; i++ {
				fmt.Fprintf(&b, `<Contents><Key>p/k%05d</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>"e%d"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>`, i, i)
			}
			b.WriteString(`</ListBucketResult>`)
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, b.String())
			return
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/b/p/k"))
		if st, ok := headErr[i]; ok {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(st)
			code := map[int]string{404: "NoSuchKey", 403: "AccessDenied", 412: "PreconditionFailed"}[st]
			fmt.Fprintf(w, `<Error><Code>%s</Code><Message>x</Message></Error>`, code)
			return
		}
		if r.Method == http.MethodHead {
			heads.Add(1)
			w.Header().Set("ETag", fmt.Sprintf(`"e%d"`, i))
			w.Header().Set("Content-Length", "4")
			w.Header().Set("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
			w.Header().Set("Content-Type", "text/x-scratch")
			return
		}
		w.WriteHeader(500)
	})
}

func walkAll(t *testing.T, n int, headErr map[int]int, listFailAt int, deferAttrs bool, fnErrAt int) ([]string, []string, int64, error) {
	var heads atomic.Int64
	c := testClient(t, fakeBucket(n, headErr, listFailAt, &heads))
	src := NewSource(c)
	if deferAttrs {
		src.DeferAttrs()
	}
	var got, warned []string
	errFn := errors.New("fn failed")
	done := make(chan error, 1)
	go func() {
		done <- src.Walk(context.Background(), func(it *backup.Item) error {
			if len(got) == fnErrAt {
				return errFn
			}
			if it.Path != "" && !deferAttrs && it.Node.Size != 4 {
				t.Errorf("%s: size %d, HEAD not applied", it.Path, it.Node.Size)
			}
			got = append(got, it.Path)
			return nil
		}, func(p string, err error) { warned = append(warned, p+": "+err.Error()) })
	}()
	select {
	case err := <-done:
		return got, warned, heads.Load(), err
	case <-time.After(20 * time.Second):
		t.Fatalf("Walk hung")
	}
	return nil, nil, 0, nil
}

// TestWalkWithHeads: a walk that HEADs each object keeps the LIST order,
// skips objects deleted since the LIST, warns about and skips objects that
// changed, stops early on a permanent error, and returns fn's error at
// once (it used to hang when fn failed on a bucket larger than the window).
func TestWalkWithHeads(t *testing.T) {
	got, warned, heads, err := walkAll(t, 5000, map[int]int{7: 404, 9: 412}, -1, false, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1+5000-2 || got[0] != "" {
		t.Fatalf("%d items (first %q), want the root and 4998 objects", len(got), got[0])
	}
	for i := 2; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Fatalf("out of LIST order: %q then %q", got[i-1], got[i])
		}
	}
	if len(warned) != 1 || !strings.HasPrefix(warned[0], "k00009") {
		t.Fatalf("warned %v, want k00009 (changed while listed)", warned)
	}
	if heads != 4998 {
		t.Fatalf("%d HEADs answered, want 4998", heads)
	}

	_, _, heads, err = walkAll(t, 5000, map[int]int{3000: 403}, -1, false, -1)
	var pe *store.PermanentError
	if !errors.As(err, &pe) || !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("a denied HEAD: err = %v, want a permanent access denied", err)
	}
	if heads > 4500 {
		t.Errorf("%d HEADs after a permanent error at object 3000: the walk did not stop", heads)
	}

	for _, deferAttrs := range []bool{false, true} {
		got, _, _, err := walkAll(t, 8000, nil, -1, deferAttrs, 2)
		if err == nil || err.Error() != "fn failed" || len(got) != 2 {
			t.Fatalf("deferAttrs=%v: fn failing at item 2: err = %v after %d items", deferAttrs, err, len(got))
		}
	}

	got, _, _, err = walkAll(t, 5000, nil, 2, true, -1)
	if !errors.Is(err, ErrAccessDenied) || len(got) > 2001 {
		t.Fatalf("LIST failing on page 3: err = %v after %d items", err, len(got))
	}
}

// TestWalkFilter: keys left out by the Filter are dropped on the LIST:
// no HEAD for them, and they are counted.
func TestWalkFilter(t *testing.T) {
	var heads atomic.Int64
	src := NewSource(testClient(t, fakeBucket(3000, nil, -1, &heads)))
	src.Filter = &backup.Filter{}
	if err := src.Filter.Include.AddAll([]string{"prefix:k01", "prefix:k02"}, false); err != nil {
		t.Fatal(err)
	}
	if err := src.Filter.Exclude.AddAll([]string{"k02[0-4]*"}, false); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := src.Walk(context.Background(), func(it *backup.Item) error {
		got = append(got, it.Path)
		return nil
	}, func(p string, err error) { t.Errorf("warned %s: %v", p, err) })
	if err != nil {
		t.Fatal(err)
	}
	// k01000…k01999 and k02500…k02999, and the root.
	if len(got) != 1+1000+500 || got[1] != "k01000" || got[len(got)-1] != "k02999" {
		t.Fatalf("%d items, first %q, last %q", len(got), got[1], got[len(got)-1])
	}
	if heads.Load() != 1500 {
		t.Errorf("%d HEADs, want 1500 (none for excluded keys)", heads.Load())
	}
	if c := src.ExcludedCounts(); c.Files != 1500 || c.Dirs != 0 {
		t.Errorf("counted %+v, want 1500 files excluded", c)
	}
}
