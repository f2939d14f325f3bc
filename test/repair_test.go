package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// repairSources backs up four sources (the round-trip corpus, small, and
// three folders sharing a file) and returns each snapshot with its source.
func repairSources(t *testing.T, e *env) map[string]string {
	t.Helper()
	snaps := map[string]string{} // snapshot id -> source
	root := t.TempDir()
	first := filepath.Join(root, "corpus")
	if err := testtree.Make(first, testtree.Sizes{Min: 4 << 10, Max: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	snaps[e.backup(first).ID] = first
	for i := range 3 {
		src := filepath.Join(root, fmt.Sprintf("src%d", i))
		testtree.WriteFile(filepath.Join(src, "shared.txt"), testtree.Text(3, 200000))
		testtree.WriteFile(filepath.Join(src, "own", "data.bin"), testtree.RandBytes(150000+i))
		snaps[e.backup(src).ID] = src
	}
	return snaps
}

// repairRestores restores every snapshot and compares it with its source.
func repairRestores(t *testing.T, e *env, snaps map[string]string) {
	t.Helper()
	for id, src := range snaps {
		to := filepath.Join(t.TempDir(), "r")
		e.ok("restore", "-to", to, id)
		if err := testtree.Compare(src, to); err != nil {
			t.Fatalf("snapshot %s of %s: %v", id[:8], src, err)
		}
	}
}

// repairAfterIndexLoss: with the index gone, check fails and points at
// repair index; a dry run changes nothing; repair index makes every
// snapshot restore byte-exact and check --read-data pass.
func repairAfterIndexLoss(t *testing.T, e *env, removeIndex func(), countIndex func() int) {
	snaps := repairSources(t, e)
	removeIndex()
	if n := countIndex(); n != 0 {
		t.Fatalf("test setup: %d index files left", n)
	}
	e.fail(1, []string{"repair index"}, "check")
	dry := e.ok("repair", "index", "--dry-run")
	if !strings.Contains(dry.stdout, "would index") || countIndex() != 0 {
		t.Fatalf("dry run: %s; %d index files", dry, countIndex())
	}
	var res struct {
		Packs, Indexed int
		Unindexed      int      `json:"newly_indexed"`
		New            []string `json:"new_index_files"`
	}
	out := e.ok("repair", "index", "--json")
	if err := json.Unmarshal([]byte(out.stdout), &res); err != nil {
		t.Fatalf("repair index --json: %v\n%s", err, out.stdout)
	}
	if res.Packs == 0 || res.Indexed != res.Packs || res.Unindexed != res.Packs || len(res.New) != countIndex() {
		t.Fatalf("repair: %+v; %d index files in the store", res, countIndex())
	}
	repairRestores(t, e, snaps)
	e.ok("check", "--read-data")
	// A second repair replaces the index with an equal one.
	e.ok("repair", "index")
	repairRestores(t, e, snaps)
}

func TestRepairIndexFolder(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.store, "index")
	count := func() int {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	repairAfterIndexLoss(t, e, func() {
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			os.Remove(filepath.Join(dir, ent.Name()))
		}
	}, count)
}

func TestRepairIndexS3(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "repair")
	e := newS3Env(t, m, "s3://"+bucket+"/store/")
	idx := "store/" + store.Prefix(store.KindIndex)
	count := func() int { return len(m.listObjects(t, bucket, idx)) }
	repairAfterIndexLoss(t, e, func() {
		m.aws(t, "s3", "rm", "--recursive", "--quiet", "s3://"+bucket+"/"+idx)
	}, count)
}

// TestRepairIndexBadTrailerCLI: a pack whose trailer is damaged is named
// in the output (exit 1) and left in place; with a damaged index file
// also, the rest is repaired: the snapshots that do not use the pack
// restore byte-exact.
func TestRepairIndexBadTrailerCLI(t *testing.T) {
	e := newEnv(t)
	snaps := repairSources(t, e)
	// The newest data pack holds the last backup's own/data.bin only.
	var newest string
	var newestT int64
	var lastSrc string
	filepath.WalkDir(filepath.Join(e.store, "packs", "d"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			if fi.ModTime().UnixNano() > newestT {
				newest, newestT = p, fi.ModTime().UnixNano()
			}
		}
		return nil
	})
	for id, src := range snaps {
		if strings.HasSuffix(src, "src2") {
			lastSrc = id
		}
	}
	data, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-10] ^= 1
	if err := os.WriteFile(newest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Damage every index file too: nothing can vouch for the pack.
	ents, _ := os.ReadDir(filepath.Join(e.store, "index"))
	for _, ent := range ents {
		p := filepath.Join(e.store, "index", ent.Name())
		b, _ := os.ReadFile(p)
		b[len(b)/2] ^= 0xff
		os.WriteFile(p, b, 0o600)
	}
	name := filepath.Base(newest)
	r := e.fail(1, []string{"bad trailer: data pack " + name, "left alone", "1 pack with a trailer that could not be read"}, "repair", "index")
	if !strings.Contains(r.stdout, "damaged index file") {
		t.Errorf("damaged index files not named:\n%s", r)
	}
	if _, err := os.Stat(newest); err != nil {
		t.Fatalf("the pack with the bad trailer was removed: %v", err)
	}
	delete(snaps, lastSrc)
	repairRestores(t, e, snaps)
	e.fail(1, []string{"own/data.bin"}, "check")
}

// TestRepairIndexPruneLock: repair index holds the prune lock, so it
// cannot run beside a prune (two index rewriters): while a prune holds
// it, repair index fails at once naming the holder and coffer unlock
// (its dry run still works); unlock keeps the live lock, unlock --force
// removes it, and repair index then works, releasing the lock after
// itself. The other way round, a lock held by a repair index makes prune
// fail and names it as such.
func TestRepairIndexPruneLock(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := testtree.Make(src, testtree.Sizes{Min: 4 << 10, Max: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	sn := e.backup(src)
	ctx := context.Background()
	st, err := store.NewFolder(e.store)
	if err != nil {
		t.Fatal(err)
	}
	r, err := engine.Open(ctx, st, []byte(e.pass))
	if err != nil {
		t.Fatal(err)
	}
	indexFiles := func() []string {
		ents, _ := os.ReadDir(filepath.Join(e.store, "index"))
		var out []string
		for _, ent := range ents {
			out = append(out, ent.Name())
		}
		return out
	}
	before := indexFiles()

	l, err := lease.Exclusive(ctx, st, r.Keys(), lease.PruneName, lease.Options{Command: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	e.fail(1, []string{"repair index: locks/prune is held by prune on ", "coffer unlock"}, "repair", "index")
	if after := indexFiles(); !slices.Equal(after, before) {
		t.Fatalf("a refused repair index changed the index files: %v, was %v", after, before)
	}
	e.ok("repair", "index", "--dry-run")
	if out := e.ok("unlock").stdout; !strings.Contains(out, "kept locks/prune") {
		t.Fatalf("unlock removed a live prune lock:\n%s", out)
	}
	e.fail(1, []string{"is held by prune on "}, "repair", "index")
	if res := e.ok("unlock", "--force"); !strings.Contains(res.stdout, "removed locks/prune: prune on ") {
		t.Fatalf("unlock --force:\n%s", res)
	}
	if err := l.Refresh(ctx); err == nil {
		t.Fatal("a lock removed by unlock --force refreshed")
	}
	l.Release(ctx)

	e.ok("repair", "index")
	if after := indexFiles(); slices.Equal(after, before) || len(after) == 0 {
		t.Fatalf("repair index did not replace the index files: %v", after)
	}
	if out := e.ok("unlock").stdout; !strings.Contains(out, "no locks") {
		t.Fatalf("repair index left a lock:\n%s", out)
	}
	e.ok("check")
	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "-to", out, sn.Short)
	if err := testtree.Compare(src, out); err != nil {
		t.Fatal(err)
	}

	// A repair index holding the lock is named as such to a prune.
	l, err = lease.Exclusive(ctx, st, r.Keys(), lease.PruneName, lease.Options{Command: "repair index"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	e.fail(1, []string{store.ObjectName(store.Handle{Kind: store.KindLock, Name: lease.PruneName}) + " is held by repair index on "}, "prune")
}
