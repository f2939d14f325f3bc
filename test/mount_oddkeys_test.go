package test

import (
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
	keys := append(append(append([]string{}, oddKeys...), besideKeys...), leadingSlashKeys...)
	keys = append(keys, strings.Repeat("s", 300), strings.Repeat("s", 300)+"/in", strings.Repeat("s", 253)+"tail")
	e, _, s, want := backupOddKeys(t, keys)
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
