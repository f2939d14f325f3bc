package diskcache

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/engine/store"
)

func TestDiskCache(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := store.NewFolder(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingStorage{Storage: st}
	put := func(k store.Kind, data []byte) store.Handle {
		sum := blake3.Sum256(data)
		h := store.Handle{Kind: k, Name: hex.EncodeToString(sum[:])}
		if err := st.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		return h
	}
	idx := put(store.KindIndex, []byte("sealed index bytes"))
	pack := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	treePack := put(store.KindTreePack, pack)
	dataPack := put(store.KindDataPack, pack)

	d := New(counting)
	// Disabled: everything passes through.
	d.Get(ctx, idx, 0, -1)
	if counting.gets.Load() != 1 {
		t.Fatal("disabled cache did not pass through")
	}
	cdir := filepath.Join(root, "cache", "storeid")
	if err := d.Enable(cdir); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if b, err := d.Get(ctx, idx, 0, -1); err != nil || string(b) != "sealed index bytes" {
			t.Fatalf("index: %q %v", b, err)
		}
		if b, err := d.Get(ctx, treePack, 10, 5); err != nil || string(b) != "abcde" {
			t.Fatalf("tree pack range: %q %v", b, err)
		}
		if b, err := d.Get(ctx, dataPack, 10, 5); err != nil || string(b) != "abcde" {
			t.Fatalf("data pack range: %q %v", b, err)
		}
	}
	// 1 (disabled) + index once + tree range once + data range thrice.
	if n := counting.gets.Load(); n != 6 {
		t.Fatalf("%d gets reached the store, want 6", n)
	}
	if fi, err := os.Stat(cdir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v %v", fi.Mode(), err)
	}
	// A corrupted copy is not served: it is fetched again.
	p, whole := d.cachePath(idx, 0, -1)
	if !whole {
		t.Fatal("an index file is not cached whole")
	}
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := d.Get(ctx, idx, 0, -1); string(b) != "sealed index bytes" || counting.gets.Load() != 7 {
		t.Fatalf("corrupt copy served: %q", b)
	}
	// Invalidate drops a range: the next Get fetches it.
	d.Invalidate(treePack, 10, 5)
	if b, _ := d.Get(ctx, treePack, 10, 5); string(b) != "abcde" || counting.gets.Load() != 8 {
		t.Fatalf("an invalidated range was served from disk (%d gets)", counting.gets.Load())
	}
	// A second cache on the same folder starts warm.
	d2 := New(counting)
	d2.Enable(cdir)
	d2.Get(ctx, idx, 0, -1)
	d2.Get(ctx, treePack, 10, 5)
	if n := counting.gets.Load(); n != 8 {
		t.Fatalf("a warm cache fetched again: %d gets", n)
	}
	// The decorator shows what it wraps: features, and the way down.
	if d.Features() != st.Features() || d.Unwrap() != store.Storage(counting) {
		t.Fatal("the disk cache hides what it wraps")
	}
	if !store.Caches(d) {
		t.Fatal("store.Caches does not see the disk cache")
	}
}

type countingStorage struct {
	store.Storage
	gets atomic.Int64
}

func (c *countingStorage) Get(ctx context.Context, h store.Handle, off, length int64) ([]byte, error) {
	c.gets.Add(1)
	return c.Storage.Get(ctx, h, off, length)
}

// folderSize sums the sizes of the files under dir.
func folderSize(t *testing.T, dir string) (total int64, files int) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			fi, _ := e.Info()
			total += fi.Size()
			files++
		}
		return nil
	})
	return total, files
}

func TestLimit(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := store.NewFolder(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingStorage{Storage: st}
	// Index files of 5000 bytes: each counts as 2 blocks, 8 KiB.
	var objs []store.Handle
	for i := 0; i < 20; i++ {
		data := make([]byte, 5000)
		data[0] = byte(i)
		sum := blake3.Sum256(data)
		h := store.Handle{Kind: store.KindIndex, Name: hex.EncodeToString(sum[:])}
		if err := st.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, h)
	}
	const limit = 5 * 8192
	cdir := filepath.Join(root, "cache")
	d := New(counting)
	if err := d.Enable(cdir); err != nil {
		t.Fatal(err)
	}
	d.SetLimit(limit)
	get := func(d *Storage, i int) {
		t.Helper()
		if b, err := d.Get(ctx, objs[i], 0, -1); err != nil || len(b) != 5000 || b[0] != byte(i) {
			t.Fatalf("get %d: %v", i, err)
		}
	}
	cached := func(d *Storage, i int) bool {
		p, _ := d.cachePath(objs[i], 0, -1)
		_, err := os.Stat(p)
		return err == nil
	}
	for i := 0; i < 5; i++ {
		get(d, i)
	}
	if d.Size() != limit || d.Stats().Evicted != 0 {
		t.Fatalf("5 copies: size %d, %d evicted", d.Size(), d.Stats().Evicted)
	}
	// A hit makes 0 the most recently used: 1 goes first, then 2.
	get(d, 0)
	gets := counting.gets.Load()
	get(d, 5)
	get(d, 6)
	if counting.gets.Load() != gets+2 {
		t.Fatal("a hit reached the store")
	}
	for i, want := range []bool{true, false, false, true, true, true, true} {
		if cached(d, i) != want {
			t.Fatalf("copy %d kept: %v, want %v", i, !want, want)
		}
	}
	// Many more: the folder stays under the limit.
	for i := 7; i < 20; i++ {
		get(d, i)
		if total, _ := folderSize(t, cdir); total > limit || d.Size() > limit {
			t.Fatalf("after %d: folder %d bytes, counted %d, limit %d", i, total, d.Size(), limit)
		}
	}
	if total, files := folderSize(t, cdir); files != 5 || d.Stats().Evicted != 15 {
		t.Fatalf("folder: %d files, %d bytes; %d evicted", files, total, d.Stats().Evicted)
	}
	for i := 15; i < 20; i++ {
		if !cached(d, i) {
			t.Fatalf("copy %d, among the 5 newest, is gone", i)
		}
	}

	// A new process counts the copies at Enable and evicts the oldest
	// by mtime (the recency a hit leaves behind).
	base := time.Now().Add(-time.Hour)
	for i := 15; i < 20; i++ {
		p, _ := d.cachePath(objs[i], 0, -1)
		tm := base.Add(time.Duration(20-i) * time.Minute) // 19 oldest, 15 newest
		os.Chtimes(p, tm, tm)
	}
	d2 := New(counting)
	if err := d2.Enable(cdir); err != nil {
		t.Fatal(err)
	}
	if d2.Size() != limit {
		t.Fatalf("a new process counts %d bytes, want %d", d2.Size(), limit)
	}
	get(d2, 18) // a hit: now the newest
	d2.SetLimit(2 * 8192)
	for i := 15; i < 20; i++ {
		if want := i == 15 || i == 18; cached(d2, i) != want {
			t.Fatalf("after SetLimit, copy %d kept: %v", i, !want)
		}
	}
	// An object larger than the limit is served but not kept.
	d2.SetLimit(4096)
	get(d2, 0)
	if cached(d2, 0) || d2.Size() > 4096 {
		t.Fatalf("an object over the limit was kept (%d bytes counted)", d2.Size())
	}
}
