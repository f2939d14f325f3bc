package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"errors"
	"path/filepath"
	"testing"
)

// openCached opens the store at path again, keeping its index in cache,
// and counts the index files it reads.
func openCached(t *testing.T, path, cache string) (*engine.Repo, *gets) {
	t.Helper()
	c := &gets{Storage: folderStore(t, path), kind: store.KindIndex}
	r := openRepo(t, c)
	r.UseIndexCache(cache)
	return r, c
}

// TestIndexCacheAcrossRuns: the index kept between runs spares reading
// the index files it covers; snapshots restore byte-exact through it;
// and a kept index that covers an index file the store no longer has is
// dropped, not trusted.
func TestIndexCacheAcrossRuns(t *testing.T) {
	ctx := context.Background()
	_, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	cache := filepath.Join(t.TempDir(), "cache")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), randBytes(300<<10))
	writeFile(t, filepath.Join(src, "b"), textBytes(1, 200<<10))

	r, _ := openCached(t, path, cache)
	sn1 := backupDir(t, r, src, backup.Options{})

	// A second run reads the one index file and keeps the index.
	r, c := openCached(t, path, cache)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if c.n.Load() != 1 || r.IndexCacheNote() != "" {
		t.Fatalf("read %d index files (note %q), want 1", c.n.Load(), r.IndexCacheNote())
	}
	writeFile(t, filepath.Join(src, "c"), randBytes(500<<10))
	sn2 := backupDir(t, r, src, backup.Options{})

	// A third reads only the index file of the second backup.
	r, c = openCached(t, path, cache)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if c.n.Load() != 1 || r.Index.Files() != 2 {
		t.Fatalf("read %d index files, index of %d; want 1 of 2", c.n.Load(), r.Index.Files())
	}
	for _, sn := range []*engine.Snapshot{sn1, sn2} {
		out := t.TempDir()
		if err := restoreAll(t, r, sn, out); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if err := restoreAll(t, r, sn2, out); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, out)

	// Nothing new: nothing read.
	r, c = openCached(t, path, cache)
	if err := r.LoadIndex(ctx); err != nil || c.n.Load() != 0 {
		t.Fatalf("read %d index files (%v), want 0", c.n.Load(), err)
	}
	covered := r.Index.Covered()
	if len(covered) != 2 {
		t.Fatalf("covered %v", covered)
	}

	// The second backup's index file goes (as a prune would rewrite it):
	// the kept index must not answer for its blobs.
	names, _ := r.IndexFiles(ctx)
	var gone store.Handle
	st, _ := store.NewFolder(path)
	lost := sn2.Root
	// Which index file holds sn2's root? Remove that one.
	for _, n := range names {
		packs, err := r.ReadIndexFile(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range packs {
			for _, b := range p.Blobs {
				if b.ID == lost {
					gone = n
				}
			}
		}
	}
	if gone.Name == "" || gone.Name == covered[0] && len(names) < 2 {
		t.Fatal("no index file holds the second snapshot's root")
	}
	if err := st.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	r, _ = openCached(t, path, cache)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Index.Has(lost) {
		t.Fatal("the kept index answers for a blob of a removed index file")
	}
	if _, err := r.LoadBlob(ctx, lost); !errors.Is(err, engine.ErrMissingBlob) {
		t.Fatalf("LoadBlob of a blob of a removed index file: %v", err)
	}
	if got := r.Index.Covered(); len(got) != 1 || got[0] == gone.Name {
		t.Fatalf("covered %v after %s was removed", got, gone.Name)
	}
}
