package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// cheapKDF keeps tests fast; the format is the same.
var cheapKDF = crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}

// testChunker is small so that tests cross many chunk boundaries cheaply.
var testChunker = engine.ChunkerParams{Algorithm: "fastcdc-v1.0.0", Min: 16 << 10, Normal: 32 << 10, Max: 128 << 10}

func newTestRepo(t testing.TB, opt engine.CreateOptions) (*engine.Repo, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.NewFolder(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if opt.KDF == (crypto.KDFParams{}) {
		opt.KDF = cheapKDF
	}
	r, err := engine.Create(context.Background(), st, []byte("test passphrase"), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r, filepath.Join(dir, "store")
}

func reopen(t testing.TB, path string) *engine.Repo {
	t.Helper()
	st, _ := store.NewFolder(path)
	r, err := engine.Open(context.Background(), st, []byte("test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// kindGets passes a Storage through, counting the Gets of objects of one
// kind.
type kindGets struct {
	store.Storage
	kind store.Kind
	n    atomic.Int64
}

func (s *kindGets) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	if h.Kind == s.kind {
		s.n.Add(1)
	}
	return s.Storage.Get(ctx, h, off, n)
}

// reopenCounting opens the store at path again, through a kindGets that
// counts the Gets of objects of kind k.
func reopenCounting(t testing.TB, path string, k store.Kind) (*engine.Repo, *kindGets) {
	t.Helper()
	st, err := store.NewFolder(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &kindGets{Storage: st, kind: k}
	r, err := engine.Open(context.Background(), c, []byte("test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := testtree.WriteFile(p, data); err != nil {
		t.Fatal(err)
	}
}

func randBytes(n int) []byte { return testtree.RandBytes(n) }

func textBytes(seed uint64, n int) []byte { return testtree.Text(seed, n) }

// backupDir backs up dir and returns the snapshot.
func backupDir(t testing.TB, r *engine.Repo, dir string, opt backup.Options) *engine.Snapshot {
	t.Helper()
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(context.Background(), r, src, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot
}

func restoreAll(t testing.TB, r *engine.Repo, sn *engine.Snapshot, to string) error {
	t.Helper()
	dst, err := restore.NewFolder(to)
	if err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(context.Background(), r, sn.RootNode(), dst, restore.Options{})
	return err
}

// compareTrees fails unless b holds exactly what a holds (testtree.Compare).
func compareTrees(t testing.TB, a, b string) {
	t.Helper()
	if err := testtree.Compare(a, b); err != nil {
		t.Fatal(err)
	}
}

var fixedTime = testtree.FixedTime
