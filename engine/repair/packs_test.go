package repair_test

import (
	"errors"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/enginetest"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/repair"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"

	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepairPacksRerunAfterCrash: a repair of a damaged data pack killed
// after its new index files are durable and before the old ones are
// removed (the old files put back) is finished by a rerun, which copies
// no blob twice; then the snapshot's undamaged files restore, the
// damaged one is named, and the next backup stores it again.
func TestRepairPacksRerunAfterCrash(t *testing.T) {
	ctx := context.Background()
	r, dir := enginetest.NewRepo(t, engine.CreateOptions{Chunker: enginetest.Chunker})
	src := filepath.Join(t.TempDir(), "src")
	// Each file below the chunker's minimum (16 KiB), so one blob each
	// whatever the store's chunker key: 20,000 bytes were one chunk or
	// two by the key, and the counts below failed 1 run in 20.
	enginetest.WriteFile(t, filepath.Join(src, "victim"), testtree.RandBytes(12000))
	enginetest.WriteFile(t, filepath.Join(src, "a"), testtree.Text(1, 4000))
	enginetest.WriteFile(t, filepath.Join(src, "b"), testtree.Text(2, 4000))
	sn := enginetest.BackupDir(t, r, src, backup.Options{})
	flipFile(t, r, dir, sn, "/victim")
	old := map[string][]byte{}
	for _, n := range enginetest.IndexFiles(t, dir) {
		old[n], _ = os.ReadFile(filepath.Join(dir, "index", n))
	}

	first, err := repair.Packs(ctx, enginetest.Reopen(t, dir), repair.PacksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Damaged) != 1 || first.LostBlobs != 1 || first.SalvagedBlobs != 2 || first.SalvagePacks != 1 {
		t.Fatalf("repair packs: %+v", first)
	}
	// The crash: the old index files are back beside the new ones.
	for n, b := range old {
		if err := os.WriteFile(filepath.Join(dir, "index", n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	again, err := repair.Packs(ctx, enginetest.Reopen(t, dir), repair.PacksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Damaged) != 1 || again.SalvagedBlobs != 0 || again.SalvagePacks != 0 || len(again.OldIndexFiles) == 0 {
		t.Fatalf("rerun: %+v", again)
	}
	for n := range old {
		if _, err := os.Stat(filepath.Join(dir, "index", n)); !os.IsNotExist(err) {
			t.Fatalf("old index file %s still there after the rerun", n[:8])
		}
	}
	if last, err := repair.Packs(ctx, enginetest.Reopen(t, dir), repair.PacksOptions{}); err != nil || len(last.Damaged) != 0 {
		t.Fatalf("third run: %+v %v", last, err)
	}

	res, err := check.Run(ctx, enginetest.Reopen(t, dir), check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || res.Problems[0].Path != "/victim" {
		t.Fatalf("check after repair packs: %v", res.Problems)
	}
	rs, err := repair.Snapshots(ctx, enginetest.Reopen(t, dir), repair.SnapshotsOptions{Forget: true})
	if err != nil || len(rs.Damaged) != 1 || rs.Packs != nil {
		t.Fatalf("repair snapshots: %+v %v", rs, err)
	}
	r = enginetest.Reopen(t, dir)
	sn2 := enginetest.BackupDir(t, r, src, backup.Options{})
	if sn2.Stats.NewBlobs != 1 {
		t.Fatalf("the next backup stored %d blobs, want the lost one", sn2.Stats.NewBlobs)
	}
	to := filepath.Join(t.TempDir(), "out")
	if err := enginetest.RestoreAll(t, r, sn2, to); err != nil {
		t.Fatal(err)
	}
	enginetest.CompareTrees(t, src, to)
	if res, err := check.Run(ctx, enginetest.Reopen(t, dir), check.Options{}); err != nil || !res.OK() {
		t.Fatalf("final check: %v %v", err, res.Problems)
	}
}

// hidePacks is a store whose listing leaves out packs, as a listing cut
// short by a permission on part of a bucket would.
type hidePacks struct{ store.Storage }

func (h hidePacks) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	if k == store.KindDataPack || k == store.KindTreePack {
		return nil
	}
	return h.Storage.List(ctx, k, fn)
}

// TestRepairIncompleteListing: when the listing lacks packs that exist,
// neither repair drops anything: both stop with an error and write
// nothing.
func TestRepairIncompleteListing(t *testing.T) {
	ctx := context.Background()
	storeDir, srcs := repairStore(t, 2)
	before := enginetest.StorePacks(t, storeDir)
	idx := enginetest.IndexFiles(t, storeDir)
	r := enginetest.OpenRepo(t, hidePacks{enginetest.FolderStore(t, storeDir)})
	if _, err := repair.Snapshots(ctx, r, repair.SnapshotsOptions{Forget: true}); err == nil || !strings.Contains(err.Error(), "listing") {
		t.Fatalf("repair snapshots with an incomplete listing: %v", err)
	}
	if _, err := repair.Packs(ctx, r, repair.PacksOptions{}); err == nil || !strings.Contains(err.Error(), "listing") {
		t.Fatalf("repair packs with an incomplete listing: %v", err)
	}
	if got := enginetest.StorePacks(t, storeDir); len(got) != len(before) {
		t.Fatalf("packs changed: %d, were %d", len(got), len(before))
	}
	if got := enginetest.IndexFiles(t, storeDir); strings.Join(got, ",") != strings.Join(idx, ",") {
		t.Fatal("index files changed")
	}
	verifyStore(t, storeDir, srcs)
}

// TestRepairPacksPruneLock: repair packs holds the prune lock, as repair
// index does: refused while a prune holds it (the dry run is not), and
// released when done, so a prune can run after it.
func TestRepairPacksPruneLock(t *testing.T) {
	ctx := context.Background()
	r, dir := enginetest.NewRepo(t, engine.CreateOptions{Chunker: enginetest.Chunker})
	src := filepath.Join(t.TempDir(), "src")
	enginetest.WriteFile(t, filepath.Join(src, "victim"), testtree.RandBytes(20000))
	sn := enginetest.BackupDir(t, r, src, backup.Options{})
	flipFile(t, r, dir, sn, "/victim")

	l, err := lease.Exclusive(ctx, r.Storage(), r.Keys(), lease.PruneName, lease.Options{Command: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	var held *lease.HeldError
	if _, err := repair.Packs(ctx, enginetest.Reopen(t, dir), repair.PacksOptions{}); !errors.As(err, &held) || !strings.Contains(err.Error(), "held by prune on ") {
		t.Fatalf("repair packs beside a prune: %v", err)
	}
	if res, err := repair.Packs(ctx, enginetest.Reopen(t, dir), repair.PacksOptions{DryRun: true}); err != nil || len(res.Damaged) != 1 {
		t.Fatalf("dry run beside a prune: %v %+v", err, res)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := repair.Packs(ctx, enginetest.Reopen(t, dir), repair.PacksOptions{})
	if err != nil || len(res.Damaged) != 1 || len(res.NewIndexFiles) == 0 {
		t.Fatalf("repair packs: %v %+v", err, res)
	}
	// Released: a prune can take the lock now.
	if _, err := enginetest.Reopen(t, dir).Prune(ctx, engine.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
}
