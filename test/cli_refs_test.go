package test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshotRefs: a reference that cannot name a snapshot is a usage
// error like a missing argument (exit 2); one that names none is a
// failure (exit 1); "latest" is accepted in any case.
func TestSnapshotRefs(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.backup(src)
	e.fail(2, []string{`not a snapshot id (hex digits) or "latest"`}, "ls", "xyz")
	e.fail(2, nil, "cat", "latest")
	e.fail(1, []string{"no such snapshot"}, "ls", "abcdef12")
	if got := e.ok("cat", "LATEST:/a").stdout; got != "hi" {
		t.Fatalf("cat LATEST:/a = %q", got)
	}
	e.ok("ls", "Latest:/")
}
