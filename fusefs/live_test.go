package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/coffer-backup/coffer/engine/object"
)

// memLive is a LiveTree in memory: keys to contents, the ETag a counter
// of writes. It counts requests.
type memLive struct {
	mu    sync.Mutex
	objs  map[string][]byte
	etags map[string]string
	seq   int
	page  int
	lists int
	stats int
	attrs int
	reads int64 // bytes read
	// readDelay is how long a read takes a MiB, rounded up (outside
	// the lock).
	readDelay time.Duration
}

func newMemLive(page int) *memLive {
	return &memLive{objs: map[string][]byte{}, etags: map[string]string{}, page: page}
}

func (m *memLive) put(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.objs[key], m.etags[key] = data, fmt.Sprintf(`"e%d"`, m.seq)
}

func (m *memLive) List(ctx context.Context, prefix, token string) (object.LivePage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	var keys []string
	for k := range m.objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var all []object.LiveEntry
	for _, k := range keys {
		rest := strings.TrimPrefix(k, prefix)
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			if n := len(all); n > 0 && all[n-1].Dir && all[n-1].Name == rest[:i] {
				continue
			}
			all = append(all, object.LiveEntry{Name: rest[:i], Dir: true})
			continue
		}
		all = append(all, object.LiveEntry{Name: rest, Size: int64(len(m.objs[k])), MTime: time.Unix(1e9, 0), ETag: m.etags[k]})
	}
	from := 0
	if token != "" {
		fmt.Sscan(token, &from)
	}
	to := min(from+m.page, len(all))
	pg := object.LivePage{Entries: all[from:to]}
	if to < len(all) {
		pg.Next = fmt.Sprint(to)
	}
	return pg, nil
}

func (m *memLive) Stat(ctx context.Context, prefix, name string) (*object.LiveEntry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats++
	key := prefix + name
	var obj *object.LiveEntry
	if d, ok := m.objs[key]; ok {
		obj = &object.LiveEntry{Name: name, Size: int64(len(d)), MTime: time.Unix(1e9, 0), ETag: m.etags[key]}
	}
	dir := false
	for k := range m.objs {
		dir = dir || strings.HasPrefix(k, key+"/")
	}
	return obj, dir, nil
}

func (m *memLive) ReadRange(ctx context.Context, o object.LiveObject, off, n int64) ([]byte, error) {
	if m.readDelay > 0 {
		time.Sleep(m.readDelay * time.Duration((n+1<<20-1)>>20))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads += n
	d, ok := m.objs[o.Key]
	if !ok || m.etags[o.Key] != o.ETag {
		return nil, fmt.Errorf("%s: %w", o.Key, object.ErrChanged)
	}
	return bytes.Clone(d[off : off+n]), nil
}

// Attrs gives an object its ETag and length, as attributes.
func (m *memLive) Attrs(ctx context.Context, o object.LiveObject) ([]object.LiveAttr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attrs++
	d, ok := m.objs[o.Key]
	if !ok || m.etags[o.Key] != o.ETag {
		return nil, fmt.Errorf("%s: %w", o.Key, object.ErrChanged)
	}
	return []object.LiveAttr{{Key: "etag", Value: []byte(o.ETag)}, {Key: "meta.len", Value: []byte(fmt.Sprint(len(d)))}}, nil
}

// TestLiveNames: a folder over several pages lists every key once, in
// order, named as a snapshot names them: a folder beside an object of
// its name gets "%~", an empty segment is "%_"; a lookup before a
// listing asks for that name alone, and a listed folder answers
// lookups, found or not, without asking.
func TestLiveNames(t *testing.T) {
	m := newMemLive(3)
	for _, k := range []string{"a", "a/b", "b//c", "c.txt", "d/e", "f", "g", "h"} {
		m.put(k, []byte(k))
	}
	f := NewLive(m, LiveOptions{TTL: time.Hour})
	defer f.Close()
	root := &liveDir{fsys: f}
	ctx := context.Background()
	if n, err := root.find(ctx, "a%~"); err != nil || n == nil || !n.e.Dir || n.e.Name != "a" {
		t.Fatalf("lookup of a%%~: %+v, %v", n, err)
	}
	if e, err := root.find(ctx, "zz"); err != nil || e != nil {
		t.Fatalf("lookup of zz: %+v, %v", e, err)
	}
	if m.lists != 0 || m.stats != 2 {
		t.Fatalf("two lookups cost %d lists and %d stats, want 0 and 2", m.lists, m.stats)
	}
	// Listed as it is read: the first entries cost the first page alone.
	fh, _, errno := root.OpendirHandle(ctx, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	h := fh.(*liveDirHandle)
	lists := m.lists
	var got []string
	for {
		de, errno := h.Readdirent(ctx)
		if errno != 0 {
			t.Fatal(errno)
		}
		if de == nil {
			break
		}
		if de.Name != "." && de.Name != ".." {
			got = append(got, de.Name)
		}
		if len(got) == 1 && m.lists != lists+1 {
			t.Fatalf("the first entry cost %d LISTs, want 1", m.lists-lists)
		}
	}
	if m.lists != lists+3 {
		t.Fatalf("8 entries in pages of 3 cost %d LISTs, want 3", m.lists-lists)
	}
	// Seek back: from the entries already fetched.
	h.Seekdir(ctx, 3)
	if de, _ := h.Readdirent(ctx); de == nil || de.Name != "a%~" || m.lists != lists+3 {
		t.Fatalf("after a seek: %+v (%d LISTs)", de, m.lists-lists)
	}
	if want := []string{"a", "a%~", "b", "c.txt", "d", "f", "g", "h"}; !slices.Equal(got, want) {
		t.Fatalf("root lists %v, want %v", got, want)
	}
	b := &liveDir{fsys: f, prefix: "b/"}
	if names, err := b.list(ctx); err != nil || len(names) != 1 || names[0].local != "%_" || !names[0].e.Dir {
		t.Fatalf("b/ lists %+v, %v", names, err)
	}
	lists, stats := m.lists, m.stats
	for _, name := range []string{"c.txt", "nope", "a%~"} {
		root.find(ctx, name)
	}
	if m.lists != lists || m.stats != stats {
		t.Fatalf("lookups in a listed folder asked the tree (%d lists, %d stats)", m.lists-lists, m.stats-stats)
	}
}

// TestLivePinned: an open file reads the version it was opened on; once
// the object is rewritten, a read of a block not cached fails with
// ESTALE (never the new bytes beside the old ones), and the next lookup
// sees the new object, whose reads are the new bytes.
func TestLivePinned(t *testing.T) {
	m := newMemLive(1000)
	old := bytes.Repeat([]byte("o"), 3*LiveBlock)
	m.put("k", old)
	f := NewLive(m, LiveOptions{TTL: 0, ReadAhead: -1})
	defer f.Close()
	root := &liveDir{fsys: f}
	ctx := context.Background()
	n, err := root.find(ctx, "k")
	if err != nil || n == nil {
		t.Fatal(n, err)
	}
	file := &liveFile{fsys: f, dir: root, name: "k", key: "k"}
	file.set(n.e)
	fh, _, errno := file.Open(ctx, syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	buf := make([]byte, 4096)
	if res, errno := file.Read(ctx, fh, buf, 0); errno != 0 {
		t.Fatal(errno)
	} else if b, _ := res.Bytes(nil); !bytes.Equal(b, old[:4096]) {
		t.Fatal("first read: wrong bytes")
	}
	newer := bytes.Repeat([]byte("n"), 2*LiveBlock+5)
	m.put("k", newer)
	// The block already read stays the old version's.
	if res, errno := file.Read(ctx, fh, buf, 100); errno != 0 {
		t.Fatal(errno)
	} else if b, _ := res.Bytes(nil); !bytes.Equal(b, old[100:4196]) {
		t.Fatal("cached block: wrong bytes")
	}
	// A read across the cached block and one not cached: never mixed.
	wide := make([]byte, 2*LiveBlock)
	if _, errno := file.Read(ctx, fh, wide, LiveBlock/2); errno != syscall.ESTALE {
		t.Fatalf("read of a changed object: errno %v, want ESTALE", errno)
	}
	n, err = root.find(ctx, "k")
	if err != nil || n == nil || n.e.Size != int64(len(newer)) {
		t.Fatalf("lookup after the change: %+v, %v", n, err)
	}
	file.set(n.e)
	fh, _, _ = file.Open(ctx, syscall.O_RDONLY)
	all := make([]byte, len(newer)+10)
	res, errno := file.Read(ctx, fh, all, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if b, _ := res.Bytes(nil); !bytes.Equal(b, newer) {
		t.Fatalf("read after reopening: %d bytes, not the new object's %d", len(b), len(newer))
	}
}

// TestLiveKeepCache: the kernel keeps its cached pages of a file across
// opens only while they can be of the version opened: a second open of
// the same version keeps them; an open of a new version drops them, and
// while a handle of the old version is still open (it may read old
// pages in), the next opens drop them too.
func TestLiveKeepCache(t *testing.T) {
	m := newMemLive(1000)
	m.put("k", []byte("one"))
	f := NewLive(m, LiveOptions{TTL: 0, ReadAhead: -1})
	defer f.Close()
	root := &liveDir{fsys: f}
	ctx := context.Background()
	file := &liveFile{fsys: f, dir: root, name: "k", key: "k"}
	open := func() (fs.FileHandle, bool) {
		t.Helper()
		n, err := root.find(ctx, "k")
		if err != nil || n == nil {
			t.Fatal(n, err)
		}
		file.set(n.e)
		fh, fl, errno := file.Open(ctx, syscall.O_RDONLY)
		if errno != 0 {
			t.Fatal(errno)
		}
		return fh, fl&fuse.FOPEN_KEEP_CACHE != 0
	}
	release := func(fh fs.FileHandle) { fh.(*liveHandle).Release(ctx) }
	want := func(keep bool, why string) fs.FileHandle {
		t.Helper()
		fh, got := open()
		if got != keep {
			t.Fatalf("%s: FOPEN_KEEP_CACHE %v, want %v", why, got, keep)
		}
		return fh
	}
	release(want(false, "the first open"))
	h2 := want(true, "a second open of the same version")
	m.put("k", []byte("two")) // a new version; h2 (old) stays open
	release(want(false, "an open of a new version"))
	h4 := want(false, "an open while a handle of the old version is open")
	release(h2)
	release(h4)
	release(want(false, "the first open after the old version's handle may have read pages in"))
	release(want(true, "an open with one version only, read since the last drop"))
}
