// Package testtree writes and compares the file trees that coffer's
// tests back up and restore.
package testtree

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Sizes are the chunker sizes whose boundaries the tree exercises.
type Sizes struct{ Min, Max int }

// RandBytes returns n random bytes.
func RandBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Text returns n bytes of compressible, seeded text.
func Text(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, 1))
	words := []string{"alpha ", "bravo ", "charlie ", "delta ", "echo\n", "foxtrot ", "42 ", "2026-11-25 "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// WriteFile writes data at p, creating parent folders.
func WriteFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// FixedTime is the base of the mtimes Make sets.
var FixedTime = time.Date(2024, 2, 29, 13, 37, 42, 123456789, time.UTC)

// Make writes the round-trip corpus under root: random and compressible
// files, empty files and folders, deep nesting, unicode and odd names,
// files of exactly the chunker's min and max sizes and ±1, symlinks
// (relative, dangling, unicode), odd modes, and nanosecond mtimes.
func Make(root string, s Sizes) error {
	var errs []error
	w := func(p string, data []byte) { errs = append(errs, WriteFile(filepath.Join(root, p), data)) }
	w("random.bin", RandBytes(3*s.Max+12345))
	w("text.log", Text(1, 5*s.Max))
	w("empty", nil)
	for _, n := range []int{1, s.Min - 1, s.Min, s.Min + 1, s.Max - 1, s.Max, s.Max + 1, 2*s.Max + 1} {
		w(filepath.Join("sizes", "f"+strconv.Itoa(n)), RandBytes(n))
	}
	deep := ""
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, "d"+strconv.Itoa(i))
	}
	w(filepath.Join(deep, "bottom.txt"), []byte("deep\n"))
	for _, name := range []string{"café", "日本語のファイル", "emoji-😀", "space name", "a-b", "a.b", "a", "z",
		"-dash", ".hidden", "back\\slash", "tab\tname", "new\nline", "colon:name", strings.Repeat("long", 60)} {
		w(filepath.Join("unicode", name), []byte(name))
	}
	w(filepath.Join("unicode", "a.dir", "x"), []byte("x"))
	errs = append(errs,
		os.MkdirAll(filepath.Join(root, "empty-dir", "nested-empty"), 0o755),
		os.Symlink("random.bin", filepath.Join(root, "link-rel")),
		os.Symlink("/nonexistent/target", filepath.Join(root, "link-dangling")),
		os.Symlink("unicode/café", filepath.Join(root, "link-unicode")))
	for name, mode := range map[string]os.FileMode{"exec": 0o755, "private": 0o600, "readonly": 0o444, "setgid": 0o755 | os.ModeSetgid} {
		p := filepath.Join(root, "modes", name)
		errs = append(errs, WriteFile(p, []byte(name)), os.Chmod(p, mode))
	}
	errs = append(errs, os.Chmod(filepath.Join(root, "modes"), 0o750))
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return SetTimes(root)
}

// SetTimes gives every entry under root a distinct nanosecond mtime,
// deepest first so that parents keep theirs.
func SetTimes(root string) error {
	var paths []string
	if err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}); err != nil {
		return err
	}
	for i := len(paths) - 1; i >= 0; i-- {
		tm := FixedTime.Add(time.Duration(i)*time.Second + time.Duration(i))
		ts := []syscall.Timespec{syscall.NsecToTimespec(tm.UnixNano()), syscall.NsecToTimespec(tm.UnixNano())}
		if err := utimesNoFollow(paths[i], ts); err != nil {
			return err
		}
	}
	return nil
}

// Compare returns an error unless b holds exactly what a holds: names,
// types, content, modes, mtimes, symlink targets, and (as root) owners.
func Compare(a, b string) error {
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
			return fmt.Errorf("missing in restore: %q", rel)
		}
		if fa.Mode() != fb.Mode() {
			return fmt.Errorf("%q: mode %v, restored %v", rel, fa.Mode(), fb.Mode())
		}
		if !fa.ModTime().Equal(fb.ModTime()) {
			return fmt.Errorf("%q: mtime %v, restored %v", rel, fa.ModTime(), fb.ModTime())
		}
		switch {
		case fa.Mode().IsRegular():
			da, err1 := os.ReadFile(p)
			db, err2 := os.ReadFile(q)
			if err1 != nil || err2 != nil || !bytes.Equal(da, db) {
				return fmt.Errorf("%q: content differs (%d vs %d bytes)", rel, len(da), len(db))
			}
		case fa.Mode()&fs.ModeSymlink != 0:
			la, _ := os.Readlink(p)
			lb, _ := os.Readlink(q)
			if la != lb {
				return fmt.Errorf("%q: link %q, restored %q", rel, la, lb)
			}
		}
		sa, ok1 := fa.Sys().(*syscall.Stat_t)
		sb, ok2 := fb.Sys().(*syscall.Stat_t)
		if ok1 && ok2 && os.Geteuid() == 0 && (sa.Uid != sb.Uid || sa.Gid != sb.Gid) {
			return fmt.Errorf("%q: owner %d:%d, restored %d:%d", rel, sa.Uid, sa.Gid, sb.Uid, sb.Gid)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b, p)
		if !seen[rel] {
			return fmt.Errorf("restore has an extra entry %q", rel)
		}
		return nil
	})
}

// Names lists the entry names of dir in order (os.ReadDir's).
func Names(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(des))
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}
