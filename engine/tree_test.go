package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/coffer-backup/coffer/engine/backup"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
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

// TestTreeLayoutFollowsStoreVersion: a directory too big for one
// directory blob of references is cut into index pages in a format-2
// store, and stays one blob of page references (layout 1, all that
// format 1 knows) in a format-1 store; both list and look up the same.
func TestTreeLayoutFollowsStoreVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two directories of 400,000 entries")
	}
	ctx := context.Background()
	const n = 400_000
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, Version: version})
			if r.Params.Version != version {
				t.Fatalf("created a store of format %d, asked %d", r.Params.Version, version)
			}
			blobs := map[crypto.ID][]byte{}
			b := r.NewTreeBuilder(func(p []byte) (crypto.ID, error) {
				id := crypto.Hash(p)
				blobs[id] = bytes.Clone(p)
				return id, nil
			})
			key := func(i int) string { return fmt.Sprintf("logs-2026-11-27-host-a-request-%08d.json", i) }
			for i := range n {
				if err := b.Add(&tree.Node{Name: key(i), Type: tree.TypeFile, Mode: 0o644, MTime: int64(i)}, tree.DirStats{}); err != nil {
					t.Fatal(err)
				}
			}
			id, _, err := b.Finish()
			if err != nil {
				t.Fatal(err)
			}
			d, err := tree.DecodeDir(blobs[id])
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("format %d: height %d, directory blob %d bytes, %d blobs", version, d.Height, len(blobs[id]), len(blobs))
			switch {
			case version == 1 && (d.Height != 0 || len(blobs[id]) <= tree.DirMaxRefBytes):
				t.Fatalf("format 1: height %d, a directory blob of %d bytes", d.Height, len(blobs[id]))
			case version == 2 && (d.Height < 1 || len(blobs[id]) > tree.DirMaxRefBytes+64):
				t.Fatalf("format 2: height %d, a directory blob of %d bytes", d.Height, len(blobs[id]))
			}
			l := memLoader(blobs)
			for _, i := range []int{0, 1, n / 3, n - 1} {
				if nd, ok, err := tree.Lookup(ctx, l, d, key(i)); err != nil || !ok || nd.MTime != int64(i) {
					t.Fatalf("lookup %d: %v %v", i, ok, err)
				}
			}
			it := tree.NewIter(l, d)
			for i := 0; ; i++ {
				nd, ok, err := it.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					if i != n {
						t.Fatalf("listed %d entries of %d", i, n)
					}
					break
				}
				if nd.MTime != int64(i) {
					t.Fatalf("entry %d is %q", i, nd.Name)
				}
			}
		})
	}
}

// memLoader loads tree pages from a map of blobs.
type memLoader map[crypto.ID][]byte

func (m memLoader) LoadPage(_ context.Context, id crypto.ID) ([]tree.Node, error) {
	return tree.DecodePage(m[id])
}

func (m memLoader) LoadIndexPage(_ context.Context, id crypto.ID) (*tree.Dir, error) {
	return tree.DecodeIndexPage(m[id])
}
