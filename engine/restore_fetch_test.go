package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/faults"
	"github.com/coffer-backup/coffer/engine/tree"
	"github.com/coffer-backup/coffer/internal/testtree"
	"golang.org/x/sys/unix"
)

// smallFiles writes n small files (0 to 4 KiB, some empty) over a few
// folders of src, with set mtimes.
func smallFiles(t *testing.T, src string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		size := (i * 997) % 4097
		if i%50 == 7 {
			size = 0
		}
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%5), fmt.Sprintf("f%04d", i)), randBytes(size))
	}
	if err := testtree.SetTimes(src); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreSmallFilesShareReads: the small files a backup packed side by
// side come back from a few ranged reads, not one read per file, and
// byte-exact with their modes and mtimes.
func TestRestoreSmallFilesShareReads(t *testing.T) {
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	const n = 600
	smallFiles(t, src, n)
	sn := backupDir(t, r, src, backup.Options{})

	cs := &gets{Storage: folderStore(t, path), kind: store.KindDataPack}
	r2 := openRepo(t, cs)
	out := filepath.Join(t.TempDir(), "out")
	dst, _ := restore.NewFolder(out)
	st, err := restore.Restore(t.Context(), r2, sn.RootNode(), dst, restore.Options{Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != n {
		t.Fatalf("restored %d files, want %d", st.Files, n)
	}
	compareTrees(t, src, out)
	// 600 files of 2 KiB on average: 1.2 MB, in runs of up to 128
	// files: 5 reads (and one more per folder where a run may break).
	if got := cs.n.Load(); got > 15 {
		t.Fatalf("%d reads of data packs for %d small files, want a few", got, n)
	}
}

// orderDest records the order files are created in and how many
// creations overlap.
type orderDest struct {
	*restore.Folder
	mu      sync.Mutex
	order   []string // "d /path" for a folder made, "f /path" for a file
	active  atomic.Int64
	overlap atomic.Int64
}

func (d *orderDest) CreateFile(ctx context.Context, path string, n *tree.Node) (restore.FileWriter, error) {
	if d.active.Add(1) > 1 {
		d.overlap.Add(1)
	}
	defer d.active.Add(-1)
	d.note("f " + path)
	return d.Folder.CreateFile(ctx, path, n)
}

func (d *orderDest) MkDirAhead(ctx context.Context, path string) error {
	d.note("d " + path)
	return d.Folder.MkDirAhead(ctx, path)
}

func (d *orderDest) note(s string) {
	d.mu.Lock()
	d.order = append(d.order, s)
	d.mu.Unlock()
}

// TestRestoreCreatesFoldersFirst: into a new (or empty) folder, every
// folder is made before any file, and the files are created one at a
// time, each once, while several workers write them; the result is
// byte-exact.
func TestRestoreCreatesFoldersFirst(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	smallFiles(t, src, 400)
	writeFile(t, filepath.Join(src, "d2", "big"), randBytes(3<<20))
	for _, p := range []string{"d1/e/f/g/x", "d1/e/y", "d3/z/w", "e/only"} {
		writeFile(t, filepath.Join(src, filepath.FromSlash(p)), []byte(p))
	}
	if err := testtree.SetTimes(src); err != nil {
		t.Fatal(err)
	}
	sn := backupDir(t, r, src, backup.Options{})
	for _, empty := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		if empty {
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fd, _ := restore.NewFolder(out)
		dst := &orderDest{Folder: fd}
		walked := map[string]bool{}
		st, err := restore.Restore(t.Context(), r, sn.RootNode(), dst, restore.Options{Concurrency: 8,
			Report: func(a restore.Action, p, _ string) {
				if a != restore.Create {
					t.Errorf("%s: %v, want create", p, a)
				}
				walked[p] = true
			}})
		if err != nil {
			t.Fatal(err)
		}
		compareTrees(t, src, out)
		if o := dst.overlap.Load(); o != 0 {
			t.Fatalf("%d file creations overlapped another", o)
		}
		var dirs, files int
		for i, e := range dst.order {
			p := e[2:]
			if !walked[p] {
				t.Fatalf("%s made, but not in the snapshot", e)
			}
			delete(walked, p)
			if e[0] == 'f' {
				files++
				continue
			}
			dirs++
			if files > 0 {
				t.Fatalf("folder %s made after %d files (entry %d)", p, files, i)
			}
		}
		if dirs != 10 || uint64(files) != st.Files || files != 405 {
			t.Fatalf("made %d folders and %d files, restored %d files; want 10 and 405", dirs, files, st.Files)
		}
		if len(walked) != 0 {
			t.Fatalf("walked but never made: %v", walked)
		}
	}
}

// TestRestoreBigFileManyWorkers: a file of several runs, written by
// several workers taking turns, comes back byte-exact, beside small files.
func TestRestoreBigFileManyWorkers(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	big := append(randBytes(9<<20), textBytes(3, 9<<20)...) // 3+ runs of up to 8 MiB
	writeFile(t, filepath.Join(src, "a", "big"), big)
	writeFile(t, filepath.Join(src, "a", "small"), []byte("small"))
	writeFile(t, filepath.Join(src, "b", "big2"), randBytes(17<<20+3))
	writeFile(t, filepath.Join(src, "b", "empty"), nil)
	if err := testtree.SetTimes(src); err != nil {
		t.Fatal(err)
	}
	sn := backupDir(t, r, src, backup.Options{})
	for _, c := range []int{1, 8} {
		out := filepath.Join(t.TempDir(), "out")
		dst, _ := restore.NewFolder(out)
		if _, err := restore.Restore(t.Context(), r, sn.RootNode(), dst, restore.Options{Concurrency: c}); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, src, out)
		got, _ := os.ReadFile(filepath.Join(out, "a", "big"))
		if !bytes.Equal(got, big) {
			t.Fatalf("concurrency %d: big file differs", c)
		}
	}
}

// TestRestoreSharedReadFailsEachFile: when a read that feeds several
// small files fails, each of them is named, and none is left behind.
func TestRestoreSharedReadFailsEachFile(t *testing.T) {
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	const n = 50
	smallFiles(t, src, n)
	sn := backupDir(t, r, src, backup.Options{})

	fs := faults.New(folderStore(t, path), faults.Config{})
	r2 := openRepo(t, fs)
	if err := r2.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Trees are loaded before; only data packs fail from here on.
	fs.SetConfig(faults.Config{Get: 1, Kinds: []store.Kind{store.KindDataPack}})
	out := filepath.Join(t.TempDir(), "out")
	dst, _ := restore.NewFolder(out)
	var mu sync.Mutex
	warned := map[string]bool{}
	_, err := restore.Restore(t.Context(), r2, sn.RootNode(), dst, restore.Options{Concurrency: 4,
		Warn: func(p string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if !errors.Is(err, faults.ErrInjected) {
				t.Errorf("%s: %v, want the injected fault", p, err)
			}
			warned[p] = true
		}})
	var re *restore.Error
	if !errors.As(err, &re) {
		t.Fatalf("restore: %v, want a restore.Error", err)
	}
	if fs.Counts().Get == 0 {
		t.Fatal("no fault injected")
	}
	empty := 0
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("/d%d/f%04d", i%5, i)
		info, err := os.Stat(filepath.Join(out, filepath.FromSlash(p)))
		switch {
		case warned[p] && err == nil:
			t.Errorf("%s failed but was left behind", p)
		case !warned[p] && (err != nil || info.Size() != 0):
			t.Errorf("%s: not named as failed, and not restored as an empty file", p)
		case !warned[p]:
			empty++
		}
	}
	if len(warned)+empty != n || len(warned) < n-3 {
		t.Fatalf("%d files named, %d empty ones restored, of %d", len(warned), empty, n)
	}
}

// TestRestoreIdenticalSmallFiles: files with the same content share their
// blob, and so bytes of one read; each is opened from its own copy.
func TestRestoreIdenticalSmallFiles(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	same := randBytes(3000)
	for i := 0; i < 120; i++ {
		data := same
		if i%3 == 1 {
			data = randBytes(100 + i)
		}
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%2), fmt.Sprintf("f%03d", i)), data)
	}
	if err := testtree.SetTimes(src); err != nil {
		t.Fatal(err)
	}
	sn := backupDir(t, r, src, backup.Options{})
	out := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, r, sn, out); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, out)
}

// TestRestoreWithinOpenFileLimit: with a low limit on open files (1024 is
// common; this uses 200), a restore of thousands of small files by many
// workers keeps the files it holds open below it, instead of failing
// files with "too many open files".
func TestRestoreWithinOpenFileLimit(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	smallFiles(t, src, 3000)
	sn := backupDir(t, r, src, backup.Options{})
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = 200
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	out := filepath.Join(t.TempDir(), "out")
	dst, _ := restore.NewFolder(out)
	var warned []string
	_, err := restore.Restore(t.Context(), r, sn.RootNode(), dst, restore.Options{Concurrency: 16,
		Warn: func(p string, err error) { warned = append(warned, p+": "+err.Error()) }})
	if err != nil {
		t.Fatalf("%v; %d warnings, first: %v", err, len(warned), warned[:min(len(warned), 1)])
	}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	compareTrees(t, src, out)
}
