package engine_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
)

// excludeTree makes the tree the exclusion tests back up.
func excludeTree(t *testing.T) string {
	dir := t.TempDir()
	for p, n := range map[string]int{
		"a.txt": 10, "b.tmp": 10, "sub/c.tmp": 10, "sub/keep.txt": 10, "sub/PHOTO.JPG": 10, "x.jpg": 10,
		"build/out.o": 10, "docs/build/page.html": 10, "cache/blob": 10, "cache.txt": 10,
		"skip/.nobackup": 0, "skip/inner/f": 10, "big.bin": 200 << 10, "sub/big2.bin": 100<<10 + 1, "edge.bin": 100 << 10,
	} {
		writeFile(t, filepath.Join(dir, p), textBytes(uint64(n), n))
	}
	return dir
}

// snapshotPaths restores sn and lists its paths, directories ending in "/".
func snapshotPaths(t *testing.T, r *engine.Repo, sn *engine.Snapshot) []string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "r")
	if err := restoreAll(t, r, sn, to); err != nil {
		t.Fatal(err)
	}
	var out []string
	filepath.WalkDir(to, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p == to {
			return nil
		}
		rel, _ := filepath.Rel(to, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(out)
	return out
}

func backupFiltered(t *testing.T, r *engine.Repo, dir string, f *backup.Filter) *engine.Snapshot {
	t.Helper()
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	src.Filter = f
	res, err := backup.Run(context.Background(), r, src, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot
}

func without(all []string, drop ...string) []string {
	var out []string
	for _, p := range all {
		keep := true
		for _, d := range drop {
			if p == d || (strings.HasSuffix(d, "/") && strings.HasPrefix(p, d)) {
				keep = false
			}
		}
		if keep {
			out = append(out, p)
		}
	}
	return out
}

// TestExcludeFolder: each folder exclusion leaves out what it names and
// counts it (an excluded directory once), and the rest is backed up.
func TestExcludeFolder(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dir := excludeTree(t)
	all := snapshotPaths(t, r, backupFiltered(t, r, dir, nil))
	exFile := filepath.Join(t.TempDir(), "excludes")
	os.WriteFile(exFile, []byte("# build products\n/build/\n\n*.o\n"), 0o644)
	fromFile, err := backup.ReadPatternFile(exFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		exclude     []string
		iexclude    []string
		ifPresent   []string
		largerThan  uint64
		drop        []string
		files, dirs uint64
	}{
		{name: "exclude name anywhere", exclude: []string{"*.tmp"}, drop: []string{"b.tmp", "sub/c.tmp"}, files: 2},
		{name: "exclude anchored dir", exclude: []string{"/build"}, drop: []string{"build/"}, dirs: 1},
		{name: "exclude dir only", exclude: []string{"cache/"}, drop: []string{"cache/"}, dirs: 1},
		{name: "exclude ** and re-include", exclude: []string{"**/*.txt", "!keep.txt"}, drop: []string{"a.txt", "cache.txt"}, files: 2},
		{name: "exclude is case-sensitive", exclude: []string{"*.jpg"}, drop: []string{"x.jpg"}, files: 1},
		{name: "iexclude", iexclude: []string{"*.jpg"}, drop: []string{"x.jpg", "sub/PHOTO.JPG"}, files: 2},
		{name: "exclude-file", exclude: fromFile, drop: []string{"build/"}, dirs: 1},
		{name: "exclude-if-present", ifPresent: []string{".nobackup"}, drop: []string{"skip/"}, dirs: 1},
		{name: "exclude-larger-than", largerThan: 100 << 10, drop: []string{"big.bin", "sub/big2.bin"}, files: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &backup.Filter{IfPresent: c.ifPresent, LargerThan: c.largerThan}
			if err := f.Exclude.AddAll(c.exclude, false); err != nil {
				t.Fatal(err)
			}
			if err := f.Exclude.AddAll(c.iexclude, true); err != nil {
				t.Fatal(err)
			}
			sn := backupFiltered(t, r, dir, f)
			if got, want := snapshotPaths(t, r, sn), without(all, c.drop...); !reflect.DeepEqual(got, want) {
				t.Errorf("snapshot holds\n%q\nwant\n%q", got, want)
			}
			if sn.Stats.ExcludedFiles != c.files || sn.Stats.ExcludedDirs != c.dirs || sn.Partial {
				t.Errorf("stats %+v, want %d files and %d dirs excluded", sn.Stats, c.files, c.dirs)
			}
		})
	}
}

// TestExcludeIncremental: an entry excluded now but in the parent is
// simply absent from the new snapshot; the rest is reused unread.
func TestExcludeIncremental(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	dir := excludeTree(t)
	backupFiltered(t, r, dir, nil)
	f := &backup.Filter{}
	f.Exclude.AddAll([]string{"sub/", "a.txt"}, false)
	sn := backupFiltered(t, r, dir, f)
	got := snapshotPaths(t, r, sn)
	for _, p := range got {
		if p == "a.txt" || strings.HasPrefix(p, "sub/") {
			t.Errorf("%s is in the snapshot", p)
		}
	}
	if sn.Stats.ReadBytes != 0 || sn.Stats.Unchanged != sn.Stats.Files || sn.Stats.ExcludedFiles != 1 || sn.Stats.ExcludedDirs != 1 {
		t.Errorf("stats %+v", sn.Stats)
	}
}

// TestExcludeOneFileSystem: a tmpfs mounted inside the source is kept as
// an empty directory under --one-file-system, and read without it.
func TestExcludeOneFileSystem(t *testing.T) {
	dir := excludeTree(t)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	writeFile(t, filepath.Join(mnt, "other-fs.txt"), textBytes(1, 100))
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})

	all := snapshotPaths(t, r, backupFiltered(t, r, dir, nil))
	if !slices.Contains(all, "mnt/other-fs.txt") {
		t.Fatalf("without --one-file-system the mount's content is missing: %q", all)
	}
	sn := backupFiltered(t, r, dir, &backup.Filter{OneFileSystem: true})
	got := snapshotPaths(t, r, sn)
	if want := without(all, "mnt/other-fs.txt"); !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot holds\n%q\nwant\n%q", got, want)
	}
	if !slices.Contains(got, "mnt/") || sn.Stats.ExcludedDirs != 1 || sn.Stats.ExcludedFiles != 0 {
		t.Errorf("the mount point should be kept empty and counted once: %q, stats %+v", got, sn.Stats)
	}
}
