package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/coffer-backup/coffer/engine/backup"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/tree"
)

// TestLookupAndSeekFound: a missing key gives ok=false and no node, a
// present one its node, in an inline directory and across pages.
func TestLookupAndSeekFound(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "a"), []byte("a"))
	const n = 1500
	for i := range n {
		writeFile(t, filepath.Join(src, "d", fmt.Sprintf("e%04d", i)), nil)
	}
	sn := backupDir(t, r, src, backup.Options{})

	root, err := r.LoadDir(ctx, sn.Root)
	if err != nil {
		t.Fatal(err)
	}
	if root.Inline == nil {
		t.Fatal("test setup: the root directory is paged")
	}
	lookup := func(d *tree.Dir, key string, want bool) *tree.Node {
		t.Helper()
		nd, ok, err := r.Lookup(ctx, d, key)
		switch {
		case err != nil:
			t.Fatalf("Lookup(%q): %v", key, err)
		case ok != want:
			t.Fatalf("Lookup(%q) found %v, want %v", key, ok, want)
		case ok && (nd == nil || nd.SortKey() != key):
			t.Fatalf("Lookup(%q) = %+v", key, nd)
		case !ok && nd != nil:
			t.Fatalf("Lookup(%q) = %+v with ok=false", key, nd)
		}
		return nd
	}
	lookup(root, "a", true)
	sub := lookup(root, "d/", true)
	for _, key := range []string{"", "a/", "b", "d", "zzz"} {
		lookup(root, key, false)
	}

	paged, err := r.LoadDir(ctx, sub.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if len(paged.Pages) < 2 {
		t.Fatalf("test setup: %d entries made %d pages", n, len(paged.Pages))
	}
	for _, key := range []string{"e0000", paged.Pages[1].First, "e0777", fmt.Sprintf("e%04d", n-1)} {
		lookup(paged, key, true)
	}
	for _, key := range []string{"", "a", "e0777/", "e0777~", "zzz"} {
		lookup(paged, key, false)
	}

	// Seek: found entries, and absent ones leave the iterator on the next.
	it := r.Iter(paged)
	seek := func(key string, want bool) {
		t.Helper()
		nd, ok, err := it.Seek(ctx, key)
		switch {
		case err != nil:
			t.Fatalf("Seek(%q): %v", key, err)
		case ok != want:
			t.Fatalf("Seek(%q) found %v, want %v", key, ok, want)
		case ok && (nd == nil || nd.SortKey() != key):
			t.Fatalf("Seek(%q) = %+v", key, nd)
		case !ok && nd != nil:
			t.Fatalf("Seek(%q) = %+v with ok=false", key, nd)
		}
	}
	peek := func(want string) {
		t.Helper()
		nd, ok, err := it.Peek(ctx)
		if err != nil || ok != (want != "") || (ok && nd.Name != want) || (!ok && nd != nil) {
			t.Fatalf("Peek = %+v, %v, %v; want %q", nd, ok, err, want)
		}
	}
	seek("e0010", true)
	seek("e0010~", false)
	peek("e0011")
	seek(paged.Pages[1].First, true)
	seek("e1000", true)
	seek(fmt.Sprintf("e%04d", n-1), true)
	seek("zzz", false)
	peek("")
	if nd, ok, err := it.Next(ctx); err != nil || ok || nd != nil {
		t.Fatalf("Next at the end = %+v, %v, %v", nd, ok, err)
	}
}
