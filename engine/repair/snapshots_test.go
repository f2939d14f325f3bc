package repair_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/enginetest"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/repair"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"

	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// flipBlob flips a byte in the middle of blob id's sealed bytes in its
// pack (a folder store at dir), and returns the pack.
func flipBlob(t *testing.T, r *engine.Repo, dir string, id crypto.ID) crypto.ID {
	t.Helper()
	loc, pack, ok := r.Locate(id)
	if !ok {
		t.Fatalf("blob %s is not indexed", id.Short())
	}
	k := store.KindDataPack
	if loc.Kind == format.BlobTree {
		k = store.KindTreePack
	}
	p := filepath.Join(dir, filepath.FromSlash(store.ObjectName(store.Handle{Kind: k, Name: pack.String()})))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.Offset+loc.Length/2] ^= 0x10
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return pack
}

// flipFile loads r's index and flips the first content blob of the file
// at path in snapshot sn (flipBlob).
func flipFile(t *testing.T, r *engine.Repo, dir string, sn *engine.Snapshot, path string) crypto.ID {
	t.Helper()
	ctx := context.Background()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := r.ResolvePath(ctx, sn, path, true)
	if err != nil {
		t.Fatal(err)
	}
	return flipBlob(t, r, dir, n.Chunks[0].ID)
}

// TestRepairSnapshotsPagedDir damages one page of a large (paged)
// directory and the content of one file on another page. A dry run
// with ReadData finds both and names both packs as still indexed and
// changes nothing; Packs drops them; Snapshots writes a
// snapshot without the page's entries and the file, whose totals and
// listing agree, which checks clean and restores the rest byte-exact.
func TestRepairSnapshotsPagedDir(t *testing.T) {
	ctx := context.Background()
	r, dir := enginetest.NewRepo(t, engine.CreateOptions{Chunker: enginetest.Chunker})
	src := filepath.Join(t.TempDir(), "src")
	const n = 1500
	for i := range n {
		enginetest.WriteFile(t, filepath.Join(src, "big", fmt.Sprintf("f%04d", i)), []byte(fmt.Sprintf("file %d of the big folder\n", i)))
	}
	enginetest.WriteFile(t, filepath.Join(src, "other.txt"), testtree.Text(3, 5000))
	sn := enginetest.BackupDir(t, r, src, backup.Options{})
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	bigNode, err := r.ResolvePath(ctx, sn, "/big", false)
	if err != nil {
		t.Fatal(err)
	}
	big, err := r.LoadDir(ctx, bigNode.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if big.Inline != nil || big.Height != 0 || len(big.Pages) < 3 {
		t.Fatalf("test setup: /big has %d pages at height %d, want ≥ 3 pages", len(big.Pages), big.Height)
	}
	page := big.Pages[1]
	victim, err := r.ResolvePath(ctx, sn, "/big/f1499", true)
	if err != nil {
		t.Fatal(err)
	}
	treePack := flipBlob(t, r, dir, page.ID)
	dataPack := flipBlob(t, r, dir, victim.Chunks[0].ID)

	r = enginetest.Reopen(t, dir)
	dry, err := repair.Snapshots(ctx, r, repair.SnapshotsOptions{DryRun: true, ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	wantStill := []string{treePack.String(), dataPack.String()}
	slices.Sort(wantStill)
	if len(dry.Damaged) != 1 || len(dry.Damaged[0].Paths) != 2 || !slices.Equal(dry.StillIndexed, wantStill) {
		t.Fatalf("dry run: %+v", dry)
	}
	if ids, _ := r.SnapshotIDs(ctx); len(ids) != 1 {
		t.Fatalf("the dry run wrote snapshots: %d", len(ids))
	}

	rp, err := repair.Packs(ctx, r, repair.PacksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Damaged) != 2 || rp.LostBlobs != 2 || rp.SalvagedBlobs == 0 {
		t.Fatalf("repair packs: %+v", rp)
	}

	r = enginetest.Reopen(t, dir)
	res, err := repair.Snapshots(ctx, r, repair.SnapshotsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 1 || res.Damaged[0].New == "" || len(res.StillIndexed) != 0 {
		t.Fatalf("repair snapshots: %+v", res)
	}
	got := map[string]repair.RepairedPath{}
	for _, p := range res.Damaged[0].Paths {
		got[p.Path] = p
	}
	if p := got["/big/"+page.First]; p.Action != "lost" || p.Entries != page.Entries {
		t.Fatalf("page not reported lost: %+v (want %d entries from %s)", res.Damaged[0].Paths, page.Entries, page.First)
	}
	if p := got["/big/f1499"]; p.Action != "dropped" {
		t.Fatalf("f1499 not reported dropped: %+v", res.Damaged[0].Paths)
	}

	r = enginetest.Reopen(t, dir)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	newID, _ := crypto.ParseID(res.Damaged[0].New)
	rsn, err := r.LoadSnapshot(ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	if rsn.Original == nil || *rsn.Original != sn.ID || !slices.Contains(rsn.Tags, repair.RepairedTag) || !rsn.Partial || rsn.Stats.Skipped != 2 {
		t.Fatalf("repaired snapshot: %+v", rsn)
	}
	if !rsn.Time.Equal(sn.Time.Add(time.Nanosecond)) {
		t.Fatalf("repaired snapshot time %v, original %v: want 1 ns later", rsn.Time, sn.Time)
	}
	if latest, err := r.FindSnapshot(ctx, "latest"); err != nil || latest.ID != rsn.ID {
		t.Fatalf("latest is %v (%v), want the repaired snapshot", latest, err)
	}
	wantFiles := uint64(n+1) - page.Entries - 1
	if rsn.Stats.Files != wantFiles {
		t.Fatalf("repaired snapshot counts %d files, want %d", rsn.Stats.Files, wantFiles)
	}
	// The listing of /big agrees with its totals, in order.
	nb, err := r.ResolvePath(ctx, rsn, "/big", false)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := r.LoadDir(ctx, nb.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	it := r.Iter(nd)
	var names []string
	for {
		e, ok, err := it.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		names = append(names, e.Name)
	}
	if uint64(len(names)) != nd.Stats.Entries || uint64(len(names)) != uint64(n)-page.Entries-1 || !slices.IsSorted(names) {
		t.Fatalf("/big lists %d entries, its totals say %d, want %d", len(names), nd.Stats.Entries, uint64(n)-page.Entries-1)
	}

	cr, err := check.Run(ctx, enginetest.Reopen(t, dir), check.Options{Snapshots: []*engine.Snapshot{rsn}})
	if err != nil || !cr.OK() {
		t.Fatalf("check of the repaired snapshot: %v %v", err, cr.Problems)
	}
	to := filepath.Join(t.TempDir(), "out")
	if err := enginetest.RestoreAll(t, r, rsn, to); err != nil {
		t.Fatal(err)
	}
	restored := 0
	filepath.WalkDir(to, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(to, p)
		a, _ := os.ReadFile(filepath.Join(src, rel))
		b, _ := os.ReadFile(p)
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs", rel)
		}
		restored++
		return nil
	})
	if uint64(restored) != wantFiles {
		t.Fatalf("restored %d files, want %d", restored, wantFiles)
	}
}

// TestRepairSnapshotsUndamaged: a store without damage is left as it
// is, and the trees of a repaired directory that did not change keep
// their ids.
func TestRepairSnapshotsUndamaged(t *testing.T) {
	ctx := context.Background()
	storeDir, srcs := repairStore(t, 2)
	r := enginetest.Reopen(t, storeDir)
	res, err := repair.Snapshots(ctx, r, repair.SnapshotsOptions{Forget: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checked != 2 || len(res.Damaged) != 0 {
		t.Fatalf("repair of an undamaged store: %+v", res)
	}
	verifyStore(t, storeDir, srcs)
}

// TestRepairSnapshotsReadData: with ReadData, Snapshots alone finds
// a damaged content blob, drops it from the index (Packs on its
// pack, salvaging the rest) and writes a repaired snapshot; the next
// backup of the source stores the file again, and the whole store
// checks clean once the original is forgotten.
func TestRepairSnapshotsReadData(t *testing.T) {
	ctx := context.Background()
	r, dir := enginetest.NewRepo(t, engine.CreateOptions{Chunker: enginetest.Chunker})
	src := filepath.Join(t.TempDir(), "src")
	enginetest.WriteFile(t, filepath.Join(src, "victim"), testtree.RandBytes(10000))
	enginetest.WriteFile(t, filepath.Join(src, "keep"), testtree.Text(1, 3000))
	sn := enginetest.BackupDir(t, r, src, backup.Options{})
	flipFile(t, r, dir, sn, "/victim")

	r = enginetest.Reopen(t, dir)
	res, err := repair.Snapshots(ctx, r, repair.SnapshotsOptions{ReadData: true, Forget: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 1 || !res.Damaged[0].Forgotten || len(res.Damaged[0].Paths) != 1 || res.Damaged[0].Paths[0].Path != "/victim" ||
		res.Packs == nil || res.Packs.LostBlobs != 1 || res.Packs.SalvagedBlobs == 0 {
		t.Fatalf("repair: %+v (packs %+v)", res, res.Packs)
	}
	r = enginetest.Reopen(t, dir)
	sn2 := enginetest.BackupDir(t, r, src, backup.Options{})
	if sn2.Stats.NewBlobs == 0 {
		t.Fatalf("the next backup did not store the damaged file again: %+v", sn2.Stats)
	}
	to := filepath.Join(t.TempDir(), "out")
	if err := enginetest.RestoreAll(t, r, sn2, to); err != nil {
		t.Fatal(err)
	}
	enginetest.CompareTrees(t, src, to)
	cr, err := check.Run(ctx, enginetest.Reopen(t, dir), check.Options{})
	if err != nil || !cr.OK() {
		t.Fatalf("check: %v %v", err, cr.Problems)
	}
}

// TestRepairSnapshotsRandomDamage flips random blobs (content, folders,
// pages) of a random tree (its shape seeded; which blobs are hit varies
// with the store's random key) and repairs with ReadData: the
// repaired snapshot checks clean, every file it restores is the
// source's byte for byte, and every source file it lacks is covered by
// a reported path (the file dropped, a folder above it emptied, or a
// lost part of a folder above it).
func TestRepairSnapshotsRandomDamage(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { repairRandomDamage(t, seed) })
	}
}

func repairRandomDamage(t *testing.T, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 99))
	r, dir := enginetest.NewRepo(t, engine.CreateOptions{Chunker: enginetest.Chunker})
	src := filepath.Join(t.TempDir(), "src")
	var dirs []string
	for i := range 12 {
		d := fmt.Sprintf("d%d", i)
		if i > 0 && rng.IntN(2) == 0 {
			d = filepath.Join(dirs[rng.IntN(len(dirs))], d)
		}
		dirs = append(dirs, d)
	}
	for i := range 200 {
		d := dirs[rng.IntN(len(dirs))]
		enginetest.WriteFile(t, filepath.Join(src, d, fmt.Sprintf("f%03d", i)), testtree.Text(uint64(i)+seed*1000, 100+rng.IntN(3000)))
	}
	for i := range 700 { // a paged folder
		enginetest.WriteFile(t, filepath.Join(src, "big", fmt.Sprintf("g%04d", i)), []byte(fmt.Sprintf("%d %d\n", seed, i)))
	}
	enginetest.BackupDir(t, r, src, backup.Options{})
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	// Two content blobs and two tree blobs (folders, pages; the root
	// perhaps, which empties the whole snapshot).
	var data, trees []crypto.ID
	r.Index.Each(func(b format.BlobLoc, _ crypto.ID) {
		if b.Kind == format.BlobTree {
			trees = append(trees, b.ID)
		} else {
			data = append(data, b.ID)
		}
	})
	for range 2 {
		flipBlob(t, r, dir, data[rng.IntN(len(data))])
		flipBlob(t, r, dir, trees[rng.IntN(len(trees))])
	}

	// repair snapshots alone (it runs repair packs on what it finds):
	// a damaged blob under a folder it empties shares its pack with
	// blobs the repaired snapshot keeps, and must leave the index too.
	res, err := repair.Snapshots(ctx, enginetest.Reopen(t, dir), repair.SnapshotsOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 1 || res.Damaged[0].New == "" {
		t.Fatalf("repair: %+v", res)
	}
	paths := res.Damaged[0].Paths
	r = enginetest.Reopen(t, dir)
	newID, _ := crypto.ParseID(res.Damaged[0].New)
	rsn, err := r.LoadSnapshot(ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	if cr, err := check.Run(ctx, enginetest.Reopen(t, dir), check.Options{Snapshots: []*engine.Snapshot{rsn}}); err != nil || !cr.OK() {
		t.Fatalf("check of the repaired snapshot: %v %v", err, cr.Problems)
	}
	to := filepath.Join(t.TempDir(), "out")
	if err := enginetest.RestoreAll(t, r, rsn, to); err != nil {
		t.Fatal(err)
	}
	covered := func(rel string) bool {
		for _, p := range paths {
			switch p.Action {
			case "dropped":
				if p.Path == rel {
					return true
				}
			case "emptied":
				if strings.HasPrefix(rel, p.Path) {
					return true
				}
			case "lost":
				if strings.HasPrefix(rel, p.Path[:strings.LastIndex(p.Path, "/")+1]) {
					return true
				}
			}
		}
		return false
	}
	var restored, missing int
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(filepath.Join(to, rel))
		if err != nil {
			missing++
			if !covered("/" + filepath.ToSlash(rel)) {
				t.Errorf("/%s is missing from the repaired snapshot and no reported path covers it (reported %+v)", rel, paths)
			}
			return nil
		}
		a, _ := os.ReadFile(p)
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs", rel)
		}
		restored++
		return nil
	})
	if uint64(restored) != rsn.Stats.Files || (missing == 0 && restored > 0) {
		t.Fatalf("restored %d files (%d missing); the repaired snapshot counts %d", restored, missing, rsn.Stats.Files)
	}
	t.Logf("seed %d: %d paths reported, %d files restored, %d lost", seed, len(paths), restored, missing)
}
