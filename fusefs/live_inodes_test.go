package fusefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/object"
)

// TestLiveInodesBounded: walking a live bucket of many more objects than
// MaxInodes leaves at most about MaxInodes nodes in the mount, as for a
// snapshot (TestInodesBounded), and the objects dropped for it are
// looked up again, and read right.
func TestLiveInodesBounded(t *testing.T) {
	m := newMemLive(1000)
	const dirs, files = 40, 100 // 4,040 entries
	want := map[string][]byte{}
	for d := range dirs {
		for f := range files {
			p := fmt.Sprintf("d%02d/f%03d", d, f)
			want[p] = []byte(p + " of the live bucket")
			m.put(p, want[p])
		}
	}
	const max = 500
	f := NewLive(m, LiveOptions{TTL: time.Hour, MaxInodes: max})
	t.Cleanup(f.Close)
	root := mountTree(t, f.Root())

	walk := func() { t.Helper(); walkAll(t, root, dirs*files) }
	settle := func() (held, dropped int64) {
		t.Helper()
		for range 500 { // 10 s: FORGETs come late on a loaded machine
			if held, dropped = f.Inodes(); held <= max+files {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return held, dropped
	}
	walk()
	held, dropped := settle()
	t.Logf("after the walk: %d nodes, %d invalidated", held, dropped)
	if held > max+files || dropped == 0 {
		t.Fatalf("after a walk of %d entries: %d nodes held (bound %d), %d invalidated", dirs*(files+1), held, max, dropped)
	}
	for p, b := range want {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s: %q, %v", p, got, err)
		}
	}
	walk()
	if held, _ := settle(); held > max+files {
		t.Fatalf("after reading everything: %d nodes held (bound %d)", held, max)
	}

	// Without a bound, the same walk keeps every entry.
	g := NewLive(m, LiveOptions{TTL: time.Hour, MaxInodes: -1})
	t.Cleanup(g.Close)
	root = mountTree(t, g.Root())
	walk()
	if held, dropped := g.Inodes(); held != 0 || dropped != 0 {
		t.Fatalf("no bound: %d nodes counted, %d invalidated", held, dropped)
	}
}

// dotDot returns the inode number the listing of dir gives "..".
func dotDot(t *testing.T, dir string) uint64 {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("%s lists no ..", dir)
		}
		// struct linux_dirent64: ino, off, reclen, type, name.
		for b := buf[:n]; len(b) > 0; {
			reclen := binary.LittleEndian.Uint16(b[16:])
			name, _, _ := bytes.Cut(b[19:reclen], []byte{0})
			if string(name) == ".." {
				return binary.LittleEndian.Uint64(b)
			}
			b = b[reclen:]
		}
	}
}

// ino is the inode number stat gives p.
func ino(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestLiveDotDot: ".." in a listing of the live mount is the parent's
// inode, as stat gives it (ls -ai), and the root's own at the root.
func TestLiveDotDot(t *testing.T) {
	m := newMemLive(1000)
	m.put("a/b/f", []byte("f"))
	f := NewLive(m, LiveOptions{TTL: time.Hour})
	t.Cleanup(f.Close)
	root := mountTree(t, f.Root())
	for _, c := range []struct{ dir, parent string }{{"a/b", "a"}, {"a", "."}, {".", "."}} {
		if got, want := dotDot(t, filepath.Join(root, c.dir)), ino(t, filepath.Join(root, c.parent)); got != want {
			t.Errorf("%s/..: inode %d, want %d (%s)", c.dir, got, want, c.parent)
		}
	}
}

// TestDotDot: the same in a snapshot mount, a folder of pieces of a long
// name and the snapshot list.
func TestDotDot(t *testing.T) {
	r := newRepo(t)
	src := &memSource{uri: "/dots"}
	long := string(bytes.Repeat([]byte("x"), 300))
	src.file("a/b/f", []byte("f"))
	src.file("a/"+long+"/g", []byte("g"))
	sn := backupTree(t, r, src)
	dir, _ := mountAll(t, r, Options{}, []*engine.Snapshot{sn})
	snap := SnapshotName(sn)
	ents, err := os.ReadDir(filepath.Join(dir, snap, "a"))
	if err != nil {
		t.Fatal(err)
	}
	var piece string
	for _, e := range ents {
		if e.Name() != "b" {
			piece = e.Name() // the folder of the first piece of the long name
		}
	}
	if piece == "" {
		t.Fatalf("a lists %d entries, no folder of pieces", len(ents))
	}
	for _, c := range []struct{ dir, parent string }{
		{snap + "/a/b", snap + "/a"}, {snap + "/a", snap}, {snap + "/a/" + piece, snap + "/a"},
		{snap, "."}, {"by-source", "."}, {".", "."},
	} {
		if got, want := dotDot(t, filepath.Join(dir, c.dir)), ino(t, filepath.Join(dir, c.parent)); got != want {
			t.Errorf("%s/..: inode %d, want %d (%s)", c.dir, got, want, c.parent)
		}
	}
}

// TestLiveVersionsMounted: through FUSE, a folder of versions lists ".."
// as the folder of its object, a delete marker is an empty file of the
// marker's time that reads nothing, and a version reads its bytes.
func TestLiveVersionsMounted(t *testing.T) {
	a := version("d/a", "v2", 20)
	mk := object.LiveEntry{Name: "d/a", MTime: time.Unix(1.8e9+15, 0), VersionID: "m1", Deleted: true}
	a.Versions = []object.LiveEntry{a, mk, version("d/a", "v1", 10)}
	flat := object.NewFlatLive(func(ctx context.Context) ([]object.LiveEntry, error) {
		return []object.LiveEntry{a}, nil
	}, &verTree{}, time.Hour)
	f := NewLive(flat, LiveOptions{TTL: time.Hour, ReadAhead: -1})
	t.Cleanup(f.Close)
	root := mountTree(t, f.Root())
	vdir := filepath.Join(root, "d", ".a%25%versions")
	if got, want := dotDot(t, vdir), ino(t, filepath.Join(root, "d")); got != want {
		t.Errorf("d/.a%%25%%versions/..: inode %d, want %d", got, want)
	}
	var names []string
	ents, err := os.ReadDir(vdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"2027-01-15T08-00-10.000Z_v1", "2027-01-15T08-00-15.000Z_m1.deleted", "2027-01-15T08-00-20.000Z_v2"}
	if !slices.Equal(names, want) {
		t.Fatalf("versions of d/a: %q, want %q", names, want)
	}
	p := filepath.Join(vdir, want[1])
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != 0 || !fi.ModTime().Equal(mk.MTime) || !fi.Mode().IsRegular() {
		t.Fatalf("the delete marker: %v, %v", fi, err)
	}
	if b, err := os.ReadFile(p); err != nil || len(b) != 0 {
		t.Fatalf("the delete marker reads %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(vdir, want[0])); err != nil || string(b) != "d/a@v1" {
		t.Fatalf("version v1 reads %q, %v", b, err)
	}
}
