package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// qaCountingSource passes a Source through, counting the files opened and
// the bytes read from them.
type qaCountingSource struct {
	backup.Source
	mu     sync.Mutex
	opened []string
	read   atomic.Int64
}

func qaCount(t testing.TB, dir string) *qaCountingSource {
	t.Helper()
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &qaCountingSource{Source: src}
}

func (s *qaCountingSource) Open(ctx context.Context, it *backup.Item) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opened = append(s.opened, it.Path)
	s.mu.Unlock()
	rc, err := s.Source.Open(ctx, it)
	if err != nil {
		return nil, err
	}
	return &qaCountingReader{rc: rc, n: &s.read}, nil
}

func (s *qaCountingSource) Opened() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.opened...)
	sort.Strings(out)
	return out
}

type qaCountingReader struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (r *qaCountingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func (r *qaCountingReader) Close() error { return r.rc.Close() }

func qaBackup(t testing.TB, r *engine.Repo, src backup.Source) *engine.Snapshot {
	t.Helper()
	res, err := backup.Run(context.Background(), r, src, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot
}

// qaDirSize is the bytes of every file under dir.
func qaDirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// qaCountFiles counts the regular files under dir.
func qaCountFiles(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// qaBlobCounts counts the indexed blobs of each kind.
func qaBlobCounts(r *engine.Repo) map[format.BlobKind]int {
	m := map[format.BlobKind]int{}
	r.Index.Each(func(b format.BlobLoc, _ crypto.ID) { m[b.Kind]++ })
	return m
}

func TestDedupSecondCopy100MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and backs up 200 MiB")
	}
	r, storeDir := newTestRepo(t, engine.CreateOptions{}) // the default chunker
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	sizes := []int{40 << 20, 30 << 20, 20<<20 + 12345, 10<<20 - 12345} // 100 MiB
	var total int
	for i, n := range sizes {
		writeFile(t, filepath.Join(a, fmt.Sprintf("part%d.bin", i)), qaRand(uint64(1000+i), n))
		total += n
	}
	if total != 100<<20 {
		t.Fatalf("test setup: %d bytes", total)
	}
	snA := backupDir(t, r, a, backup.Options{})
	if snA.Stats.Bytes != 100<<20 || snA.Stats.NewBytes < 100<<20 {
		t.Fatalf("first backup: %+v", snA.Stats)
	}
	before := qaDirSize(t, storeDir)
	dataBefore := qaBlobCounts(r)[format.BlobData]

	// The same content under other names, in another folder, with other
	// mtimes: nothing but the parent-less content itself can dedup it.
	for i := range sizes {
		data, err := os.ReadFile(filepath.Join(a, fmt.Sprintf("part%d.bin", i)))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(b, "copies", fmt.Sprintf("renamed-%d.dat", i))
		writeFile(t, p, data)
		tm := fixedTime.Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(p, tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	snB := backupDir(t, r, b, backup.Options{})
	if snB.Parent != nil {
		t.Fatalf("backup of another folder used parent %s", snB.Parent.Short())
	}
	if snB.Stats.ReadBytes != 100<<20 {
		t.Errorf("second backup read %d bytes, want all %d", snB.Stats.ReadBytes, 100<<20)
	}
	growth := qaDirSize(t, storeDir) - before
	t.Logf("store: %d bytes after the first copy, +%d for the second; second backup stats %+v", before, growth, snB.Stats)
	if growth >= 1<<20 {
		t.Errorf("a second copy of 100 MiB grew the store by %d bytes, want < 1 MiB", growth)
	}
	if got := qaBlobCounts(r)[format.BlobData]; got != dataBefore {
		t.Errorf("the second copy added %d data blobs", got-dataBefore)
	}
	if snB.Stats.NewBytes > 64<<10 {
		t.Errorf("the second backup added %d plaintext bytes of blobs", snB.Stats.NewBytes)
	}
}

func TestUnchangedRebackupReadsNothing(t *testing.T) {
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, testChunker)
	nfiles := qaCountFiles(t, src)

	c1 := qaCount(t, src)
	sn1 := qaBackup(t, r, c1)
	if got := len(c1.Opened()); got != nfiles {
		t.Fatalf("first backup opened %d files of %d", got, nfiles)
	}
	if sn1.Stats.Files != uint64(nfiles) {
		t.Fatalf("first backup saw %d files of %d", sn1.Stats.Files, nfiles)
	}

	// Unchanged: nothing is opened, nothing stored, the tree is the same.
	r = reopen(t, storeDir)
	c2 := qaCount(t, src)
	sn2 := qaBackup(t, r, c2)
	if o := c2.Opened(); len(o) != 0 || c2.read.Load() != 0 {
		t.Errorf("re-backup of an unchanged tree opened %d files (%v), read %d bytes", len(o), o, c2.read.Load())
	}
	if sn2.Parent == nil || *sn2.Parent != sn1.ID {
		t.Errorf("re-backup parent %v, want %s", sn2.Parent, sn1.ID.Short())
	}
	if sn2.Stats.Unchanged != uint64(nfiles) || sn2.Stats.ReadBytes != 0 {
		t.Errorf("re-backup stats %+v, want %d unchanged and nothing read", sn2.Stats, nfiles)
	}
	if sn2.Stats.NewBlobs != 0 {
		t.Errorf("re-backup added %d blobs", sn2.Stats.NewBlobs)
	}
	if sn2.Root != sn1.Root {
		t.Errorf("the same tree gave root %s, then %s", sn1.Root.Short(), sn2.Root.Short())
	}

	// One file changed: exactly that one is read.
	p := filepath.Join(src, "random.bin")
	newContent := qaRand(77, 3*testChunker.Max+999)
	qaRewrite(t, p, newContent)
	c3 := qaCount(t, src)
	sn3 := qaBackup(t, r, c3)
	if o := c3.Opened(); len(o) != 1 || o[0] != "random.bin" {
		t.Errorf("backup after changing random.bin opened %v", o)
	}
	if c3.read.Load() != int64(len(newContent)) || sn3.Stats.ReadBytes != uint64(len(newContent)) {
		t.Errorf("read %d bytes (stats: %d), want %d", c3.read.Load(), sn3.Stats.ReadBytes, len(newContent))
	}
	if sn3.Stats.Unchanged != uint64(nfiles-1) {
		t.Errorf("%d unchanged, want %d", sn3.Stats.Unchanged, nfiles-1)
	}
	if sn3.Root == sn2.Root {
		t.Error("a changed file left the root unchanged")
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, reopen(t, storeDir), sn3, out); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, out)
}

// qaManyFiles writes n small files (every third empty) named f00000… into
// dir, with fixed mtimes.
func qaManyFiles(t testing.TB, dir string, n int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var data []byte
		if i%3 != 0 {
			data = []byte(fmt.Sprintf("file %d\n", i))
		}
		p := filepath.Join(dir, fmt.Sprintf("f%05d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tm := fixedTime.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(p, tm, tm); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIncrementalPagedDirectory(t *testing.T) {
	const n = 10000
	ctx := context.Background()
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := filepath.Join(t.TempDir(), "src")
	qaManyFiles(t, filepath.Join(src, "big"), n)
	writeFile(t, filepath.Join(src, "other.txt"), []byte("other"))
	sn1 := qaBackup(t, r, qaCount(t, src))
	bigNode, err := r.ResolvePath(ctx, sn1, "/big", false)
	if err != nil {
		t.Fatal(err)
	}
	big1, err := r.LoadDir(ctx, bigNode.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if len(big1.Pages) < 10 || big1.Inline != nil {
		t.Fatalf("a directory of %d entries has %d pages", n, len(big1.Pages))
	}

	r = reopen(t, storeDir)
	c2 := qaCount(t, src)
	sn2 := qaBackup(t, r, c2)
	if o := c2.Opened(); len(o) != 0 {
		t.Errorf("re-backup opened %d files: %v", len(o), o[:min(len(o), 10)])
	}
	if sn2.Stats.Unchanged != n+1 || sn2.Stats.NewBlobs != 0 || sn2.Root != sn1.Root {
		t.Errorf("re-backup: %+v, root %s vs %s", sn2.Stats, sn2.Root.Short(), sn1.Root.Short())
	}

	// Change one file in the middle of the directory.
	const changed = "big/f04321"
	content := []byte("new content of f04321\n")
	p := filepath.Join(src, filepath.FromSlash(changed))
	qaRewrite(t, p, content)
	c3 := qaCount(t, src)
	sn3 := qaBackup(t, r, c3)
	if o := c3.Opened(); len(o) != 1 || o[0] != changed {
		t.Errorf("after changing %s the backup opened %d files: %v", changed, len(o), o[:min(len(o), 10)])
	}
	if sn3.Stats.Unchanged != n {
		t.Errorf("%d unchanged, want %d", sn3.Stats.Unchanged, n)
	}
	// Page cuts depend on names only, so one page, the directory and the
	// root are new, and the data blob.
	bigNode3, err := r.ResolvePath(ctx, sn3, "/big", false)
	if err != nil {
		t.Fatal(err)
	}
	big3, err := r.LoadDir(ctx, bigNode3.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if len(big3.Pages) != len(big1.Pages) {
		t.Fatalf("changing a file changed the page count from %d to %d", len(big1.Pages), len(big3.Pages))
	}
	diff := 0
	for i := range big1.Pages {
		if big1.Pages[i].First != big3.Pages[i].First || big1.Pages[i].Entries != big3.Pages[i].Entries {
			t.Errorf("page %d moved: %+v → %+v", i, big1.Pages[i], big3.Pages[i])
		}
		if big1.Pages[i].ID != big3.Pages[i].ID {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("%d pages changed, want 1", diff)
	}
	if sn3.Stats.NewBlobs != 4 {
		t.Errorf("%d new blobs, want 4 (data, page, directory, root)", sn3.Stats.NewBlobs)
	}
	node, err := r.ResolvePath(ctx, sn3, "/"+changed, true)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteFileTo(ctx, node, &buf, 2); err != nil || !bytes.Equal(buf.Bytes(), content) {
		t.Errorf("%s reads back %q, %v", changed, buf.Bytes(), err)
	}
}

func TestLargeDirectoryPaging(t *testing.T) {
	const n = 20000
	const dirEvery = 97 // every 97th entry is a subdirectory
	ctx := context.Background()
	_, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	name := func(i int) string { return fmt.Sprintf("e%05d", i) }
	isDir := func(i int) bool { return i%dirEvery == 0 }
	nfiles, ndirs := 0, 0
	for i := range n {
		p := filepath.Join(src, name(i))
		if isDir(i) {
			writeFile(t, filepath.Join(p, "inner"), []byte(name(i)))
			ndirs++
			nfiles++
			continue
		}
		var data []byte
		if i%5 == 0 {
			data = []byte(name(i))
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		nfiles++
	}
	r, cs := reopenCounting(t, storeDir, store.KindTreePack)
	sn1 := qaBackup(t, r, qaCount(t, src))
	root, err := r.LoadDir(ctx, sn1.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(root.Pages) < 20 || root.Inline != nil {
		t.Fatalf("%d entries made %d pages", n, len(root.Pages))
	}
	if root.Stats != (tree.DirStats{Entries: n, Files: uint64(nfiles), Dirs: uint64(ndirs), Bytes: root.Stats.Bytes}) {
		t.Errorf("stats %+v, want %d entries, %d files, %d dirs", root.Stats, n, nfiles, ndirs)
	}
	var sum uint64
	for i, pr := range root.Pages {
		sum += pr.Entries
		if pr.Entries > tree.PageMaxEntries || (i < len(root.Pages)-1 && pr.Entries < tree.PageMinEntries) {
			t.Errorf("page %d has %d entries", i, pr.Entries)
		}
	}
	if sum != n {
		t.Errorf("pages hold %d entries, want %d", sum, n)
	}
	t.Logf("%d entries in %d pages", n, len(root.Pages))

	// Lookup: one page read per lookup, files and directories found by
	// their sort keys, nothing found for absent names.
	rng := mrand.New(mrand.NewPCG(42, 42))
	for range 300 {
		i := rng.IntN(n)
		key := name(i)
		if isDir(i) {
			key += "/"
		}
		before := cs.n.Load()
		nd, ok, err := r.Lookup(ctx, root, key)
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.n.Load() - before; got != 1 {
			t.Errorf("Lookup(%q) read %d tree blobs, want 1 page", key, got)
		}
		if !ok || nd.Name != name(i) || (nd.Type == tree.TypeDir) != isDir(i) {
			t.Fatalf("Lookup(%q) = %+v", key, nd)
		}
		if isDir(i) {
			if _, found, _ := r.Lookup(ctx, root, name(i)); found {
				t.Errorf("Lookup(%q) found the directory by its file key", name(i))
			}
			if d, err := r.LoadDir(ctx, nd.Subtree); err != nil || d.Stats.Entries != 1 {
				t.Errorf("subdirectory %s: %+v, %v", key, d, err)
			}
		} else if want := map[bool]int{true: len(name(i))}[i%5 == 0]; nd.Size != uint64(want) || len(nd.Chunks) != min(want, 1) {
			t.Errorf("%s: size %d in %d chunks, want %d", key, nd.Size, len(nd.Chunks), want)
		}
	}
	for _, key := range []string{"", "a", "e", "e00001x", "e00097", "e99999", "f", "zzz"} {
		if nd, ok, err := r.Lookup(ctx, root, key); err != nil || ok {
			t.Errorf("Lookup(%q) = %+v, %v; want nothing", key, nd, err)
		}
	}

	// Seek: straight to the last page reads only that page.
	lastKey := root.Pages[len(root.Pages)-1].First
	before := cs.n.Load()
	it := r.Iter(root)
	nd, ok, err := it.Seek(ctx, lastKey)
	if err != nil || !ok || nd.SortKey() != lastKey {
		t.Fatalf("Seek(%q) = %+v, %v", lastKey, nd, err)
	}
	if got := cs.n.Load() - before; got != 1 {
		t.Errorf("Seek to the last page read %d pages, want 1", got)
	}
	// Seek through increasing keys, present and absent, across pages.
	var keys []int
	for range 400 {
		keys = append(keys, rng.IntN(n))
	}
	sort.Ints(keys)
	it = r.Iter(root)
	prev := -1
	for _, i := range keys {
		if i == prev {
			continue
		}
		prev = i
		key := name(i)
		if isDir(i) {
			key += "/"
		}
		// Just before it: an absent key leaves the iterator on entry i.
		if i > 0 {
			absent := name(i-1) + "~" // sorts after name(i-1) and name(i-1)+"/"
			if nd, ok, err := it.Seek(ctx, absent); err != nil || ok {
				t.Fatalf("Seek(%q) = %+v, %v; want nothing", absent, nd, err)
			}
			if nd, ok, err := it.Peek(ctx); err != nil || !ok || nd.Name != name(i) {
				t.Fatalf("after Seek(%q), Peek = %+v, %v; want %s", absent, nd, err, name(i))
			}
		}
		nd, ok, err := it.Seek(ctx, key)
		if err != nil || !ok || nd.Name != name(i) {
			t.Fatalf("Seek(%q) = %+v, %v", key, nd, err)
		}
	}
	// Past the end.
	if nd, ok, err := it.Seek(ctx, "zzz"); err != nil || ok {
		t.Errorf("Seek past the end: %+v, %v", nd, err)
	}
	if nd, ok, err := it.Peek(ctx); err != nil || ok {
		t.Errorf("Peek past the end: %+v, %v", nd, err)
	}
	// A full walk returns every entry in order.
	it = r.Iter(root)
	count := 0
	prevKey := ""
	for {
		nd, ok, err := it.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if count > 0 && nd.SortKey() <= prevKey {
			t.Fatalf("entry %q after %q", nd.SortKey(), prevKey)
		}
		if nd.Name != name(count) {
			t.Fatalf("entry %d is %q", count, nd.Name)
		}
		prevKey = nd.SortKey()
		count++
	}
	if count != n {
		t.Errorf("walked %d entries, want %d", count, n)
	}

	// One more file rewrites about one page and the root directory.
	treeBefore := qaBlobCounts(r)[format.BlobTree]
	writeFile(t, filepath.Join(src, "e10000a"), nil)
	c2 := qaCount(t, src)
	sn2 := qaBackup(t, r, c2)
	if o := c2.Opened(); len(o) != 1 || o[0] != "e10000a" {
		t.Errorf("adding one file, the backup opened %d files: %v", len(o), o[:min(len(o), 10)])
	}
	newTree := qaBlobCounts(r)[format.BlobTree] - treeBefore
	if sn2.Stats.NewBlobs > 4 || newTree < 2 || uint64(newTree) != sn2.Stats.NewBlobs {
		t.Errorf("adding one empty file added %d blobs (%d tree blobs), want 2 to 4 tree blobs", sn2.Stats.NewBlobs, newTree)
	}
	root2, err := r.LoadDir(ctx, sn2.Root)
	if err != nil {
		t.Fatal(err)
	}
	old := map[crypto.ID]bool{}
	for _, pr := range root.Pages {
		old[pr.ID] = true
	}
	changed := 0
	for _, pr := range root2.Pages {
		if !old[pr.ID] {
			changed++
		}
	}
	t.Logf("adding one entry changed %d of %d pages; %d new blobs", changed, len(root2.Pages), sn2.Stats.NewBlobs)
	if changed < 1 || changed > 3 || root2.Stats.Entries != n+1 {
		t.Errorf("adding one entry changed %d pages (entries %d)", changed, root2.Stats.Entries)
	}
	if _, ok, err := r.Lookup(ctx, root2, "e10000a"); err != nil || !ok {
		t.Errorf("the new entry is not found: %v", err)
	}
}

// attrSource fills attributes only when a file is opened, as an S3
// source with deferred attributes does.
type attrSource struct {
	backup.Source
	deferred bool
	reused   int
}

func (s *attrSource) DeferAttrs() { s.deferred = true }
func (s *attrSource) ReuseAttrs(prev, cur *tree.Node) {
	s.reused++
	cur.Attrs = prev.Attrs
}
func (s *attrSource) Open(ctx context.Context, it *backup.Item) (io.ReadCloser, error) {
	// Like a GET, take a while: the backup's assembler has the item by
	// then and must still see what Open fills in.
	time.Sleep(30 * time.Millisecond)
	it.Node.Attrs = []tree.Attr{{Key: "etag", Value: []byte("e-" + it.Node.Name)}}
	return s.Source.Open(ctx, it)
}

// TestDeferredAttrs: attributes a source fills in Open reach the
// snapshot, and an unchanged file gets its parent's through ReuseAttrs.
func TestDeferredAttrs(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), []byte("a"))
	writeFile(t, filepath.Join(dir, "sub", "b"), []byte("b"))
	fs, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		src := &attrSource{Source: fs}
		res, err := backup.Run(t.Context(), r, src, backup.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !src.deferred {
			t.Fatal("DeferAttrs was not called")
		}
		if round == 1 && src.reused != 2 {
			t.Fatalf("round 2 reused attrs of %d files, want 2", src.reused)
		}
		for _, p := range []string{"/a", "/sub/b"} {
			n, err := r.ResolvePath(t.Context(), res.Snapshot, p, true)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := n.Attr("etag"); !ok || string(v) != "e-"+n.Name {
				t.Fatalf("round %d: %s has etag %q, %v", round, p, v, ok)
			}
		}
	}
}

// mapTrees is a TreeCache that counts what it had to load.
type mapTrees struct {
	dirs  map[crypto.ID]*tree.Dir
	pages map[crypto.ID][]tree.Node
	loads int
}

func (m *mapTrees) Dir(ctx context.Context, id crypto.ID, load func(context.Context) (*tree.Dir, error)) (*tree.Dir, error) {
	if d, ok := m.dirs[id]; ok {
		return d, nil
	}
	m.loads++
	d, err := load(ctx)
	if err == nil {
		m.dirs[id] = d
	}
	return d, err
}

func (m *mapTrees) Page(ctx context.Context, id crypto.ID, load func(context.Context) ([]tree.Node, error)) ([]tree.Node, error) {
	if p, ok := m.pages[id]; ok {
		return p, nil
	}
	m.loads++
	p, err := load(ctx)
	if err == nil {
		m.pages[id] = p
	}
	return p, err
}

// TestTreeCache: with a TreeCache set, resolving the same paths again
// loads no directory or page.
func TestTreeCache(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	for i := 0; i < 600; i++ { // a paged directory
		writeFile(t, filepath.Join(src, "big", fmt.Sprintf("f%04d", i)), nil)
	}
	writeFile(t, filepath.Join(src, "a", "b", "c"), []byte("c"))
	sn := backupDir(t, r, src, backup.Options{})
	m := &mapTrees{dirs: map[crypto.ID]*tree.Dir{}, pages: map[crypto.ID][]tree.Node{}}
	r.SetTreeCache(m)
	paths := []string{"/a/b/c", "/big/f0123", "/big/f0599"}
	for round := 0; round < 2; round++ {
		before := m.loads
		for _, p := range paths {
			if _, err := r.ResolvePath(t.Context(), sn, p, true); err != nil {
				t.Fatal(err)
			}
		}
		if round == 0 && m.loads == before {
			t.Fatal("the cache was not used")
		}
		if round == 1 && m.loads != before {
			t.Fatalf("second round loaded %d trees, want 0", m.loads-before)
		}
	}
}

// qaRewrite gives p new content and an mtime an hour before fixedTime,
// so a backup must notice the change by more than the mtime moving on.
func qaRewrite(t testing.TB, p string, content []byte) {
	t.Helper()
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	tm := fixedTime.Add(-time.Hour)
	if err := os.Chtimes(p, tm, tm); err != nil {
		t.Fatal(err)
	}
}
