package engine_test

import (
	"path/filepath"
	"testing"

	"github.com/coffer-backup/coffer/engine/backup"

	"github.com/coffer-backup/coffer/engine/check"

	"github.com/coffer-backup/coffer/engine"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// makeTree writes the round-trip corpus of testtree.Make.
func makeTree(t testing.TB, root string, c engine.ChunkerParams) {
	t.Helper()
	if err := testtree.Make(root, testtree.Sizes{Min: c.Min, Max: c.Max}); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, testChunker)
	sn := backupDir(t, r, src, backup.Options{})
	if sn.Stats.Files == 0 || sn.Stats.NewBlobs == 0 {
		t.Fatalf("backup saw nothing: %+v", sn.Stats)
	}
	// Restore through a fresh open of the store.
	r2 := reopen(t, storeDir)
	sn2, err := r2.FindSnapshot(t.Context(), sn.ID.String()[:8])
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, r2, sn2, out); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, out)
	res, err := check.Run(t.Context(), r2, check.Options{})
	if err != nil || !res.OK() {
		t.Fatalf("check: %v %+v", err, res)
	}
}
