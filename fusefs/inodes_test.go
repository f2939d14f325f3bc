package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestInodesBounded: walking a snapshot of many more entries than
// MaxInodes leaves at most about MaxInodes nodes in the mount, and the
// entries dropped for it come back, right, when looked up again.
func TestInodesBounded(t *testing.T) {
	r := newRepo(t)
	src := &memSource{uri: "/many"}
	const dirs, files = 40, 100 // 4,040 entries
	want := map[string][]byte{}
	for d := range dirs {
		for f := range files {
			p := fmt.Sprintf("d%02d/f%03d", d, f)
			want[p] = []byte(p)
			src.file(p, want[p])
		}
	}
	sn := backupTree(t, r, src)
	const max = 500
	r.LoadIndex(context.Background())
	f := New(r, Options{MaxInodes: max})
	t.Cleanup(f.Close)
	top, err := f.SubtreeRoot(sn, sn.RootNode())
	if err != nil {
		t.Fatal(err)
	}
	root := mountTree(t, top)

	walk := func() { t.Helper(); walkAll(t, root, dirs*files) }
	walk()
	// The kernel forgets what it was told to drop a moment later.
	settle := func() Stats {
		t.Helper()
		var st Stats
		for range 500 { // 10 s: FORGETs come late on a loaded machine
			if st = f.Stats(); st.Inodes <= max+files {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return st
	}
	st := settle()
	t.Logf("after the walk: %+v nodes, %d invalidated", st.Inodes, st.Invalidated)
	if st.Inodes > max+files || st.Invalidated == 0 {
		t.Fatalf("after a walk of %d entries: %d nodes held (bound %d), %d invalidated", dirs*(files+1), st.Inodes, max, st.Invalidated)
	}
	// Evicted entries are looked up again: every file reads right.
	for p, b := range want {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s: %q, %v", p, got, err)
		}
	}
	walk()
	if st := settle(); st.Inodes > max+files {
		t.Fatalf("after reading everything: %d nodes held (bound %d)", st.Inodes, max)
	}
}

// TestInodesCountedOnce: a listing of a folder after a lookup in it (a
// READDIRPLUS of an entry the kernel has) counts that entry once.
func TestInodesCountedOnce(t *testing.T) {
	r := newRepo(t)
	src := &memSource{uri: "/once"}
	for f := range 10 {
		src.file(fmt.Sprintf("d/f%d", f), []byte("x"))
	}
	sn := backupTree(t, r, src)
	r.LoadIndex(context.Background())
	f := New(r, Options{})
	t.Cleanup(f.Close)
	top, err := f.SubtreeRoot(sn, sn.RootNode())
	if err != nil {
		t.Fatal(err)
	}
	root := mountTree(t, top)
	if _, err := os.Stat(filepath.Join(root, "d", "f3")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := os.ReadDir(filepath.Join(root, "d")); err != nil {
			t.Fatal(err)
		}
		if st := f.Stats(); st.Inodes != 11 {
			t.Fatalf("d and its 10 files, f3 looked up first, listed: %d nodes counted, want 11", st.Inodes)
		}
	}
}

// walkAll walks the tree at root, looking up every entry, and fails t
// unless it meets files files.
func walkAll(t *testing.T, root string, files int) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Lstat(p); err != nil { // a lookup of every entry
			return err
		}
		if !e.IsDir() {
			seen++
		}
		return nil
	})
	if err != nil || seen != files {
		t.Fatalf("walk: %d files, %v", seen, err)
	}
}
