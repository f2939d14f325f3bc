package s3io

import (
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

func testClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	o, err := ParseLocation("s3://b/p?access_key=k&secret_access_key=s&region=us-east-1&endpoint=" + srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func slowDown(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprint(w, `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
}

// A SlowDown is retried until the server takes the request.
func TestRetrySlowDown(t *testing.T) {
	var calls atomic.Int64
	c := testClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			slowDown(w)
			return
		}
		w.Header().Set("ETag", `"x"`)
	}))
	if err := NewStorage(c).Put(context.Background(), store.ConfigHandle, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d requests, want 2", calls.Load())
	}
}

// A cancelled context is never retried, and comes back as itself.
func TestNoRetryWhenCancelled(t *testing.T) {
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := testClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		cancel()
		slowDown(w)
	}))
	_, err := NewStorage(c).Get(ctx, store.ConfigHandle, 0, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Fatalf("a cancellation classified as an S3 failure: %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d requests after cancelling, want 1", calls.Load())
	}
}

// Many requests failing at once do not exhaust a client-side retry
// budget: each one still gets its retries.
func TestRetryBudgetDoesNotStarve(t *testing.T) {
	var calls atomic.Int64
	seen := make(map[string]int)
	var mu sync.Mutex
	c := testClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		mu.Lock()
		seen[r.URL.Path]++
		first := seen[r.URL.Path] == 1
		mu.Unlock()
		if first {
			slowDown(w)
			return
		}
		w.Header().Set("ETag", `"x"`)
	}))
	st := NewStorage(c)
	const n = 200 // the SDK's default quota allows 500/5 = 100 retries
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			errs <- st.Put(context.Background(), store.Handle{Kind: store.KindIndex, Name: fmt.Sprintf("%064x", i)}, []byte("x"))
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 2*n {
		t.Fatalf("%d requests, want %d", calls.Load(), 2*n)
	}
}

func TestOptions(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	for _, c := range []struct{ loc, bucket, prefix, endpoint string }{
		{"s3://b", "b", "", ""},
		{"s3://b/", "b", "", ""},
		{"s3://b/photos", "b", "photos/", ""},
		{"s3://b/a%20b/c/", "b", "a b/c/", ""},
		{"s3://b/p?endpoint=minio:9000", "b", "p/", "https://minio:9000"},
		// use_tls wins over the endpoint's scheme, whichever comes first.
		{"s3://b/p?use_tls=false&endpoint=minio:9000", "b", "p/", "http://minio:9000"},
		{"s3://b/p?endpoint=minio:9000&use_tls=false", "b", "p/", "http://minio:9000"},
		{"s3://b/p?endpoint=http://minio:9000&use_tls=true", "b", "p/", "https://minio:9000"},
		{"s3://b/p?endpoint=http://minio:9000", "b", "p/", "http://minio:9000"},
	} {
		o, err := ParseLocation(c.loc)
		if err != nil {
			t.Fatalf("%s: %v", c.loc, err)
		}
		if o.Bucket != c.bucket || o.Prefix != c.prefix || o.endpoint() != c.endpoint {
			t.Errorf("%s: bucket %q prefix %q endpoint %q", c.loc, o.Bucket, o.Prefix, o.endpoint())
		}
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
	o, _ := ParseLocation("s3://b/?use_tls=true")
	if o.endpoint() != "https://127.0.0.1:9000" {
		t.Errorf("use_tls on AWS_ENDPOINT_URL: %q", o.endpoint())
	}
	for _, bad := range []string{"/srv", "s3://", "s3:///p", "s3://b/?storage_class=COLD", "s3://b/?sse=rot13",
		"s3://b/?nope=1", "s3://b/?use_tls=maybe", "s3://b/?part_size=1"} {
		if _, err := ParseLocation(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	o, _ = ParseLocation("s3://b/?storage_class=glacier&sse_kms_key_id=k1")
	if o.StorageClass != "GLACIER" || o.SSE != "aws:kms" || o.SSEKMSKeyID != "k1" {
		t.Errorf("storage class / SSE: %+v", o)
	}
}

func TestSourcePartSize(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		etag       string
		size, want int64
	}{
		{`"d41d8cd98f00b204e9800998ecf8427e"`, 10 * mib, 0}, // single part
		{`"ea1e8d11ec03faa4228c226c31f65f3c-2"`, 10 * mib, 8 * mib},
		{`"x-3"`, 20*mib + 321, 8 * mib}, // the aws CLI's 8 MiB parts
		{`"x-5"`, 24 * mib, 5 * mib},     // rclone's 5 MiB
		{`"x-1"`, 3 * mib, 8 * mib},      // one part holds it all
		{`"x-1"`, 100 * mib, 100 * mib},  // one part of 100 MiB
		{`"x-7"`, 1000 * mib, 143 * mib}, // an even split, rounded up to a MiB
		{`"x-2"`, 4 * mib, 0},            // parts under 5 MiB: no fit
		{`"x-1"`, 2048 * mib, 0},         // too large a part to hold
		{`"x-abc"`, 10 * mib, 0},         // not a part count
	} {
		if got := sourcePartSize(c.size, etagParts(c.etag)); got != c.want {
			t.Errorf("%s, %d bytes: part %d, want %d", c.etag, c.size, got, c.want)
		}
	}
}
