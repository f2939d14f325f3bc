package engine_test

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pruneVersions writes n versions of a folder (each changes a third of
// the files of the one before) and backs each up; it returns the
// folders and snapshots.
func pruneVersions(t *testing.T, r *engine.Repo, n int) ([]string, []*engine.Snapshot) {
	t.Helper()
	base := t.TempDir()
	var dirs []string
	var snaps []*engine.Snapshot
	for v := range n {
		d := filepath.Join(base, fmt.Sprint("v", v))
		for f := range 9 {
			seed := f
			if f%3 == v%3 {
				seed = 100*v + f // changed in this version
			}
			size := 20<<10 + seed*7000%(300<<10)
			writeFile(t, filepath.Join(d, fmt.Sprintf("sub%d/f%d", f%2, f)), randBytesSeeded(uint64(seed), size))
		}
		dirs = append(dirs, d)
		snaps = append(snaps, backupDir(t, r, d, backup.Options{}))
	}
	return dirs, snaps
}

func randBytesSeeded(seed uint64, n int) []byte {
	b := textBytes(seed, n)
	// make it incompressible enough to make packs of distinct sizes
	x := seed*6364136223846793005 + 1442695040888963407
	for i := range b {
		x = x*6364136223846793005 + 1442695040888963407
		b[i] ^= byte(x >> 56)
	}
	return b
}

// usedPacks walks the snapshots left with a plain map (a test may) and
// returns the bytes of the packs none of them uses, from the index.
func unusedBytes(t *testing.T, path string) (int, int64) {
	t.Helper()
	ctx := context.Background()
	r := reopen(t, path)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used := map[crypto.ID]bool{}
	var walk func(id crypto.ID)
	walk = func(id crypto.ID) {
		used[id] = true
		d, err := r.LoadDir(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		r.PageIDs(ctx, d, func(p crypto.ID) { used[p] = true })
		it := r.Iter(d)
		for {
			n, ok, err := it.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return
			}
			switch n.Type {
			case tree.TypeDir:
				walk(n.Subtree)
			case tree.TypeFile:
				if !n.ChunkList.IsZero() {
					used[n.ChunkList] = true
				}
				cs, err := r.FileChunks(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cs {
					used[c.ID] = true
				}
			}
		}
	}
	for _, sn := range snaps {
		walk(sn.Root)
	}
	live := map[crypto.ID]bool{}
	r.Index.Each(func(b format.BlobLoc, pack crypto.ID) {
		if used[b.ID] {
			live[pack] = true
		}
	})
	n, bytes := 0, int64(0)
	for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
		r.ListPacks(ctx, k, func(id crypto.ID, size int64) error {
			if !live[id] {
				n++
				bytes += size
			}
			return nil
		})
	}
	return n, bytes
}

func checkAndRestore(t *testing.T, path string, dirs map[crypto.ID]string) {
	t.Helper()
	ctx := context.Background()
	r := reopen(t, path)
	res, err := check.Run(ctx, r, check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("check after prune: %v", res.Problems)
	}
	for id, dir := range dirs {
		sn, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(t.TempDir(), "r")
		if err := restoreAll(t, r, sn, to); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, dir, to)
	}
}

// TestPruneReclaimsUnreferenced: after forgetting snapshots, prune
// deletes exactly the packs no snapshot left uses, merges the index, and
// every snapshot left checks clean and restores byte-exact; a second
// prune finds nothing to do.
func TestPruneReclaimsUnreferenced(t *testing.T) {
	ctx := context.Background()
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dirs, snaps := pruneVersions(t, r, 5)
	for _, i := range []int{1, 2} {
		if err := r.DeleteSnapshot(ctx, snaps[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	wantN, wantBytes := unusedBytes(t, path)
	if wantN == 0 {
		t.Fatal("the forgotten snapshots left no unused pack: the test proves nothing")
	}
	dry, err := reopen(t, path).Prune(ctx, engine.PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Deleted != wantN || dry.DeletedBytes != wantBytes {
		t.Fatalf("dry run would delete %d packs (%d bytes), want %d (%d)", dry.Deleted, dry.DeletedBytes, wantN, wantBytes)
	}
	if n, _ := unusedBytes(t, path); n != wantN {
		t.Fatal("the dry run changed the store")
	}
	// A killed writer's temp file, and one being written now.
	oldTmp, newTmp := filepath.Join(path, "index", ".tmp-killed"), filepath.Join(path, ".tmp-writing")
	writeFile(t, oldTmp, []byte("half an index file"))
	writeFile(t, newTmp, []byte("half a pack"))
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(oldTmp, long, long); err != nil {
		t.Fatal(err)
	}
	res, err := reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(oldTmp); !os.IsNotExist(err) || res.Temps != 1 {
		t.Fatalf("an old temp file was not removed (%d removed): %v", res.Temps, err)
	}
	if _, err := os.Stat(newTmp); err != nil {
		t.Fatalf("a recent temp file was removed: %v", err)
	}
	if res.Deleted != wantN || res.DeletedBytes != wantBytes || res.Waiting != 0 {
		t.Fatalf("prune deleted %d packs (%d bytes), waiting %d; want %d (%d)", res.Deleted, res.DeletedBytes, res.Waiting, wantN, wantBytes)
	}
	if res.IndexFilesWritten != 1 || res.IndexFilesRead != 5 {
		t.Fatalf("index files %d merged into %d, want 5 into 1", res.IndexFilesRead, res.IndexFilesWritten)
	}
	left := map[crypto.ID]string{snaps[0].ID: dirs[0], snaps[3].ID: dirs[3], snaps[4].ID: dirs[4]}
	checkAndRestore(t, path, left)
	again, err := reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Deleted != 0 || again.Unused != 0 || again.Waiting != 0 {
		t.Fatalf("second prune: %+v", again)
	}
	if n, _ := unusedBytes(t, path); n != 0 {
		t.Fatalf("%d unused packs left", n)
	}
}

// TestPruneWaitsForBackups is the protocol's hazard: a backup that read
// the index before the prune dedups against a pack the prune stops
// indexing. Its marker makes the prune wait; the backup, finding the
// index rewritten, indexes those packs again before it lets go of its
// marker, so its snapshot restores at once and the next prune keeps
// them.
func TestPruneWaitsForBackups(t *testing.T) {
	ctx := context.Background()
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dirs, snaps := pruneVersions(t, r, 2)
	if err := r.DeleteSnapshot(ctx, snaps[0].ID); err != nil {
		t.Fatal(err)
	}
	// A backup of v0 starts: its marker, then the index (naming v0's packs).
	late := reopen(t, path)
	mark, err := lease.Mark(ctx, late.Storage(), late.Keys(), lease.KindBackup, lease.Options{Command: "test backup"})
	if err != nil {
		t.Fatal(err)
	}
	if err := late.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := reopen(t, path).Prune(ctx, engine.PruneOptions{MaxUnused: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 || res.Waiting == 0 || res.Unused != res.Waiting {
		t.Fatalf("prune with a backup running: %+v", res)
	}
	if len(res.WaitingFor) != 1 || !strings.Contains(res.WaitingFor[0], "backup on ") {
		t.Fatalf("waiting for %q", res.WaitingFor)
	}
	// The backup finishes: v0's blobs are deduplicated against the packs
	// the prune stopped indexing, and indexed again.
	sn := backupDir(t, late, dirs[0], backup.Options{})
	if sn.Stats.NewBlobs != 0 {
		t.Fatalf("the late backup stored %d blobs again: the test proves nothing", sn.Stats.NewBlobs)
	}
	left := map[crypto.ID]string{sn.ID: dirs[0], snaps[1].ID: dirs[1]}
	checkAndRestore(t, path, left)
	if err := mark.Release(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 || res.Waiting != 0 {
		t.Fatalf("prune after the backup: %+v", res)
	}
	checkAndRestore(t, path, left)
}

// TestPruneRescues: a snapshot written by a writer that did not index
// again what it used (a coffer before KeepIndexed, or one killed right
// after its snapshot) names blobs of packs the index no longer names;
// the next prune finds them used and indexes those packs again.
func TestPruneRescues(t *testing.T) {
	ctx := context.Background()
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dirs, snaps := pruneVersions(t, r, 2)
	if err := r.DeleteSnapshot(ctx, snaps[0].ID); err != nil {
		t.Fatal(err)
	}
	mark, err := lease.Mark(ctx, r.Storage(), r.Keys(), lease.KindBackup, lease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil || res.Waiting == 0 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	// The old snapshot's tree, written again as a new snapshot.
	old := *snaps[0]
	old.Time = old.Time.Add(time.Second)
	id, err := r.SaveSnapshot(ctx, &old)
	if err != nil {
		t.Fatal(err)
	}
	mark.Release(ctx)
	res, err = reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rescued == 0 || res.Deleted != 0 || res.Waiting != 0 {
		t.Fatalf("prune after the snapshot: %+v", res)
	}
	checkAndRestore(t, path, map[crypto.ID]string{id: dirs[0], snaps[1].ID: dirs[1]})
}

// halfLivePack makes a store whose first pack (four files of snapshot
// A, forgotten) holds one live blob (f0, also in snapshot B, with a new
// file): prune repacks it. It returns B's folder and snapshot.
func halfLivePack(t *testing.T) (r *engine.Repo, path, b string, snapB *engine.Snapshot) {
	t.Helper()
	r, path = newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	base := t.TempDir()
	a := filepath.Join(base, "a")
	b = filepath.Join(base, "b")
	for i := range 4 {
		writeFile(t, filepath.Join(a, fmt.Sprint("f", i)), randBytesSeeded(uint64(i), 200<<10))
	}
	writeFile(t, filepath.Join(b, "f0"), randBytesSeeded(0, 200<<10))
	writeFile(t, filepath.Join(b, "new"), randBytesSeeded(9, 100<<10))
	snapA := backupDir(t, r, a, backup.Options{})
	snapB = backupDir(t, r, b, backup.Options{})
	if err := r.DeleteSnapshot(context.Background(), snapA.ID); err != nil {
		t.Fatal(err)
	}
	return r, path, b, snapB
}

// TestPruneRepacks: a pack holding blobs of a forgotten snapshot beside
// live ones is repacked: its live blobs are copied, the pack deleted, and
// the unused bytes left are under the limit; everything restores.
func TestPruneRepacks(t *testing.T) {
	ctx := context.Background()
	r, path, b, snapB := halfLivePack(t)
	dry, err := reopen(t, path).Prune(ctx, engine.PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Repacked == 0 {
		t.Fatalf("nothing to repack: the test proves nothing: %+v", dry)
	}
	before := sealedBlobs(t, r)
	res, err := reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Repacked != dry.Repacked || res.Deleted != res.Unused+res.Repacked || res.Waiting != 0 {
		t.Fatalf("prune: %+v (dry run: %+v)", res, dry)
	}
	if res.UnusedInKept > int64(engine.DefaultMaxUnused*float64(res.KeptBytes)) {
		t.Fatalf("%d unused bytes left in %d kept", res.UnusedInKept, res.KeptBytes)
	}
	checkAndRestore(t, path, map[crypto.ID]string{snapB.ID: b})
	// Repacked blobs are their sealed bytes copied, not sealed again
	// (which would draw new nonces), in packs that were not there.
	moved := 0
	for id, after := range sealedBlobs(t, r) {
		was, ok := before[id]
		if !ok {
			t.Errorf("blob %s: new after the prune", id.Short())
			continue
		}
		if !bytes.Equal(was.sealed, after.sealed) || was.loc.Comp != after.loc.Comp || was.loc.RawLen != after.loc.RawLen {
			t.Errorf("blob %s: not copied as it was sealed (comp %d→%d, raw %d→%d)", id.Short(), was.loc.Comp, after.loc.Comp, was.loc.RawLen, after.loc.RawLen)
		}
		if was.pack != after.pack {
			moved++
		}
	}
	if moved == 0 {
		t.Errorf("no blob moved to a new pack")
	}
	again, err := reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Repacked != 0 || again.Deleted != 0 || again.Unused != 0 {
		t.Fatalf("second prune: %+v", again)
	}
}

// TestPruneRepackStopsOnDamage: a live blob that fails authentication
// in a pack to repack stops the prune, saying to run check, and no pack
// is deleted; the damage is not copied into a new pack.
func TestPruneRepackStopsOnDamage(t *testing.T) {
	ctx := context.Background()
	r, path, _, _ := halfLivePack(t)
	// Damage the last byte (the tag) of every data blob.
	for _, bl := range sealedBlobs(t, r) {
		if bl.loc.Kind != format.BlobData {
			continue
		}
		h := store.Handle{Kind: store.KindDataPack, Name: bl.pack.String()}
		pack, err := r.Storage().Get(ctx, h, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		pack[bl.loc.Offset+bl.loc.Length-1] ^= 1
		if err := r.Storage().Put(ctx, h, pack); err != nil {
			t.Fatal(err)
		}
	}
	packs := func() (names []string) {
		r.Storage().List(ctx, store.KindDataPack, func(o store.ObjectInfo) error {
			names = append(names, o.Handle.Name)
			return nil
		})
		slices.Sort(names)
		return names
	}
	had := packs()
	res, err := reopen(t, path).Prune(ctx, engine.PruneOptions{})
	if err == nil || !strings.Contains(err.Error(), "run check") || !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("prune of a store with a damaged live blob: %+v, %v; want an authentication error that says to run check", res, err)
	}
	if now := packs(); !slices.Equal(had, now) {
		t.Fatalf("data packs before the failed prune %v, after %v", had, now)
	}
}

// sealedBlob is one blob as a pack holds it.
type sealedBlob struct {
	pack   crypto.ID
	loc    format.BlobLoc
	sealed []byte
}

// sealedBlobs reads every pack of the store and returns its blobs'
// sealed bytes by id (the last pack listed wins for a blob in two).
func sealedBlobs(t *testing.T, r *engine.Repo) map[crypto.ID]sealedBlob {
	t.Helper()
	ctx := context.Background()
	out := map[crypto.ID]sealedBlob{}
	for _, k := range []store.Kind{store.KindDataPack, store.KindTreePack} {
		err := r.Storage().List(ctx, k, func(o store.ObjectInfo) error {
			data, err := r.Storage().Get(ctx, o.Handle, 0, -1)
			if err != nil {
				return err
			}
			tl := int64(binary.LittleEndian.Uint32(data[len(data)-4:]))
			start := int64(len(data)) - 4 - tl
			locs, err := r.OpenTrailer(data[start:len(data)-4], start)
			if err != nil {
				return fmt.Errorf("%s: %w", o.Handle, err)
			}
			id, err := crypto.ParseID(o.Handle.Name)
			if err != nil {
				return err
			}
			for _, l := range locs {
				out[l.ID] = sealedBlob{pack: id, loc: l, sealed: data[l.Offset : l.Offset+l.Length]}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestPruneLock: one prune at a time, and the refusal names the holder.
func TestPruneLock(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	l, err := lease.Exclusive(ctx, r.Storage(), r.Keys(), lease.PruneName, lease.Options{Command: "other prune"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Prune(ctx, engine.PruneOptions{})
	if err == nil || !strings.Contains(err.Error(), "held by other prune on ") {
		t.Fatalf("prune while another holds the lock: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, engine.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
}

// stallingSource runs hook before its walk, then waits: a backup whose
// marker someone removes meanwhile (unlock --force) or that stalls past
// its expiry.
type stallingSource struct {
	backup.Source
	hook  func()
	pause time.Duration
}

func (s *stallingSource) Walk(ctx context.Context, fn func(*backup.Item) error, warn func(string, error)) error {
	s.hook()
	time.Sleep(s.pause)
	return s.Source.Walk(ctx, fn, warn)
}

// TestBackupMarkerLapsed: a backup whose marker was removed while it ran
// (so a prune may have deleted what it deduplicated against) writes no
// snapshot and says why; the next backup succeeds.
func TestBackupMarkerLapsed(t *testing.T) {
	ctx := context.Background()
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), randBytesSeeded(1, 100<<10))
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	removeMarkers := func() {
		infos, err := lease.List(ctx, r.Storage(), r.Keys())
		if err != nil || len(infos) != 1 {
			t.Errorf("markers during the backup: %+v, %v", infos, err)
		}
		for _, in := range infos {
			r.Storage().Delete(ctx, store.Handle{Kind: store.KindLock, Name: in.Name})
		}
	}
	_, err = backup.Run(ctx, r, &stallingSource{Source: src, hook: removeMarkers, pause: 300 * time.Millisecond},
		backup.Options{Lease: lease.Options{Duration: 150 * time.Millisecond}})
	if err == nil || !errors.Is(err, lease.ErrLapsed) || !strings.Contains(err.Error(), "not writing the snapshot") {
		t.Fatalf("backup with its marker removed: %v", err)
	}
	if ids, _ := r.SnapshotIDs(ctx); len(ids) != 0 {
		t.Fatalf("a snapshot was written: %v", ids)
	}
	// The next backup succeeds and leaves no marker.
	_, err = backup.Run(ctx, reopen(t, path), &stallingSource{Source: src, hook: func() {}, pause: 0},
		backup.Options{Lease: lease.Options{Duration: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if infos, _ := lease.List(ctx, r.Storage(), r.Keys()); len(infos) != 0 {
		t.Fatalf("markers left after a backup: %+v", infos)
	}
}

// TestPruneExtendsRetention: on a store with an object lock, prune with
// ExtendRetention locks every object the store still needs (the config,
// the packs the snapshots use, the index files, the snapshots) until at
// least Days from now, and leaves the packs it stops indexing alone (one
// round they wait for a running backup, and their locks stay as they
// were; the next round deletes them). The dry run says what it would
// extend and moves nothing; a store without a lock refuses the option.
func TestPruneExtendsRetention(t *testing.T) {
	ctx := context.Background()
	pass := []byte("test passphrase")
	m := store.NewLockingMemory()
	past := time.Now().Add(-48 * time.Hour)
	m.Now = func() time.Time { return past } // the backups were two days ago: their 1-day locks ran out
	r, err := engine.Create(ctx, m, pass, engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker, ObjectLock: store.RetentionPolicy{Mode: store.Governance, Days: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_, snaps := pruneVersions(t, r, 3)
	m.Now = nil
	if err := r.DeleteSnapshot(ctx, snaps[0].ID); err != nil {
		t.Fatal(err)
	}
	// locks reads the lock of every object the store holds but locks/.
	locks := func() map[store.Handle]store.Retention {
		out := map[store.Handle]store.Retention{}
		for _, k := range store.Kinds {
			if k == store.KindLock {
				continue
			}
			err := m.List(ctx, k, func(o store.ObjectInfo) error {
				ret, err := m.Retention(ctx, o.Handle)
				out[o.Handle] = ret
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	before := locks()

	dry, err := r.Prune(ctx, engine.PruneOptions{DryRun: true, MaxUnused: 1, ExtendRetention: true})
	if err != nil {
		t.Fatal(err)
	}
	if rr := dry.Retention; rr == nil || rr.Packs != dry.Kept || rr.Snapshots != 2 || rr.Config != 1 || rr.Extended != 0 || rr.Days != 1 || rr.Mode != "governance" {
		t.Fatalf("dry run: %+v, retention %+v", dry, dry.Retention)
	}
	if after := locks(); !reflect.DeepEqual(after, before) {
		t.Fatalf("the dry run changed locks")
	}

	// A backup is running: the unused packs wait, and keep their locks.
	mark, err := lease.Mark(ctx, m, r.Keys(), lease.KindBackup, lease.Options{Command: "test backup"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := r.Prune(ctx, engine.PruneOptions{MaxUnused: 1, ExtendRetention: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Unused == 0 || res.Waiting != res.Unused || res.Deleted != 0 || len(res.Failed) != 0 {
		t.Fatalf("prune beside a backup: %+v", res)
	}
	rr := res.Retention
	want := start.Add(24 * time.Hour).Truncate(time.Second)
	if rr == nil || rr.Until.Before(want) || rr.Packs != res.Kept || rr.Snapshots != 2 || rr.IndexFiles == 0 || rr.Gone != 0 ||
		rr.Extended < rr.Config+rr.Packs+rr.Snapshots { // (the index files it just wrote may be locked long enough)
		t.Fatalf("retention %+v (kept %d packs)", rr, res.Kept)
	}
	after := locks()
	extended, left := map[store.Kind]int{}, 0
	for h, ret := range after {
		if !ret.Until.Before(want) {
			extended[h.Kind]++
			continue
		}
		// Only the packs that wait to be deleted keep their old lock.
		if h.Kind != store.KindDataPack && h.Kind != store.KindTreePack || !ret.Until.Equal(before[h].Until) {
			t.Errorf("%s: locked until %s, want at least %s (or its old date %s, for an unused pack)", h, ret.Until, want, before[h].Until)
		}
		left++
	}
	if left != res.Waiting {
		t.Errorf("%d packs kept their old lock, %d wait to be deleted", left, res.Waiting)
	}
	if n := extended[store.KindDataPack] + extended[store.KindTreePack]; n != rr.Packs || extended[store.KindSnapshot] != 2 || extended[store.KindIndex] != rr.IndexFiles || extended[store.KindConfig] != 1 {
		t.Errorf("locked until %s: %v; report %+v", want, extended, rr)
	}

	// The backup ends: the next prune deletes the packs whose lock ran out.
	if err := mark.Release(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = r.Prune(ctx, engine.PruneOptions{MaxUnused: 1, ExtendRetention: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != left || len(res.Failed) != 0 || res.Retention == nil {
		t.Fatalf("prune after the backup: deleted %d of %d, %+v", res.Deleted, left, res)
	}

	// A store without a lock: the option is refused before anything.
	plain, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	if _, err := plain.Prune(ctx, engine.PruneOptions{ExtendRetention: true}); err == nil || !strings.Contains(err.Error(), "no object lock") {
		t.Fatalf("ExtendRetention on a store without a lock: %v", err)
	}
}

// TestPruneKeepsFullIndexFiles: a prune merges the small index files
// backups write and replaces those naming packs it stops indexing, but
// keeps a full one that names none (it used to rewrite the whole index
// at every prune with more than one index file), and a prune with
// nothing to do writes nothing.
func TestPruneKeepsFullIndexFiles(t *testing.T) {
	ctx := context.Background()
	r, dir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := filepath.Join(t.TempDir(), "src")
	for i := range 9000 { // one blob each: one index file over half full
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("%04d", i/100), fmt.Sprintf("f%d", i)), []byte(fmt.Sprintf("file %d\n", i)))
	}
	backupDir(t, r, src, backup.Options{})
	full := indexFiles(t, dir)
	if len(full) != 1 {
		t.Fatalf("%d index files after the first backup", len(full))
	}
	for i := range 2 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("new%d", i)), randBytes(50000))
		backupDir(t, r, src, backup.Options{})
	}
	if n := len(indexFiles(t, dir)); n != 3 {
		t.Fatalf("%d index files after three backups", n)
	}
	res, err := reopen(t, dir).Prune(ctx, engine.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := indexFiles(t, dir)
	if res.IndexFilesRead != 2 || res.IndexFilesWritten != 1 || len(after) != 2 || !slices.Contains(after, full[0]) {
		t.Fatalf("prune read %d and wrote %d index files; now %v (the full one %s)", res.IndexFilesRead, res.IndexFilesWritten, after, full[0])
	}
	again, err := reopen(t, dir).Prune(ctx, engine.PruneOptions{})
	if err != nil || again.IndexFilesWritten != 0 || again.IndexFilesRead != 0 {
		t.Fatalf("a prune with nothing to do: %v %+v", err, again)
	}
	cr, err := check.Run(ctx, reopen(t, dir), check.Options{})
	if err != nil || !cr.OK() {
		t.Fatalf("check: %v %v", err, cr.Problems)
	}
}
