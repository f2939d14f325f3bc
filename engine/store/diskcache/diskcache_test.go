package diskcache

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

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
