// Package enginetest builds the stores the engine's tests and its
// drivers' tests (repair) work on: a repository in a temporary folder
// with a cheap KDF, folders backed up and restored, and the objects of a
// folder store listed for tests that damage them.
package enginetest

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// Passphrase opens every repository NewRepo makes.
const Passphrase = "test passphrase"

// CheapKDF keeps tests fast; the format is the same.
var CheapKDF = crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}

// Chunker is small so that tests cross many chunk boundaries cheaply.
var Chunker = engine.ChunkerParams{Algorithm: "fastcdc-v1.0.0", Min: 16 << 10, Normal: 32 << 10, Max: 128 << 10}

// NewRepo creates a repository in a folder store under t.TempDir (with
// CheapKDF unless opt names a KDF) and returns it with the store's path.
func NewRepo(t testing.TB, opt engine.CreateOptions) (*engine.Repo, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.NewFolder(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if opt.KDF == (crypto.KDFParams{}) {
		opt.KDF = CheapKDF
	}
	r, err := engine.Create(context.Background(), st, []byte(Passphrase), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r, filepath.Join(dir, "store")
}

// Reopen opens the repository of NewRepo in the folder store at path.
func Reopen(t testing.TB, path string) *engine.Repo {
	t.Helper()
	return OpenRepo(t, FolderStore(t, path))
}

// FolderStore is the store folder at path, to open through a wrapper
// (faults.New, say) with OpenRepo.
func FolderStore(t testing.TB, path string) store.Storage {
	t.Helper()
	st, err := store.NewFolder(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// OpenRepo opens the repository of NewRepo in st.
func OpenRepo(t testing.TB, st store.Storage) *engine.Repo {
	t.Helper()
	r, err := engine.Open(context.Background(), st, []byte(Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// WriteFile writes data at p, making its folders.
func WriteFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := testtree.WriteFile(p, data); err != nil {
		t.Fatal(err)
	}
}

// BackupDir backs up dir and returns the snapshot.
func BackupDir(t testing.TB, r *engine.Repo, dir string, opt backup.Options) *engine.Snapshot {
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

// RestoreAll restores snapshot sn into the folder to.
func RestoreAll(t testing.TB, r *engine.Repo, sn *engine.Snapshot, to string) error {
	t.Helper()
	dst, err := restore.NewFolder(to)
	if err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(context.Background(), r, sn.RootNode(), dst, restore.Options{})
	return err
}

// CompareTrees fails unless b holds exactly what a holds (testtree.Compare).
func CompareTrees(t testing.TB, a, b string) {
	t.Helper()
	if err := testtree.Compare(a, b); err != nil {
		t.Fatal(err)
	}
}

// IndexFiles lists the index files of the folder store at storeDir, sorted.
func IndexFiles(t testing.TB, storeDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(storeDir, "index"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// StorePacks maps the id of every pack of the folder store at storeDir to
// its path.
func StorePacks(t testing.TB, storeDir string) map[string]string {
	t.Helper()
	packs := map[string]string{}
	err := filepath.WalkDir(filepath.Join(storeDir, "packs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !strings.HasPrefix(d.Name(), ".tmp-") {
			packs[d.Name()] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return packs
}
