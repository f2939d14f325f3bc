package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/repair"
	"github.com/coffer-backup/coffer/engine/store"
)

// A store created with an object lock records it in its config, writes
// every object it keeps locked, refuses to delete a locked snapshot, and
// applies the lock again when opened; a storage that cannot lock, or
// whose check fails, makes create fail and write nothing.
func TestCreateObjectLock(t *testing.T) {
	ctx := context.Background()
	pass := []byte("test passphrase")
	lock := store.RetentionPolicy{Mode: store.Compliance, Days: 7}

	if _, err := engine.Create(ctx, store.NewMemory(), pass, engine.CreateOptions{KDF: cheapKDF, ObjectLock: lock}); err == nil || !strings.Contains(err.Error(), "cannot lock objects") {
		t.Fatalf("create with a lock on a memory store: %v", err)
	}
	refused := store.NewLockingMemory()
	refused.CheckErr = errors.New("bucket b does not have Object Lock enabled")
	if _, err := engine.Create(ctx, refused, pass, engine.CreateOptions{KDF: cheapKDF, ObjectLock: lock}); err == nil || !strings.Contains(err.Error(), "does not have Object Lock") {
		t.Fatalf("create where the check fails: %v", err)
	}
	if _, err := refused.Stat(ctx, store.ConfigHandle); !store.IsNotFound(err) {
		t.Fatalf("a refused create wrote its config: %v", err)
	}
	if _, err := engine.Create(ctx, store.NewLockingMemory(), pass, engine.CreateOptions{KDF: cheapKDF, ObjectLock: store.RetentionPolicy{Days: -1}}); err == nil {
		t.Fatalf("create with -1 days worked")
	}

	m := store.NewLockingMemory()
	r, err := engine.Create(ctx, m, pass, engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker, ObjectLock: lock})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Params.Retention(); got != lock {
		t.Fatalf("Params.Retention() = %+v, want %+v", got, lock)
	}
	// Opened afresh (the policy forgotten by the storage), the store
	// locks again what it writes.
	m.SetRetention(store.RetentionPolicy{})
	r, err = engine.Open(ctx, m, pass)
	if err != nil {
		t.Fatal(err)
	}
	if r.Params.ObjectLock == nil || r.Params.ObjectLock.Days != 7 || r.Params.ObjectLock.Mode != "compliance" {
		t.Fatalf("opened store's lock: %+v", r.Params.ObjectLock)
	}
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "a"), randBytes(300<<10))
	sn := backupDir(t, r, src, backup.Options{})
	for _, k := range []store.Kind{store.KindConfig, store.KindDataPack, store.KindTreePack, store.KindIndex, store.KindSnapshot} {
		n := 0
		err := m.List(ctx, k, func(o store.ObjectInfo) error {
			n++
			ret, err := m.Retention(ctx, o.Handle)
			if err != nil || ret.Mode != store.Compliance || ret.Until.IsZero() {
				t.Errorf("%s: retention %+v, %v", o.Handle, ret, err)
			}
			return nil
		})
		if err != nil || n == 0 {
			t.Errorf("%s: %d objects, %v", k, n, err)
		}
	}
	err = r.DeleteSnapshot(ctx, sn.ID)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "is locked until") {
		t.Fatalf("DeleteSnapshot of a locked snapshot: %v", err)
	}
	if ids, err := r.SnapshotIDs(ctx); err != nil || len(ids) != 1 {
		t.Fatalf("after a refused delete: %v, %v", ids, err)
	}
	// Changing a locked snapshot (tag) would leave two: it is refused
	// before anything is written.
	sn.Tags = []string{"x"}
	if _, err := r.ReplaceSnapshot(ctx, sn.ID, sn); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("ReplaceSnapshot of a locked snapshot: %v", err)
	}
	if ids, err := r.SnapshotIDs(ctx); err != nil || len(ids) != 1 {
		t.Fatalf("after a refused replace: %v, %v", ids, err)
	}
}

// A store without a lock keeps its params' JSON as before: no
// object_lock key, so the configs of older stores and theirs agree.
func TestParamsWithoutObjectLock(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{})
	b, err := json.Marshal(r.Params)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "object_lock") {
		t.Fatalf("params without a lock: %s", b)
	}
	if r.Params.Retention() != (store.RetentionPolicy{}) {
		t.Fatalf("Retention() of a store without a lock: %+v", r.Params.Retention())
	}
}

// repair index on a locked store: the old index files cannot be removed
// while their lock holds, and need not be (they name the same packs):
// the repair reports them kept and the store still restores.
func TestRepairIndexLocked(t *testing.T) {
	ctx := context.Background()
	pass := []byte("test passphrase")
	m := store.NewLockingMemory()
	r, err := engine.Create(ctx, m, pass, engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker, ObjectLock: store.RetentionPolicy{Mode: store.Governance, Days: 1}})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "a"), randBytes(300<<10))
	sn := backupDir(t, r, src, backup.Options{})
	res, err := repair.Index(ctx, r, repair.IndexOptions{})
	if err != nil {
		t.Fatalf("repair index on a locked store: %v", err)
	}
	if len(res.OldIndexFiles) == 0 || len(res.LockedIndexFiles) != len(res.OldIndexFiles) || len(res.NewIndexFiles) == 0 {
		t.Fatalf("old %d, locked %d, new %d index files", len(res.OldIndexFiles), len(res.LockedIndexFiles), len(res.NewIndexFiles))
	}
	r, err = engine.Open(ctx, m, pass)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, r, sn, to); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, to)
}

// TestPruneKeepsLockedIndex: on a store under Object Lock, a prune does
// not replace index files that are still locked (it could not remove
// them, and each prune would add a copy of the index), and the packs
// they name do not become candidates while they do; a prune after
// another writes nothing.
func TestPruneKeepsLockedIndex(t *testing.T) {
	ctx := context.Background()
	pass := []byte("test passphrase")
	m := store.NewLockingMemory()
	t0 := time.Now()
	m.Now = func() time.Time { return t0.Add(-2 * 24 * time.Hour) } // written two days ago: locked until yesterday
	r, err := engine.Create(ctx, m, pass, engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker, ObjectLock: store.RetentionPolicy{Mode: store.Governance, Days: 1}})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "c")
	writeFile(t, filepath.Join(a, "f"), randBytes(200<<10))
	writeFile(t, filepath.Join(b, "f"), randBytes(200<<10))
	writeFile(t, filepath.Join(c, "f"), randBytes(200<<10))
	snA := backupDir(t, r, a, backup.Options{})
	snB := backupDir(t, r, b, backup.Options{})
	backupDir(t, r, c, backup.Options{})
	before, err := r.IndexFiles(ctx)
	if err != nil || len(before) != 3 {
		t.Fatalf("%d index files, %v", len(before), err)
	}
	// The index files stay locked for another 12 hours; the rest
	// (snapshot A, its packs) can go now.
	until := t0.Add(12 * time.Hour)
	for _, h := range before {
		if _, err := m.ExtendRetention(ctx, h, until); err != nil {
			t.Fatal(err)
		}
	}
	m.Now = func() time.Time { return t0 }
	if err := r.DeleteSnapshot(ctx, snA.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		r, err = engine.Open(ctx, m, pass)
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.Prune(ctx, engine.PruneOptions{MaxUnused: 1, ExtendRetention: true})
		if err != nil {
			t.Fatalf("prune %d: %v", i, err)
		}
		if res.IndexFilesWritten != 0 || len(res.Failed) != 0 || res.Deleted != 0 {
			t.Fatalf("prune %d: wrote %d index files, failed %+v, deleted %d", i, res.IndexFilesWritten, res.Failed, res.Deleted)
		}
		after, err := r.IndexFiles(ctx)
		if err != nil || len(after) != len(before) {
			t.Fatalf("prune %d: %d index files, want %d (%v)", i, len(after), len(before), err)
		}
		// The file naming A's packs keeps its lock, to run out; B's and
		// C's, small but locked, are not merged but extended: the index
		// the store still needs.
		held := 0
		for _, h := range after {
			rt, err := m.Retention(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if rt.Until.Equal(until) {
				held++
			}
		}
		if held != 1 {
			t.Fatalf("prune %d: %d index files kept their lock until %s, want 1 (the one naming the unused packs)", i, held, until)
		}
	}
	to := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, r, snB, to); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, b, to)
}
