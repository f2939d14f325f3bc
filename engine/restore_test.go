package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// deniedDest refuses every file, as a bucket without s3:PutObject does.
type deniedDest struct {
	*restore.Folder
	creates atomic.Int64
}

func (d *deniedDest) CreateFile(ctx context.Context, path string, n *tree.Node) (restore.FileWriter, error) {
	d.creates.Add(1)
	return nil, &store.PermanentError{Err: errors.New("access denied: s3:PutObject on arn:aws:s3:::dst")}
}

// TestRestoreStopsOnPermanentError: a destination error that would fail
// every entry stops the restore with that error, instead of one message
// per file.
func TestRestoreStopsOnPermanentError(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	for i := 0; i < 200; i++ {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%10), fmt.Sprintf("f%03d", i)), []byte("x"))
	}
	sn := backupDir(t, r, src, backup.Options{})
	fs, _ := restore.NewFolder(t.TempDir())
	dst := &deniedDest{Folder: fs}
	var warned atomic.Int64
	_, err := restore.Restore(t.Context(), r, sn.RootNode(), dst, restore.Options{Concurrency: 2,
		Warn: func(string, error) { warned.Add(1) }})
	if err == nil || !strings.Contains(err.Error(), "s3:PutObject") || !strings.Contains(err.Error(), "restore stopped") {
		t.Fatalf("restore: %v", err)
	}
	if warned.Load() != 0 {
		t.Fatalf("%d per-file warnings, want the one error", warned.Load())
	}
	if n := dst.creates.Load(); n > 20 {
		t.Fatalf("%d files attempted after the first permanent error", n)
	}
}

// TestSkippedEntriesRecorded: what a backup leaves out is named in the
// snapshot itself, with the reason, not only warned about.
func TestSkippedEntriesRecorded(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "ok"), []byte("ok"))
	if err := syscall.Mkfifo(filepath.Join(src, "sub", "pipe"), 0o600); err != nil {
		if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(src, "sub", "pipe"), 0o600); err != nil {
			t.Skip("mkfifo:", err)
		}
	}
	sn := backupDir(t, r, src, backup.Options{})
	got, err := r.LoadSnapshot(t.Context(), sn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Partial || got.Stats.Skipped != 1 || len(got.SkippedEntries) != 1 ||
		got.SkippedEntries[0].Path != "/sub/pipe" || !strings.Contains(got.SkippedEntries[0].Reason, "unsupported") {
		t.Fatalf("partial %v, skipped %d, entries %+v", got.Partial, got.Stats.Skipped, got.SkippedEntries)
	}
}

// TestSnapshotsLoadedOnce: listing snapshots again (parent choice,
// progress totals, latest) fetches no snapshot object twice.
func TestSnapshotsLoadedOnce(t *testing.T) {
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("f"))
	backupDir(t, r, src, backup.Options{})
	backupDir(t, r, src, backup.Options{})
	r2, cs := reopenCounting(t, path, store.KindSnapshot)
	for i := 0; i < 3; i++ {
		if _, err := r2.FindSnapshot(t.Context(), "latest"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.n.Load(); n != 2 {
		t.Fatalf("%d snapshot GETs for three listings of 2 snapshots, want 2", n)
	}
}
