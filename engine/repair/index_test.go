package repair_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/enginetest"
	"github.com/coffer-backup/coffer/engine/repair"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"

	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repairStore makes a folder store of n snapshots of n sources (kept, to
// compare restores with), the later ones sharing a file with the first.
func repairStore(t *testing.T, n int) (storeDir string, srcs []string) {
	t.Helper()
	r, storeDir := enginetest.NewRepo(t, engine.CreateOptions{Chunker: enginetest.Chunker})
	for i := range n {
		src := filepath.Join(t.TempDir(), fmt.Sprintf("src%d", i))
		enginetest.WriteFile(t, filepath.Join(src, "shared"), testtree.Text(7, 90000))
		for d := range 2 {
			enginetest.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d", d), "f"), testtree.Text(uint64(10*i+d), 70000))
		}
		enginetest.WriteFile(t, filepath.Join(src, "big"), testtree.RandBytes(300000))
		enginetest.BackupDir(t, r, src, backup.Options{})
		srcs = append(srcs, src)
	}
	return storeDir, srcs
}

// verifyStore reopens the store and checks that every snapshot restores
// to its source byte for byte and that a full check passes.
func verifyStore(t *testing.T, storeDir string, srcs []string) {
	t.Helper()
	r := enginetest.Reopen(t, storeDir)
	ctx := context.Background()
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sns) != len(srcs) {
		t.Fatalf("%d snapshots, want %d", len(sns), len(srcs))
	}
	for _, sn := range sns {
		to := filepath.Join(t.TempDir(), "out")
		if err := enginetest.RestoreAll(t, r, sn, to); err != nil {
			t.Fatalf("restore %s (%s): %v", sn.ID.Short(), sn.Source, err)
		}
		enginetest.CompareTrees(t, sn.Source, to)
	}
	res, err := check.Run(ctx, enginetest.Reopen(t, storeDir), check.Options{})
	if err != nil || !res.OK() || len(res.Warnings) != 0 {
		t.Fatalf("check after repair: %v, problems %v, warnings %v", err, res.Problems, res.Warnings)
	}
}

func repairIndex(t *testing.T, storeDir string, dry bool) *repair.IndexResult {
	t.Helper()
	res, err := repair.Index(context.Background(), enginetest.Reopen(t, storeDir), repair.IndexOptions{DryRun: dry})
	if err != nil {
		t.Fatalf("repair index: %v", err)
	}
	return res
}

// TestRepairIndexAfterLoss: with every index file deleted, the snapshots
// do not restore; after repair index they restore byte-exact and a full
// check passes. A dry run before it writes and removes nothing.
func TestRepairIndexAfterLoss(t *testing.T) {
	storeDir, srcs := repairStore(t, 3)
	packs := len(enginetest.StorePacks(t, storeDir))
	for _, name := range enginetest.IndexFiles(t, storeDir) {
		if err := os.Remove(filepath.Join(storeDir, "index", name)); err != nil {
			t.Fatal(err)
		}
	}
	r := enginetest.Reopen(t, storeDir)
	sns, err := r.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := enginetest.RestoreAll(t, r, sns[0], t.TempDir()); err == nil {
		t.Fatal("test setup: a snapshot restores with no index")
	}

	dry := repairIndex(t, storeDir, true)
	if n := len(enginetest.IndexFiles(t, storeDir)); n != 0 || len(dry.NewIndexFiles) != 0 || !dry.DryRun {
		t.Fatalf("dry run wrote %d index files (reports %v)", n, dry.NewIndexFiles)
	}
	res := repairIndex(t, storeDir, false)
	if res.Packs != packs || res.Indexed != packs || res.Unindexed != packs || len(res.BadTrailers) != 0 || len(res.OldIndexFiles) != 0 {
		t.Errorf("repair: %+v; the store has %d packs", res, packs)
	}
	if dry.Packs != res.Packs || dry.Indexed != res.Indexed || dry.Blobs != res.Blobs {
		t.Errorf("dry run said %+v, repair did %+v", dry, res)
	}
	if got := enginetest.IndexFiles(t, storeDir); len(got) != len(res.NewIndexFiles) || len(got) == 0 {
		t.Errorf("store has index files %v, repair wrote %v", got, res.NewIndexFiles)
	}
	verifyStore(t, storeDir, srcs)
}

// TestRepairIndexDamagedIndexFile: one index file with flipped bytes is
// named, replaced with the others by index files read from the trailers,
// and the store restores and checks clean. Putting the old index files
// back (a repair killed between writing the new index and removing the
// old) leaves a store that still restores and checks clean.
func TestRepairIndexDamagedIndexFile(t *testing.T) {
	storeDir, srcs := repairStore(t, 3)
	names := enginetest.IndexFiles(t, storeDir)
	saved := map[string][]byte{}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(storeDir, "index", n))
		if err != nil {
			t.Fatal(err)
		}
		saved[n] = data
	}
	p := filepath.Join(storeDir, "index", names[1])
	data := append([]byte(nil), saved[names[1]]...)
	for i := len(data) / 3; i < len(data)/3+8; i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	res := repairIndex(t, storeDir, false)
	if len(res.DamagedIndexFiles) != 1 || res.DamagedIndexFiles[0] != names[1] || len(res.OldIndexFiles) != len(names) {
		t.Errorf("damaged %v (want %s), old %v", res.DamagedIndexFiles, names[1][:8], res.OldIndexFiles)
	}
	if res.Unindexed == 0 {
		t.Error("the packs the damaged index file listed are not counted as newly indexed")
	}
	after := enginetest.IndexFiles(t, storeDir)
	for _, n := range after {
		if _, ok := saved[n]; ok {
			t.Errorf("old index file %s is still there", n[:8])
		}
	}
	verifyStore(t, storeDir, srcs)

	// The state a crash between the two steps leaves: old and new.
	for n, data := range saved {
		if n != names[1] {
			if err := os.WriteFile(filepath.Join(storeDir, "index", n), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	verifyStore(t, storeDir, srcs)
	// And a rerun finishes the work.
	res = repairIndex(t, storeDir, false)
	if len(res.OldIndexFiles) != len(after)+len(names)-1 || res.Unindexed != 0 {
		t.Errorf("rerun: old %d index files, want %d; newly indexed %d", len(res.OldIndexFiles), len(after)+len(names)-1, res.Unindexed)
	}
	if n := len(enginetest.IndexFiles(t, storeDir)); n != len(res.NewIndexFiles) {
		t.Errorf("rerun left %d index files, wrote %d", n, len(res.NewIndexFiles))
	}
	verifyStore(t, storeDir, srcs)
}

// damageTrailer flips a byte of a pack's sealed trailer.
func damageTrailer(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-10] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRepairIndexBadTrailer: a pack whose trailer is damaged is named and
// left in place. If an old index file listed it, its entries are kept
// (every snapshot still restores); if none did, the rest is repaired and
// the snapshots that do not use it restore.
func TestRepairIndexBadTrailer(t *testing.T) {
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("indexLost=%v", lost), func(t *testing.T) {
			storeDir, srcs := repairStore(t, 3)
			// The data pack holding the last snapshot's random file: used
			// by that snapshot only.
			r := enginetest.Reopen(t, storeDir)
			ctx := context.Background()
			if err := r.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			sns, err := r.Snapshots(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var victim *engine.Snapshot
			for _, sn := range sns {
				if sn.Source == srcs[2] {
					victim = sn
				}
			}
			n, err := r.ResolvePath(ctx, victim, "/big", true)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := r.FileChunks(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			_, pack, ok := r.Index.Lookup(cs[0].ID)
			if !ok {
				t.Fatal("test setup: /big's first chunk is in no index")
			}
			packPath := enginetest.StorePacks(t, storeDir)[pack.String()]
			damageTrailer(t, packPath)
			if lost {
				for _, name := range enginetest.IndexFiles(t, storeDir) {
					os.Remove(filepath.Join(storeDir, "index", name))
				}
			}
			res := repairIndex(t, storeDir, false)
			if len(res.BadTrailers) != 1 || res.BadTrailers[0].Pack != pack.String() || !strings.Contains(res.BadTrailers[0].Error, "auth") {
				t.Fatalf("bad trailers %+v, want pack %s", res.BadTrailers, pack.Short())
			}
			if (res.BadTrailers[0].FromIndex != "") == lost {
				t.Errorf("index lost %v, entries kept from %q", lost, res.BadTrailers[0].FromIndex)
			}
			if _, err := os.Stat(packPath); err != nil {
				t.Fatalf("the pack with the bad trailer is gone: %v", err)
			}
			if res.Indexed != res.Packs-map[bool]int{true: 1, false: 0}[lost] {
				t.Errorf("indexed %d of %d packs", res.Indexed, res.Packs)
			}
			r = enginetest.Reopen(t, storeDir)
			for _, sn := range sns {
				to := filepath.Join(t.TempDir(), "out")
				err := enginetest.RestoreAll(t, r, sn, to)
				if lost && sn == victim {
					if err == nil {
						t.Error("a snapshot whose pack is unindexed restored")
					}
					continue
				}
				if err != nil {
					t.Fatalf("restore %s: %v", sn.Source, err)
				}
				enginetest.CompareTrees(t, sn.Source, to)
			}
		})
	}
}

// TestRepairIndexKeptIndexNotStale: a process that keeps its index in a
// cache folder, after the store's index was rebuilt, uses the new index
// files, not its kept copy of the old ones (which the engine drops once
// an index file it covers is gone), and finds every blob.
func TestRepairIndexKeptIndexNotStale(t *testing.T) {
	storeDir, srcs := repairStore(t, 3)
	cache := t.TempDir()
	ctx := context.Background()
	r := enginetest.Reopen(t, storeDir)
	r.UseIndexCache(cache)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	old := enginetest.IndexFiles(t, storeDir)
	if len(r.Index.Covered()) != len(old) {
		t.Fatalf("test setup: the kept index covers %d of %d index files", len(r.Index.Covered()), len(old))
	}
	r.Index.Close()
	repairIndex(t, storeDir, false)

	r = enginetest.Reopen(t, storeDir)
	r.UseIndexCache(cache)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	covered := r.Index.Covered()
	for _, c := range covered {
		for _, o := range old {
			if c == o {
				t.Errorf("the kept index still covers the removed index file %s", o[:8])
			}
		}
	}
	if len(covered) != len(enginetest.IndexFiles(t, storeDir)) {
		t.Errorf("the kept index covers %v, the store has %v", covered, enginetest.IndexFiles(t, storeDir))
	}
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, sn := range sns {
		to := filepath.Join(t.TempDir(), "out")
		if err := enginetest.RestoreAll(t, r, sn, to); err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		enginetest.CompareTrees(t, sn.Source, to)
	}
	_ = srcs
}

// hideFromList is a Storage whose listings leave out one object.
type hideFromList struct {
	store.Storage
	name string
}

func (s *hideFromList) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	return s.Storage.List(ctx, k, func(o store.ObjectInfo) error {
		if o.Handle.Name == s.name {
			return nil
		}
		return fn(o)
	})
}

func (s *hideFromList) Unwrap() store.Storage { return s.Storage }

// TestRepairIndexDroppedPacks: a pack the index names that is gone is
// dropped from the index (counted); one the listing misses but that is
// there stops the repair before it changes anything.
func TestRepairIndexDroppedPacks(t *testing.T) {
	storeDir, _ := repairStore(t, 2)
	packs := enginetest.StorePacks(t, storeDir)
	var victim string
	for name, p := range packs {
		if strings.Contains(p, string(filepath.Separator)+"d"+string(filepath.Separator)) {
			victim = name
			break
		}
	}
	before := enginetest.IndexFiles(t, storeDir)
	r := enginetest.OpenRepo(t, &hideFromList{Storage: enginetest.FolderStore(t, storeDir), name: victim})
	_, err := repair.Index(context.Background(), r, repair.IndexOptions{})
	if err == nil || !strings.Contains(err.Error(), victim[:8]) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("repair over a listing that misses pack %s: %v", victim[:8], err)
	}
	if after := enginetest.IndexFiles(t, storeDir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("index files changed: %v -> %v", before, after)
	}
	if err := os.Remove(packs[victim]); err != nil {
		t.Fatal(err)
	}
	res := repairIndex(t, storeDir, false)
	if res.Dropped != 1 || res.Indexed != len(packs)-1 {
		t.Errorf("pack removed: dropped %d, indexed %d of %d", res.Dropped, res.Indexed, len(packs))
	}
}
