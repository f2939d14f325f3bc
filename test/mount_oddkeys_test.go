package test

import (
	"bytes"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMountOddKeys mounts a snapshot of a bucket holding the odd keys of
// TestS3OddKeys (gofakes3): every key shows under the documented
// key→path mapping, segments longer than NAME_MAX as nested piece
// folders, and the reverse mapping of the mounted paths gives back the
// keys and their bytes, as it does for a restore into a folder.
func TestMountOddKeys(t *testing.T) {
	needFUSE(t)
	be, endpoint := fakeS3(t)
	if err := be.CreateBucket("odd"); err != nil {
		t.Fatal(err)
	}
	keys := append(append(append([]string{}, oddKeys...), besideKeys...), leadingSlashKeys...)
	keys = append(keys, strings.Repeat("s", 300), strings.Repeat("s", 300)+"/in", strings.Repeat("s", 253)+"tail")
	want := map[string]string{}
	for _, k := range keys {
		body := "body of " + k
		if _, err := be.PutObject("odd", k, map[string]string{}, bytes.NewReader([]byte(body)), int64(len(body)), nil); err != nil {
			t.Fatalf("seeding %q: %v", k, err)
		}
		want[k] = body
	}
	e := newEnv(t)
	e.extra = fakeEnv(endpoint)
	s := e.backup("s3://odd/")
	if s.Stats.Files != uint64(len(keys)) || s.Partial {
		t.Fatalf("backup of %d odd keys: %+v", len(keys), s)
	}
	m := e.mount(nil, nil, s.Short)
	start := time.Now()
	got := folderKeys(t, m.dir)
	if strings.Join(sortedKeys(got), "\n") != strings.Join(sortedKeys(want), "\n") {
		t.Fatalf("keys rebuilt from the mount:\n%q\nwant\n%q", sortedKeys(got), sortedKeys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q: mounted body %q, want %q", k, got[k], v)
		}
	}
	t.Logf("walked and read %d keys in %v", len(got), time.Since(start))
	m.stop(syscall.SIGTERM)
}
