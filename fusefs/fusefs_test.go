package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/keymap"

	"github.com/coffer-backup/coffer/engine/object"
	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/coffer-backup/coffer/engine/crypto"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/cache"
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// Small chunks, so that tests cross many chunk boundaries cheaply.
var (
	testChunker = engine.ChunkerParams{Algorithm: "fastcdc-v1.0.0", Min: 16 << 10, Normal: 32 << 10, Max: 128 << 10}
	testSizes   = testtree.Sizes{Min: 16 << 10, Max: 128 << 10}
	cheapKDF    = crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}
)

func newRepo(t testing.TB) *engine.Repo {
	t.Helper()
	st, err := store.NewFolder(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := engine.Create(context.Background(), st, []byte("pass"), engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// reopen opens r's store again, for a second mount: a mount sets its
// repo's tree cache, so two mounts cannot share one repo.
func reopen(t testing.TB, r *engine.Repo) *engine.Repo {
	t.Helper()
	r2, err := engine.Open(context.Background(), r.Storage(), []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	return r2
}

func backupTree(t testing.TB, r *engine.Repo, src backup.Source) *engine.Snapshot {
	t.Helper()
	res, err := backup.Run(context.Background(), r, src, backup.Options{Concurrency: 2,
		Warn: func(p string, err error) { t.Errorf("backup skipped %s: %v", p, err) }})
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot
}

func backupDir(t testing.TB, r *engine.Repo, dir string) *engine.Snapshot {
	t.Helper()
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return backupTree(t, r, src)
}

// countingRepo counts the loads of content blobs and chunk lists that
// the mount asks for. Directories and pages are loaded by the engine
// (Lookup, Iter) through the mount's tree cache, whose Stats count them.
type countingRepo struct {
	Repo
	blobs, lists atomic.Int64
}

func (c *countingRepo) LoadBlob(ctx context.Context, id crypto.ID) ([]byte, error) {
	c.blobs.Add(1)
	return c.Repo.LoadBlob(ctx, id)
}

func (c *countingRepo) FileLayout(ctx context.Context, n *tree.Node) (*object.Layout[crypto.ID], error) {
	if !n.ChunkList.IsZero() {
		c.lists.Add(1)
	}
	return c.Repo.FileLayout(ctx, n)
}

// mountTree mounts root on a fresh folder until the test ends.
func mountTree(t testing.TB, root fs.InodeEmbedder) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir := t.TempDir()
	srv, err := Mount(dir, root, MountOptions{FsName: "coffer-test"})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := Unmount(srv); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
	})
	return dir
}

func mountAll(t testing.TB, r Repo, opt Options, snaps []*engine.Snapshot) (string, *FS) {
	t.Helper()
	if er, ok := r.(*engine.Repo); ok {
		er.LoadIndex(context.Background())
	}
	f := New(r, opt)
	t.Cleanup(f.Close)
	return mountTree(t, f.SnapshotsRoot(snaps)), f
}

func TestSnapshotsView(t *testing.T) {
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := testtree.Make(src, testSizes); err != nil {
		t.Fatal(err)
	}
	s1 := backupDir(t, r, src)
	time.Sleep(1100 * time.Millisecond) // a distinct second in the name
	testtree.WriteFile(filepath.Join(src, "text.log"), []byte("changed\n"))
	testtree.SetTimes(src)
	s2 := backupDir(t, r, src)
	snaps, err := r.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mnt, _ := mountAll(t, r, Options{}, snaps)

	n1, n2 := SnapshotName(s1), SnapshotName(s2)
	want := []string{n1, n2, "by-source", "latest"}
	sort.Strings(want)
	if got := testtree.Names(t, mnt); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("root: %q, want %q", got, want)
	}
	if l, _ := os.Readlink(filepath.Join(mnt, "latest")); l != n2 {
		t.Fatalf("latest -> %q, want %q", l, n2)
	}
	srcDir := filepath.Join(mnt, "by-source", SourceName(src))
	if got := testtree.Names(t, srcDir); strings.Join(got, " ") != n1+" "+n2+" latest" {
		t.Fatalf("by-source: %q", got)
	}
	if l, _ := os.Readlink(filepath.Join(srcDir, "latest")); l != n2 {
		t.Fatalf("by-source latest -> %q", l)
	}
	// The newest snapshot equals the source: names, content, modes,
	// mtimes, symlinks, owners; through both paths.
	if err := testtree.Compare(src, filepath.Join(mnt, n2)); err != nil {
		t.Fatal(err)
	}
	if err := testtree.Compare(src, filepath.Join(srcDir, n2)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(mnt, n1, "text.log")); len(b) != 5*testSizes.Max {
		t.Fatalf("old snapshot's text.log: %d bytes", len(b))
	}
	// Nothing can be written.
	if err := os.WriteFile(filepath.Join(mnt, n2, "new"), nil, 0o644); err == nil {
		t.Fatal("created a file in the mount")
	}
	if f, err := os.OpenFile(filepath.Join(mnt, n2, "empty"), os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatal("opened a file for writing")
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(mnt, n2), &sfs); err != nil || sfs.Blocks == 0 || sfs.Files == 0 {
		t.Fatalf("statfs: %+v %v", sfs, err)
	}

	// Inode numbers are stable across mounts and differ between paths.
	deep := filepath.Join(n2, "unicode", "café")
	ino := func(mnt, p string) uint64 {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(mnt, p), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	mnt2, _ := mountAll(t, reopen(t, r), Options{}, snaps)
	if a, b := ino(mnt, deep), ino(mnt2, deep); a != b {
		t.Fatalf("inode of %s: %d, then %d", deep, a, b)
	}
	if a, b := ino(mnt, filepath.Join(n2, "random.bin")), ino(mnt, filepath.Join(n2, "text.log")); a == b {
		t.Fatal("two files share an inode number")
	}
	// Listing is deterministic.
	if a, b := testtree.Names(t, filepath.Join(mnt, n2, "unicode")), testtree.Names(t, filepath.Join(mnt2, n2, "unicode")); strings.Join(a, "/") != strings.Join(b, "/") {
		t.Fatalf("listings differ: %q vs %q", a, b)
	}
}

func TestSubtreeView(t *testing.T) {
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := testtree.Make(src, testSizes); err != nil {
		t.Fatal(err)
	}
	sn := backupDir(t, r, src)
	ctx := context.Background()
	r.LoadIndex(ctx)
	n, err := r.ResolvePath(ctx, sn, "/unicode", false)
	if err != nil {
		t.Fatal(err)
	}
	f := New(r, Options{})
	defer f.Close()
	root, err := f.SubtreeRoot(sn, n)
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountTree(t, root)
	if err := testtree.Compare(filepath.Join(src, "unicode"), mnt); err != nil {
		t.Fatal(err)
	}
	file, _ := r.ResolvePath(ctx, sn, "/random.bin", true)
	if _, err := f.SubtreeRoot(sn, file); err == nil {
		t.Fatal("a file as the root of a mount")
	}
}

func TestPreadsAcrossChunks(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	files := map[string][]byte{}
	for i, size := range []int{3<<20 + 7, 2<<20 + 12345, 700 << 10} {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i == 2 {
			copy(b, testtree.Text(3, size)) // compressible
		}
		name := fmt.Sprintf("f%d", i)
		files[name] = b
		testtree.WriteFile(filepath.Join(src, name), b)
	}
	sn := backupDir(t, r, src)
	// A chunk cache smaller than one file, so chunks are evicted and
	// loaded again while readers run.
	cr := &countingRepo{Repo: r}
	r.LoadIndex(context.Background())
	mnt, f := mountAll(t, cr, Options{CacheSize: 1 << 20, ReadAhead: 512 << 10}, []*engine.Snapshot{sn})
	base := filepath.Join(mnt, SnapshotName(sn))

	check := func(seed uint64, name string, reads int) error {
		fd, err := os.Open(filepath.Join(base, name))
		if err != nil {
			return err
		}
		defer fd.Close()
		want := files[name]
		rng := rand.New(rand.NewPCG(seed, 3))
		for i := 0; i < reads; i++ {
			off := rng.IntN(len(want) + 100)
			n := 1 + rng.IntN(300<<10)
			if i%3 == 0 {
				n = 1 + rng.IntN(100) // tiny reads
			}
			p := make([]byte, n)
			got, err := fd.ReadAt(p, int64(off))
			end := min(off+n, len(want))
			if off >= len(want) {
				end = off
			}
			if got != end-off || !bytes.Equal(p[:got], want[off:end]) {
				return fmt.Errorf("%s: pread %d at %d: %d bytes (%v), want %d", name, n, off, got, err, end-off)
			}
			if err != nil && err != io.EOF {
				return err
			}
		}
		return nil
	}
	if err := check(1, "f0", 200); err != nil {
		t.Fatal(err)
	}
	// Concurrent readers of one file and of different files agree.
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- check(uint64(10+i), fmt.Sprintf("f%d", i%3), 60)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Whole sequential reads equal the files.
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(base, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes, %v", name, len(got), err)
		}
	}
	if s := f.Stats().Chunks; s.Bytes > 1<<20 {
		t.Fatalf("chunk cache holds %d bytes over its 1 MiB budget", s.Bytes)
	}
}

// memSource is a Source of items held in memory, in walk order.
type memSource struct {
	uri   string
	items []backup.Item
	data  map[string][]byte
}

func (m *memSource) URI() string { return m.uri }

func (m *memSource) Walk(ctx context.Context, fn func(*backup.Item) error, warn func(string, error)) error {
	for i := range m.items {
		it := m.items[i]
		if err := fn(&it); err != nil {
			return err
		}
	}
	return nil
}

func (m *memSource) Open(ctx context.Context, it *backup.Item) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m.data[it.Path])), nil
}

func (m *memSource) file(path string, data []byte, attrs ...tree.Attr) {
	segs := strings.Split(path, "/")
	m.items = append(m.items, backup.Item{Path: path, Node: tree.Node{Name: segs[len(segs)-1], Type: tree.TypeFile,
		Mode: 0o644, Size: uint64(len(data)), MTime: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano(), Attrs: attrs}})
	if m.data == nil {
		m.data = map[string][]byte{}
	}
	m.data[path] = data
}

func TestS3AttrsAndOddNames(t *testing.T) {
	r := newRepo(t)
	src := &memSource{uri: "s3://bucket/prefix/"}
	src.items = append(src.items, backup.Item{Path: "", Node: tree.Node{Type: tree.TypeDir, Mode: 0o755}})
	attrs := []tree.Attr{
		{Key: "content_type", Value: []byte("text/plain; charset=utf-8")},
		{Key: "etag", Value: []byte(`"9a0364b9e99bb480dd25e1f0284c8555"`)},
		{Key: "meta.color", Value: []byte("blue")},
		{Key: "storage_class", Value: []byte("STANDARD_IA")},
	}
	// Keys in walk (sort-key) order: "a" beside "a/x", "d/../f", "d/./g",
	// "d//h".
	src.file("a", []byte("file a"), attrs...)
	src.file("a/x", []byte("x in dir a"))
	src.file("d/../f", []byte("dotdot"))
	src.file("d/./g", []byte("dot"))
	src.file("d//h", []byte("empty"))
	src.file("plain.txt", []byte("plain"), attrs[:2]...)
	sn := backupTree(t, r, src)
	mnt, _ := mountAll(t, r, Options{}, []*engine.Snapshot{sn})
	base := filepath.Join(mnt, SnapshotName(sn))

	if got := strings.Join(testtree.Names(t, base), " "); got != "a a%~ d plain.txt" {
		t.Fatalf("root names: %q", got)
	}
	if got := strings.Join(testtree.Names(t, filepath.Join(base, "d")), " "); got != "%. %.. %_" {
		t.Fatalf("d names: %q", got)
	}
	for p, want := range map[string]string{"a": "file a", "a%~/x": "x in dir a", "d/%../f": "dotdot", "d/%./g": "dot", "d/%_/h": "empty"} {
		if b, err := os.ReadFile(filepath.Join(base, p)); err != nil || string(b) != want {
			t.Fatalf("%s: %q %v", p, b, err)
		}
	}
	for _, p := range []string{"a%25", "d/..%~", "a%~%~", "nope"} {
		if _, err := os.Lstat(filepath.Join(base, p)); !os.IsNotExist(err) {
			t.Fatalf("%s: %v, want not found", p, err)
		}
	}

	// S3 metadata as user.s3.<key> extended attributes.
	fa := filepath.Join(base, "a")
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(fa, buf)
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
	if strings.Join(list, ",") != "user.s3.content_type,user.s3.etag,user.s3.meta.color,user.s3.storage_class" {
		t.Fatalf("listxattr: %q", list)
	}
	for _, a := range attrs {
		n, err := unix.Getxattr(fa, "user.s3."+a.Key, buf)
		if err != nil || string(buf[:n]) != string(a.Value) {
			t.Fatalf("getxattr %s: %q %v", a.Key, buf[:n], err)
		}
	}
	if _, err := unix.Getxattr(fa, "user.s3.nope", buf); err != unix.ENODATA {
		t.Fatalf("missing xattr: %v", err)
	}
	if _, err := unix.Getxattr(fa, "user.s3.content_type", buf[:3]); err != unix.ERANGE {
		t.Fatalf("short buffer: %v", err)
	}
	if n, _ := unix.Listxattr(filepath.Join(base, "d"), buf); n != 0 {
		t.Fatalf("a directory without attrs lists %q", buf[:n])
	}

	// Directories without an mtime (the root, the implicit prefixes, the
	// folders of a long name's pieces' owner) show the snapshot's time,
	// and so do the folders and links of the snapshot list; files keep
	// their own.
	for _, p := range []string{base, filepath.Join(base, "d"), filepath.Join(base, "a%~"), filepath.Join(base, "d", "%_"),
		mnt, filepath.Join(mnt, "latest"), filepath.Join(mnt, "by-source"), filepath.Join(mnt, "by-source", SourceName(src.uri)),
		filepath.Join(mnt, "by-source", SourceName(src.uri), "latest")} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.ModTime().Equal(sn.Time) {
			t.Errorf("%s: mtime %v, want the snapshot's %v (%v)", p, fi.ModTime(), sn.Time, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(base, "plain.txt")); err != nil || fi.ModTime().Year() != 2025 {
		t.Errorf("plain.txt: %v %v", fi.ModTime(), err)
	}
}

func TestLazyLoads(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	// Many small snapshots of two sources.
	var snaps []*engine.Snapshot
	for i := 0; i < 60; i++ {
		src := &memSource{uri: fmt.Sprintf("s3://bucket%d/", i%2)}
		src.file("f", []byte(fmt.Sprint(i)))
		snaps = append(snaps, backupTree(t, r, src))
	}
	// One with a directory of many pages.
	big := &memSource{uri: "/big"}
	const entries = 20000
	for i := 0; i < entries; i++ {
		big.file(fmt.Sprintf("big/f%05d", i), nil)
	}
	many := testtree.RandBytes(4 << 20) // more chunks than a node holds inline
	big.file("big2/many", many)
	snaps = append(snaps, backupTree(t, r, big))
	all, err := r.Snapshots(ctx)
	if err != nil || len(all) != len(snaps) {
		t.Fatal(len(all), err)
	}
	cr := &countingRepo{Repo: r}
	r.LoadIndex(ctx)
	mnt, f := mountAll(t, cr, Options{}, all)
	trees := func() (dirs, pages cache.Stats) { st := f.Stats(); return st.Dirs, st.Pages }

	// Listing the snapshots and stat-ing their folders reads no tree.
	if n := len(testtree.Names(t, mnt)); n != len(all)+2 {
		t.Fatalf("root has %d entries", n)
	}
	for _, sd := range []string{"s3:%2F%2Fbucket0%2F", "s3:%2F%2Fbucket1%2F"} {
		if n := len(testtree.Names(t, filepath.Join(mnt, "by-source", sd))); n != 31 {
			t.Fatalf("%s has %d entries", sd, n)
		}
	}
	for _, sn := range all {
		if _, err := os.Stat(filepath.Join(mnt, SnapshotName(sn))); err != nil {
			t.Fatal(err)
		}
	}
	if d, p := trees(); d.Hits+d.Misses+p.Hits+p.Misses != 0 || cr.blobs.Load() != 0 {
		t.Fatalf("the snapshot list read trees: dirs %+v, pages %+v, %d blobs", d, p, cr.blobs.Load())
	}

	// A lookup in a paged directory loads the directory and one page,
	// through the engine's Lookup and the mount's tree cache.
	bigDir := filepath.Join(mnt, SnapshotName(all[len(all)-1]), "big")
	if _, err := os.Stat(filepath.Join(bigDir, "f12345")); err != nil {
		t.Fatal(err)
	}
	if d, p := trees(); d.Loads != 2 || p.Loads != 1 {
		t.Fatalf("one lookup in a paged dir loaded %d dirs and %d pages", d.Loads, p.Loads)
	}
	// A name that would be on the same page is looked up in the cached
	// page.
	_, hits := trees()
	if _, err := os.Stat(filepath.Join(bigDir, "f12345x")); !os.IsNotExist(err) {
		t.Fatalf("f12345x: %v", err)
	}
	if d, p := trees(); d.Loads != 2 || p.Loads != 1 || p.Hits <= hits.Hits {
		t.Fatalf("a second lookup loaded %d dirs and %d pages, %d page hits", d.Loads, p.Loads, p.Hits-hits.Hits)
	}
	dir, err := r.LoadDir(ctx, mustResolve(t, r, all[len(all)-1], "/big").Subtree)
	if err != nil || len(dir.Pages) < 10 {
		t.Fatalf("big is not paged: %d pages, %v", len(dir.Pages), err)
	}
	// A listing loads every page once.
	if n := len(testtree.Names(t, bigDir)); n != entries {
		t.Fatalf("big lists %d entries", n)
	}
	if _, p := trees(); p.Loads != int64(len(dir.Pages)) {
		t.Fatalf("listing %d pages loaded %d", len(dir.Pages), p.Loads)
	}
	// Opening a file reads no content, and its chunk list at most (the
	// kernel opens files without asking the mount when it can: then the
	// first read loads it).
	fd, err := os.Open(filepath.Join(mnt, SnapshotName(all[len(all)-1]), "big2", "many"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if b, l := cr.blobs.Load(), cr.lists.Load(); b != 0 || l > 1 || f.Stats().Chunks.Loads != 0 {
		t.Fatalf("open loaded %d content blobs and %d chunk lists", b, l)
	}
	p := make([]byte, 10)
	if _, err := fd.ReadAt(p, 1<<20+3); err != nil || !bytes.Equal(p, many[1<<20+3:][:10]) {
		t.Fatalf("read %q %v", p, err)
	}
	if l := cr.lists.Load(); l != 1 {
		t.Fatalf("open and read loaded %d chunk lists", l)
	}
}

func mustResolve(t testing.TB, r *engine.Repo, sn *engine.Snapshot, p string) *tree.Node {
	t.Helper()
	n, err := r.ResolvePath(context.Background(), sn, p, false)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLongNames: a key segment longer than NAME_MAX shows as nested
// folders of its pieces (engine.LocalName), the last piece being the real
// file or directory; pieces that several names share show once.
func TestLongNames(t *testing.T) {
	r := newRepo(t)
	src := &memSource{uri: "s3://long/"}
	src.items = append(src.items, backup.Item{Path: "", Node: tree.Node{Type: tree.TypeDir, Mode: 0o750, UID: 7, GID: 8}})
	a600 := strings.Repeat("a", 600)
	b300 := strings.Repeat("b", 300)
	c1, c2 := strings.Repeat("c", 400)+"1", strings.Repeat("c", 400)+"2"
	e := strings.Repeat("é", 200)                 // cut between runes
	pct := "%" + strings.Repeat("x", 300) + "%25" // escaped, cut between escapes
	files := map[string]string{
		a600:              "six hundred",
		b300:              "file b",
		b300 + "/inner":   "in dir b",
		c1:                "c one",
		c2:                "c two",
		e:                 "accents",
		pct:               "percent",
		"short":           "short",
		"d/" + a600 + "x": "deeper",
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		src.file(p, []byte(files[p]))
	}
	sn := backupTree(t, r, src)
	mnt, _ := mountAll(t, r, Options{}, []*engine.Snapshot{sn})
	base := filepath.Join(mnt, SnapshotName(sn))

	// Local paths: every segment mapped, a directory beside a file of
	// the same name with "%~".
	local := func(p string) string {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			beside := i < len(segs)-1 && files[strings.Join(segs[:i+1], "/")] != ""
			segs[i] = keymap.LocalName(s, beside)
		}
		return strings.Join(segs, "/")
	}
	want := map[string]string{}
	for p, content := range files {
		want[local(p)] = content
	}
	if !strings.Contains(local(a600), "%+/") || strings.Count(local(a600), "/") != 2 {
		t.Fatalf("600 bytes map to %q", local(a600))
	}

	// Every file is where the mapping puts it, and nothing else shows.
	got := map[string]string{}
	err := filepath.WalkDir(base, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if len(de.Name()) > keymap.NameMax {
			t.Errorf("%s: a name of %d bytes", p, len(de.Name()))
		}
		if de.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[strings.TrimPrefix(p, base+"/")] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("files in the mount:\n%q\nwant\n%q", got, want)
	}

	// The root lists each first piece once.
	firsts := map[string]bool{}
	for p := range want {
		first, _, _ := strings.Cut(p, "/")
		firsts[first] = true
	}
	var wantRoot []string
	for n := range firsts {
		wantRoot = append(wantRoot, n)
	}
	sort.Strings(wantRoot)
	if got := testtree.Names(t, base); strings.Join(got, "\n") != strings.Join(wantRoot, "\n") {
		t.Fatalf("root lists\n%q\nwant\n%q", got, wantRoot)
	}
	// Two names that share their first piece: its folder holds both.
	cDir := filepath.Join(base, strings.Repeat("c", 253)+"%+")
	if got := testtree.Names(t, cDir); len(got) != 2 || got[0] != strings.Repeat("c", 147)+"1" || got[1] != strings.Repeat("c", 147)+"2" {
		t.Fatalf("shared piece lists %q", got)
	}
	// A directory beside a file: the last pieces are "…" and "…%~".
	bDir := filepath.Join(base, strings.Repeat("b", 253)+"%+")
	if got := testtree.Names(t, bDir); strings.Join(got, " ") != strings.Repeat("b", 47)+" "+strings.Repeat("b", 47)+"%~" {
		t.Fatalf("file beside dir lists %q", got)
	}

	// A piece folder has its directory's owner and mode, and stable,
	// distinct inode numbers; a piece that is no name's is not there.
	var st, st2 syscall.Stat_t
	if err := syscall.Stat(cDir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != syscall.S_IFDIR|0o750 || st.Uid != 7 || st.Gid != 8 {
		t.Fatalf("piece folder: mode %o, owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	if err := syscall.Stat(bDir, &st2); err != nil || st2.Ino == st.Ino {
		t.Fatalf("two piece folders share inode %d (%v)", st.Ino, err)
	}
	mnt2, _ := mountAll(t, reopen(t, r), Options{}, []*engine.Snapshot{sn})
	for _, p := range []string{strings.Repeat("c", 253) + "%+", local(a600)} {
		var s1, s2 syscall.Stat_t
		if err := syscall.Stat(filepath.Join(base, p), &s1); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(filepath.Join(mnt2, SnapshotName(sn), p), &s2); err != nil || s1.Ino != s2.Ino {
			t.Fatalf("%s: inode %d, then %d (%v)", p, s1.Ino, s2.Ino, err)
		}
	}
	for _, p := range []string{strings.Repeat("a", 252) + "%+", strings.Repeat("z", 253) + "%+", strings.Repeat("c", 253) + "%+/c"} {
		if _, err := os.Lstat(filepath.Join(base, p)); !os.IsNotExist(err) {
			t.Fatalf("%.20s…: %v, want not found", p, err)
		}
	}
}

// TestDirSeek: a directory handle continues from any offset it gave,
// loading only the page that offset lands in.
func TestDirSeek(t *testing.T) {
	r := newRepo(t)
	src := &memSource{uri: "/seek"}
	const entries = 3000
	for i := 0; i < entries; i++ {
		src.file(fmt.Sprintf("f%05d", i), nil)
	}
	sn := backupTree(t, r, src)
	ctx := context.Background()
	r.LoadIndex(ctx)
	list := func(f *FS) ([]fuse.DirEntry, *dirHandle) {
		d := &dirNode{entry: entry{fsys: f, n: *sn.RootNode()}}
		dir, err := d.load(ctx)
		if err != nil || len(dir.Pages) < 5 {
			t.Fatalf("%d pages, %v", len(dir.Pages), err)
		}
		h := &dirHandle{d: d, dir: dir}
		var out []fuse.DirEntry
		for {
			de, errno := h.Readdirent(ctx)
			if errno != 0 {
				t.Fatal(errno)
			}
			if de == nil {
				return out, h
			}
			out = append(out, *de)
		}
	}
	f := New(r, Options{})
	defer f.Close()
	all, h := list(f)
	if len(all) != entries+2 || all[2].Name != "f00000" || all[len(all)-1].Name != fmt.Sprintf("f%05d", entries-1) {
		t.Fatalf("%d entries", len(all))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 200; i++ {
		k := rng.IntN(len(all))
		if errno := h.Seekdir(ctx, all[k].Off); errno != 0 {
			t.Fatal(errno)
		}
		de, _ := h.Readdirent(ctx)
		if k == len(all)-1 {
			if de != nil {
				t.Fatalf("after the last entry: %q", de.Name)
			}
			continue
		}
		if de == nil || *de != all[k+1] {
			t.Fatalf("after offset %d: %+v, want %+v", all[k].Off, de, all[k+1])
		}
	}

	// On a fresh cache, continuing near the end loads one page.
	f2 := New(r, Options{})
	defer f2.Close()
	h2 := &dirHandle{d: &dirNode{entry: entry{fsys: f2, n: *sn.RootNode()}}, dir: h.dir}
	h2.Seekdir(ctx, all[len(all)-3].Off)
	if de, _ := h2.Readdirent(ctx); de == nil || de.Name != all[len(all)-2].Name {
		t.Fatalf("near the end: %+v", de)
	}
	if p := f2.Stats().Pages; p.Loads != 1 {
		t.Fatalf("a seek to the last page loaded %d pages", p.Loads)
	}
}

// A mount of the whole store shows the snapshots made since, by another
// repo (another process), once its list is older than Options.Refresh:
// new folders, latest links and sources appear, their files read (the
// index was read again), and the folders already there keep their inode
// numbers. Names looked up before they existed are not kept missing.
func TestRefresh(t *testing.T) {
	r := newRepo(t)
	src1 := filepath.Join(t.TempDir(), "src1")
	if err := testtree.Make(src1, testSizes); err != nil {
		t.Fatal(err)
	}
	s1 := backupDir(t, r, src1)
	mr := reopen(t, r)
	snaps, err := mr.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const refresh = time.Second
	mnt, _ := mountAll(t, mr, Options{Refresh: refresh}, snaps)
	n1 := SnapshotName(s1)
	if got := strings.Join(testtree.Names(t, mnt), " "); got != n1+" by-source latest" {
		t.Fatalf("root: %q", got)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(mnt, n1), &st); err != nil {
		t.Fatal(err)
	}
	ino1 := st.Ino
	src2 := filepath.Join(t.TempDir(), "src2")
	if err := testtree.Make(src2, testSizes); err != nil {
		t.Fatal(err)
	}
	testtree.WriteFile(filepath.Join(src2, "only-in-2"), []byte("new\n"))
	testtree.SetTimes(src2)
	bySrc2 := filepath.Join(mnt, "by-source", SourceName(src2))
	if _, err := os.Lstat(bySrc2); !os.IsNotExist(err) {
		t.Fatalf("by-source of a source not backed up yet: %v", err)
	}

	s2 := backupDir(t, r, src2) // through the other repo: new packs, index, snapshot
	n2 := SnapshotName(s2)
	if got := strings.Join(testtree.Names(t, mnt), " "); got != n1+" by-source latest" {
		t.Fatalf("the list was read again before %v: %q", refresh, got)
	}
	time.Sleep(refresh + 200*time.Millisecond)
	want := []string{n1, n2, "by-source", "latest"}
	sort.Strings(want)
	if got := testtree.Names(t, mnt); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("root after %v: %q, want %q", refresh, got, want)
	}
	if l, _ := os.Readlink(filepath.Join(mnt, "latest")); l != n2 {
		t.Fatalf("latest -> %q, want %q", l, n2)
	}
	if err := testtree.Compare(src2, filepath.Join(mnt, n2)); err != nil {
		t.Fatalf("the new snapshot: %v", err)
	}
	if got := strings.Join(testtree.Names(t, bySrc2), " "); got != n2+" latest" {
		t.Fatalf("by-source of the new source: %q", got)
	}
	if l, _ := os.Readlink(filepath.Join(bySrc2, "latest")); l != n2 {
		t.Fatalf("by-source latest of the new source -> %q", l)
	}
	if b, err := os.ReadFile(filepath.Join(bySrc2, "latest", "only-in-2")); err != nil || string(b) != "new\n" {
		t.Fatalf("through the new source's latest: %q %v", b, err)
	}
	if l, _ := os.Readlink(filepath.Join(mnt, "by-source", SourceName(src1), "latest")); l != n1 {
		t.Fatalf("by-source latest of the first source -> %q", l)
	}
	if err := syscall.Lstat(filepath.Join(mnt, n1), &st); err != nil || st.Ino != ino1 {
		t.Fatalf("the old snapshot's inode: %d, was %d (%v)", st.Ino, ino1, err)
	}
	// The kernel may keep the root's attributes (asked for before the
	// list was read again) for up to one refresh.
	var fi os.FileInfo
	for deadline := time.Now().Add(2*refresh + time.Second); ; time.Sleep(50 * time.Millisecond) {
		fi, err = os.Lstat(mnt)
		if err == nil && fi.ModTime().Equal(s2.Time) {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatal(err)
			}
			t.Fatalf("root mtime %v, want the new snapshot's %v", fi.ModTime(), s2.Time)
		}
	}

	// A removed snapshot goes, and its source with it.
	if err := r.Storage().Delete(context.Background(), store.Handle{Kind: store.KindSnapshot, Name: s1.ID.String()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(refresh + 200*time.Millisecond)
	if got := strings.Join(testtree.Names(t, mnt), " "); got != n2+" by-source latest" {
		t.Fatalf("root after a snapshot was removed: %q", got)
	}
	if got := strings.Join(testtree.Names(t, filepath.Join(mnt, "by-source")), " "); got != SourceName(src2) {
		t.Fatalf("by-source after the first source's snapshot was removed: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(mnt, n1)); !os.IsNotExist(err) {
		t.Fatalf("the removed snapshot's folder: %v", err)
	}
}

// An empty store shows an empty list, with the time of the mount rather
// than 1970.
func TestEmptyStore(t *testing.T) {
	r := newRepo(t)
	before := time.Now().Add(-time.Second)
	mnt, _ := mountAll(t, r, Options{}, nil)
	if got := strings.Join(testtree.Names(t, mnt), " "); got != "by-source" {
		t.Fatalf("root: %q", got)
	}
	if got := testtree.Names(t, filepath.Join(mnt, "by-source")); len(got) != 0 {
		t.Fatalf("by-source: %q", got)
	}
	for _, p := range []string{mnt, filepath.Join(mnt, "by-source")} {
		if fi, err := os.Lstat(p); err != nil || fi.ModTime().Before(before) || time.Since(fi.ModTime()) > time.Minute {
			t.Fatalf("%s: mtime %v %v", p, fi.ModTime(), err)
		}
	}
}
