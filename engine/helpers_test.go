package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cheapKDF keeps tests fast; the format is the same.
var cheapKDF = KDFParams{Time: 1, Memory: 64, Threads: 1}

// testChunker is small so that tests cross many chunk boundaries cheaply.
var testChunker = ChunkerParams{Algorithm: "fastcdc-v1.0.0", Min: 16 << 10, Normal: 32 << 10, Max: 128 << 10}

func newTestRepo(t testing.TB, opt CreateOptions) (*Repo, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := NewLocalStorage(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if opt.KDF == (KDFParams{}) {
		opt.KDF = cheapKDF
	}
	r, err := Create(context.Background(), st, []byte("test passphrase"), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r, filepath.Join(dir, "store")
}

func reopen(t testing.TB, path string) *Repo {
	t.Helper()
	st, _ := NewLocalStorage(path)
	r, err := Open(context.Background(), st, []byte("test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func textBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, 1))
	words := []string{"alpha ", "bravo ", "charlie ", "delta ", "echo\n", "foxtrot ", "42 ", "2026-11-25 "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// backupDir backs up dir and returns the snapshot.
func backupDir(t testing.TB, r *Repo, dir string, opt BackupOptions) *Snapshot {
	t.Helper()
	src, err := NewFSSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Backup(context.Background(), src, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot
}

func restoreAll(t testing.TB, r *Repo, sn *Snapshot, to string) error {
	t.Helper()
	dst, err := NewFSDestination(to)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Restore(context.Background(), sn.RootNode(), dst, RestoreOptions{})
	return err
}

// compareTrees fails unless b holds exactly what a holds: names, types,
// content, modes, mtimes and symlink targets.
func compareTrees(t testing.TB, a, b string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		q := filepath.Join(b, rel)
		fa, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fb, err := os.Lstat(q)
		if err != nil {
			return fmt.Errorf("missing in restore: %s", rel)
		}
		if fa.Mode() != fb.Mode() {
			return fmt.Errorf("%s: mode %v, restored %v", rel, fa.Mode(), fb.Mode())
		}
		if !fa.ModTime().Equal(fb.ModTime()) {
			return fmt.Errorf("%s: mtime %v, restored %v", rel, fa.ModTime(), fb.ModTime())
		}
		switch {
		case fa.Mode().IsRegular():
			da, _ := os.ReadFile(p)
			db, _ := os.ReadFile(q)
			if !bytes.Equal(da, db) {
				return fmt.Errorf("%s: content differs (%d vs %d bytes)", rel, len(da), len(db))
			}
		case fa.Mode()&fs.ModeSymlink != 0:
			la, _ := os.Readlink(p)
			lb, _ := os.Readlink(q)
			if la != lb {
				return fmt.Errorf("%s: link %q, restored %q", rel, la, lb)
			}
		}
		if sa, ok := fa.Sys().(*syscall.Stat_t); ok {
			sb := fb.Sys().(*syscall.Stat_t)
			if os.Geteuid() == 0 && (sa.Uid != sb.Uid || sa.Gid != sb.Gid) {
				return fmt.Errorf("%s: owner %d:%d, restored %d:%d", rel, sa.Uid, sa.Gid, sb.Uid, sb.Gid)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(b, p)
		if err == nil && !seen[rel] {
			t.Errorf("restore has an extra entry %s", rel)
		}
		return nil
	})
}

var fixedTime = time.Date(2024, 2, 29, 13, 37, 42, 123456789, time.UTC)
