package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeTree writes the round-trip corpus: random and compressible files,
// empty files and dirs, deep nesting, unicode names, files at the
// chunker's min/max sizes and ±1, symlinks, odd modes and mtimes.
func makeTree(t testing.TB, root string, c ChunkerParams) {
	t.Helper()
	writeFile(t, filepath.Join(root, "random.bin"), randBytes(3*c.Max+12345))
	writeFile(t, filepath.Join(root, "text.log"), textBytes(1, 5*c.Max))
	writeFile(t, filepath.Join(root, "empty"), nil)
	for _, n := range []int{c.Min - 1, c.Min, c.Min + 1, c.Max - 1, c.Max, c.Max + 1, 1, 2*c.Max + 1} {
		writeFile(t, filepath.Join(root, "sizes", "f"+strings.Repeat("0", 3)+itoa(n)), randBytes(n))
	}
	deep := root
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, "d"+itoa(i))
	}
	writeFile(t, filepath.Join(deep, "bottom.txt"), []byte("deep\n"))
	for _, name := range []string{"café", "日本語のファイル", "emoji-😀", "space name", "a-b", "a.b", "a", "z", "-dash", ".hidden", "back\\slash", "tab\tname", "new\nline"} {
		writeFile(t, filepath.Join(root, "unicode", name), []byte(name))
	}
	os.MkdirAll(filepath.Join(root, "unicode", "a.dir"), 0o755)
	writeFile(t, filepath.Join(root, "unicode", "a.dir", "x"), []byte("x"))
	os.MkdirAll(filepath.Join(root, "empty-dir", "nested-empty"), 0o755)
	os.Symlink("random.bin", filepath.Join(root, "link-rel"))
	os.Symlink("/nonexistent/target", filepath.Join(root, "link-dangling"))
	os.Symlink("unicode/café", filepath.Join(root, "link-unicode"))
	writeFile(t, filepath.Join(root, "modes", "exec"), []byte("#!/bin/sh\n"))
	os.Chmod(filepath.Join(root, "modes", "exec"), 0o755)
	writeFile(t, filepath.Join(root, "modes", "private"), []byte("secret-ish"))
	os.Chmod(filepath.Join(root, "modes", "private"), 0o600)
	writeFile(t, filepath.Join(root, "modes", "readonly"), []byte("ro"))
	os.Chmod(filepath.Join(root, "modes", "readonly"), 0o444)
	writeFile(t, filepath.Join(root, "modes", "setgid"), []byte("sg"))
	os.Chmod(filepath.Join(root, "modes", "setgid"), 0o2755)
	os.Chmod(filepath.Join(root, "modes"), 0o750)
	// Times last, deepest first, so that writing children does not move
	// their parents' mtimes.
	var paths []string
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { paths = append(paths, p); return nil })
	for i := len(paths) - 1; i >= 0; i-- {
		tm := fixedTime.Add(time.Duration(i) * time.Second)
		if fi, err := os.Lstat(paths[i]); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		os.Chtimes(paths[i], tm, tm)
	}
}

func itoa(n int) string {
	s := ""
	if n == 0 {
		return "0"
	}
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	r, store := newTestRepo(t, CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, testChunker)
	sn := backupDir(t, r, src, BackupOptions{})
	if sn.Stats.Files == 0 || sn.Stats.NewBlobs == 0 {
		t.Fatalf("backup saw nothing: %+v", sn.Stats)
	}
	// Restore through a fresh open of the store.
	r2 := reopen(t, store)
	sn2, err := r2.FindSnapshot(t.Context(), sn.ID.String()[:8])
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, r2, sn2, out); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, out)
	res, err := r2.Check(t.Context(), CheckOptions{})
	if err != nil || !res.OK() {
		t.Fatalf("check: %v %+v", err, res)
	}
}
