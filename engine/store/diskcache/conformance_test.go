package diskcache_test

import (
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/diskcache"
	"github.com/coffer-backup/coffer/engine/store/storetest"
)

// The cache, enabled, over a Memory store is a Storage like any other.
// The suite names packs, index files and snapshots by the hash of their
// bytes, so whole copies and tree-pack ranges really are kept and then
// served from disk; the hit count proves it.
func TestConformance(t *testing.T) {
	var hits atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Storage {
		d := diskcache.New(store.NewMemory())
		if err := d.Enable(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hits.Add(d.Stats().Hits) })
		return d
	})
	if hits.Load() == 0 {
		t.Error("the suite never read from the cache: it tested the store behind it, not the cache")
	}
	t.Logf("%d reads served from the cache", hits.Load())
}
