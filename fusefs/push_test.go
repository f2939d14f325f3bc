package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/internal/testtree"
	"golang.org/x/sys/unix"
)

// missingPages returns how many pages of the regular files names of dir
// are not in the kernel's page cache, by mincore of a read-only mapping
// of each (which sends no READ).
func missingPages(t *testing.T, dir string, names []string) int {
	t.Helper()
	page := int64(os.Getpagesize())
	missing := 0
	for _, name := range names {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Size() == 0 {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			f.Close()
			t.Fatalf("mmap %s: %v", p, err)
		}
		vec := make([]byte, (fi.Size()+page-1)/page)
		_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
		unix.Munmap(m)
		f.Close()
		if errno != 0 {
			t.Fatalf("mincore %s: %v", p, errno)
		}
		for _, v := range vec {
			if v&1 == 0 {
				missing++
			}
		}
	}
	return missing
}

// listOrder returns the names of dir in the order the mount lists them.
func listOrder(t *testing.T, dir string) []string {
	t.Helper()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	names, err := fd.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestPushSmallFiles: small files read in order are pushed into the
// kernel's cache ahead of the reader, so that reading them sends no
// READ, and what the kernel then serves is byte-exact; reads out of
// order push nothing; a listing while small files are being read
// pushes the folder's first files. Both ways of opening files.
func TestPushSmallFiles(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	r := newRepo(t)
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	files := map[string][]byte{}
	const perDir = 120
	for d := 0; d < 3; d++ {
		for i := 0; i < perDir; i++ {
			var b []byte
			switch {
			case d == 0 && i == 60:
				b = testtree.RandBytes(400 << 10) // several chunks: never pushed
			case i%2 == 0:
				b = testtree.Text(uint64(d*1000+i), 1+rng.IntN(12<<10))
			case d > 0 && i%9 == 1:
				b = nil // empty
			default:
				b = testtree.RandBytes(1 + rng.IntN(6<<10))
			}
			name := fmt.Sprintf("d%d/f%03d", d, i)
			files[name] = b
			if err := testtree.WriteFile(filepath.Join(src, name), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%d/f030dir", d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sn := backupDir(t, r, src)

	for _, needOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("needOpen=%v", needOpen), func(t *testing.T) {
			r2 := reopen(t, r)
			r2.LoadIndex(context.Background())
			f := New(r2, Options{})
			t.Cleanup(f.Close)
			rc := &requestCounter{counts: map[string]int{}}
			mnt := t.TempDir()
			srv, err := Mount(mnt, f.SnapshotsRoot([]*engine.Snapshot{sn}), MountOptions{FsName: "coffer-test", NeedOpen: needOpen, debugLog: log.New(rc, "", 0)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Unmount(srv); srv.Wait() })
			base := filepath.Join(mnt, SnapshotName(sn))
			idle := func() {
				for i := 0; i < 2000 && f.pushing.Load() > 0; i++ {
					time.Sleep(time.Millisecond)
				}
				if f.pushing.Load() > 0 {
					t.Fatal("still pushing after 2 s")
				}
			}
			read := func(dir, name string) {
				t.Helper()
				got, err := os.ReadFile(filepath.Join(base, dir, name))
				if want, ok := files[dir+"/"+name]; !ok || err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s/%s: %d bytes, %v; want %d", dir, name, len(got), err, len(want))
				}
			}
			// reads reads names[lo:hi] of dir in order (not the folder) and
			// returns the READ requests they cost.
			var readLines []string // the READ lines of the last reads, for a message
			reads := func(dir string, names []string) int {
				t.Helper()
				rc.take()
				for _, name := range names {
					if name != "f030dir" {
						read(dir, name)
					}
				}
				readLines = rc.readLines()
				return rc.take()["READ"]
			}

			// d0 in order: the first read pushes the next pushFirst
			// entries, the next read through FUSE twice as many.
			d0 := listOrder(t, filepath.Join(base, "d0"))
			if n := reads("d0", d0[:1]); n != 1 {
				t.Fatalf("first file: %d READs", n)
			}
			idle()
			if n := reads("d0", d0[1:1+pushFirst]); n != 0 {
				t.Fatalf("the %d files after the first: %d READs, want 0 (pushed %d)", pushFirst, n, f.pushed.Load())
			}
			if n := reads("d0", d0[1+pushFirst:2+pushFirst]); n != 1 {
				t.Fatalf("the file after those: %d READs", n)
			}
			idle()
			pushed := f.pushed.Load()
			if n := reads("d0", d0[2+pushFirst:2+3*pushFirst]); n != 0 {
				t.Fatalf("the next %d files: %d READs, want 0", 2*pushFirst, n)
			}
			if pushed < 3*pushFirst-2 { // less the folder
				t.Fatalf("%d files pushed", pushed)
			}
			// The rest, without waiting: byte-exact, and the pushes
			// still save reads (the big file is read through FUSE).
			n := reads("d0", d0[2+3*pushFirst:])
			t.Logf("d0: %d files, the last %d read with %d READs; %d pushed", len(d0), len(d0)-2-3*pushFirst, n, f.pushed.Load())

			// d1 out of order pushes nothing; all of it read in any
			// order is byte-exact.
			idle() // d0's pushes
			d1 := listOrder(t, filepath.Join(base, "d1"))
			idle() // the listing's, if d0's last reads went through FUSE
			pushed = f.pushed.Load()
			reads("d1", []string{d1[40], d1[12], d1[100], d1[70]})
			idle()
			if p := f.pushed.Load(); p != pushed {
				t.Fatalf("reads out of order pushed %d files", p-pushed)
			}
			rng.Shuffle(len(d1), func(i, j int) { d1[i], d1[j] = d1[j], d1[i] })
			reads("d1", d1)

			// d2: its listing, small files being read, pushes its first
			// entries.
			d2 := listOrder(t, filepath.Join(base, "d2"))
			idle()
			if n := reads("d2", d2[:pushFirst]); n != 0 {
				t.Fatalf("the first %d files of a folder listed while files are read: %d READs, want 0", pushFirst, n)
			}
			reads("d2", d2[pushFirst:])

			// Everything again, now from the kernel's cache: no READ but
			// for pages the kernel evicted meanwhile (this machine's
			// proactive reclaim, DAMON pageout, drops page-cache pages
			// with no memory pressure; seen under load as one READ of
			// page 0 of a pushed file whose page 1 stayed).
			for _, d := range []string{"d0", "d1", "d2"} {
				names := listOrder(t, filepath.Join(base, d))
				missing := missingPages(t, filepath.Join(base, d), names)
				if n := reads(d, names); n > missing && !needOpen {
					t.Errorf("%s read again: %d READs, for %d pages the kernel's cache lost (%q)", d, n, missing, readLines)
				} else if n > 0 {
					t.Logf("%s read again: %d READs, for %d pages the kernel's cache lost", d, n, missing)
				}
			}
			t.Logf("%d pushed; stats %+v", f.pushed.Load(), f.Stats().Chunks)
		})
	}
}
