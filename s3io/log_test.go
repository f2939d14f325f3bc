package s3io

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// captureStderr points os.Stderr at a pipe until the returned function
// is called, which restores it and returns what was written.
func captureStderr(t *testing.T) func() string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	done := false
	stop := func() string {
		if done {
			return ""
		}
		done = true
		os.Stderr = saved
		w.Close()
		return <-got
	}
	t.Cleanup(func() { stop() })
	return stop
}

// The SDK's log goes to Options.Log and never to stderr, where it would
// break into coffer's output whatever -q or -v say. gofakes3 keeps no
// checksums, like any server for an object stored without one, so it
// answers a GET that asks for them (ChecksumMode ENABLED, which getRange
// sets for a whole object) with none, and the SDK logs (at DEBUG)
// "Response has no supported checksum". Given a multipart object's
// composite checksum ("…-2", added here in front of gofakes3) it logs (at
// WARN) "Skipped validation of multipart checksum".
func TestSDKLogGoesToLogFunc(t *testing.T) {
	be := s3mem.New()
	if err := be.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	body := []byte("some bytes")
	if _, err := be.PutObject("b", "p/obj", map[string]string{}, bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(be).Server()
	for _, tc := range []struct {
		name, header, want string
	}{
		{"no checksum", "", "Response has no supported checksum"},
		{"multipart checksum", "AAAAAA==-2", "Skipped validation of multipart checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr := captureStderr(t) // before NewClient: the SDK's default logger keeps the os.Stderr it finds
			var mu sync.Mutex
			var logged []string
			c := testClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("x-amz-checksum-crc32", tc.header)
				}
				fake.ServeHTTP(w, r)
			}), func(o *Options) {
				o.Log = func(format string, a ...any) {
					mu.Lock()
					defer mu.Unlock()
					logged = append(logged, fmt.Sprintf(format, a...))
				}
			})
			out, err := c.getRange(context.Background(), c.key("obj"), "", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read %q, %v", got, err)
			}
			if s := stderr(); s != "" {
				t.Errorf("the SDK wrote to stderr: %q", s)
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(strings.Join(logged, "\n"), tc.want) {
				t.Errorf("Options.Log got %q, want a line with %q", logged, tc.want)
			}
		})
	}
}
