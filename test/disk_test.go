package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// TestFullDisk keeps the store on a small tmpfs: a backup that fills it
// fails with a clear message, writes no snapshot, leaves no temp files
// and nothing a later backup trips on; once space is back, the next
// backup and a check succeed and the earlier snapshot restores intact.
func TestFullDisk(t *testing.T) {
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
	e := &env{t: t, store: filepath.Join(disk, "store"), pass: "full disk"}
	e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")

	src := filepath.Join(t.TempDir(), "src")
	fillRandom(t, filepath.Join(src, "small"), 7, 4, 256<<10)
	first := e.backup(src)

	fillRandom(t, filepath.Join(src, "big"), 8, 5, 8<<20) // 40 MiB > 24 MiB
	e.fail(1, []string{"no space left on device", "disk is full", "no snapshot was written"}, "backup", src)
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots after the failed backup, want 1", n)
	}
	var temps []string
	filepath.Walk(e.store, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".tmp-") {
			temps = append(temps, p)
		}
		return nil
	})
	if len(temps) > 0 {
		t.Fatalf("temp files left behind: %v", temps)
	}
	e.ok("check")

	os.RemoveAll(filepath.Join(src, "big"))
	e.backup(src)
	e.ok("check")
	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "-to", out, first.Short+":/small")
	if err := testtree.Compare(filepath.Join(src, "small"), out); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreOntoFullDisk: a restore that fills its target stops with
// one clear message (disk full, what to do), not one line per remaining
// file.
func TestRestoreOntoFullDisk(t *testing.T) {
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	fillRandom(t, src, 9, 40, 256<<10) // ~10 MiB in 40 files
	e.backup(src)
	r := e.fail(1, []string{"no space left on device", "disk is full"}, "restore", "-to", filepath.Join(disk, "out"), "latest")
	if n := strings.Count(r.stderr, "no space left on device"); n > 2 {
		t.Fatalf("%d lines about the full disk, want the entry that hit it and the final message:\n%s", n, r.stderr)
	}
}
