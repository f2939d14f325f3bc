package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIndexCacheNote: a damaged index cache is dropped and rebuilt, the
// command still answers, and it says once (unless -q) why it read every
// index file again.
func TestIndexCacheNote(t *testing.T) {
	e := newEnv(t)
	cache := t.TempDir()
	e.extra = []string{"XDG_CACHE_HOME=" + cache}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("backup", src)
	const note = "the index kept between runs was not used"
	want := e.ok("ls", "latest").stdout
	if r := e.ok("ls", "latest"); strings.Contains(r.stderr, note) {
		t.Fatalf("a note with a sound cache:\n%s", r)
	}
	damage := func() {
		t.Helper()
		ms, _ := filepath.Glob(filepath.Join(cache, "coffer-index", "*", "manifest"))
		if len(ms) != 1 {
			t.Fatalf("index cache manifests: %v", ms)
		}
		b, err := os.ReadFile(ms[0])
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 0xff
		if err := os.WriteFile(ms[0], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	damage()
	r := e.ok("ls", "latest")
	if !strings.Contains(r.stderr, note) || !strings.Contains(r.stderr, "manifest") || r.stdout != want {
		t.Fatalf("ls over a damaged index cache: want the same listing and a note naming the manifest, got\n%s", r)
	}
	if r := e.ok("ls", "latest"); strings.Contains(r.stderr, note) || r.stdout != want {
		t.Fatalf("the rebuilt cache: %s", r)
	}
	damage()
	if r := e.ok("ls", "-q", "latest"); strings.Contains(r.stderr, note) || r.stdout != want {
		t.Fatalf("-q: %s", r)
	}
}
