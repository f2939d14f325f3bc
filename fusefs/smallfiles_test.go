package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// countingStore counts the reads that reach a store.
type countingStore struct {
	store.Storage
	dataGets, treeGets, stats atomic.Int64
	damage                    atomic.Bool // flip bytes of reads of 64 KiB and more of data packs
}

func (c *countingStore) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	if c.damage.Load() && h.Kind == store.KindDataPack && n >= 64<<10 {
		c.dataGets.Add(1)
		b, err := c.Storage.Get(ctx, h, off, n)
		for i := 100; i < len(b); i += 512 {
			b[i] ^= 0x40
		}
		return b, err
	}
	switch h.Kind {
	case store.KindDataPack:
		c.dataGets.Add(1)
	case store.KindTreePack:
		c.treeGets.Add(1)
	}
	return c.Storage.Get(ctx, h, off, n)
}

func (c *countingStore) Stat(ctx context.Context, h store.Handle) (store.ObjectInfo, error) {
	c.stats.Add(1)
	return c.Storage.Stat(ctx, h)
}

func (c *countingStore) reset() {
	c.dataGets.Store(0)
	c.treeGets.Store(0)
	c.stats.Store(0)
}

// TestSmallFilesFewGets: reading every file of folders of small files
// through the mount reads each one byte-exact, and makes far fewer ranged
// reads of data packs than there are files: a small blob is cut from a
// window of its pack that holds its neighbours. Both ways of opening
// files are tested: the kernel's own (no-open) and a handle per open.
func TestSmallFilesFewGets(t *testing.T) {
	st, err := store.NewFolder(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Storage: st}
	ctx := context.Background()
	r, err := engine.Create(ctx, cs, []byte("pass"), engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 5))
	files := map[string][]byte{}
	const dirs, perDir = 4, 150
	for d := 0; d < dirs; d++ {
		for i := 0; i < perDir; i++ {
			var b []byte
			if i%3 == 0 {
				b = testtree.Text(uint64(d*1000+i), 1+rng.IntN(12<<10)) // compressed
			} else {
				b = make([]byte, rng.IntN(6<<10)) // stored raw; some empty
				for j := range b {
					b[j] = byte(rng.Uint32())
				}
			}
			name := fmt.Sprintf("d%d/f%03d", d, i)
			files[name] = b
			testtree.WriteFile(filepath.Join(src, name), b)
		}
	}
	sn := backupDir(t, r, src)

	for _, round := range []struct{ needOpen, damaged bool }{{false, false}, {true, false}, {false, true}} {
		needOpen, damaged := round.needOpen, round.damaged
		cs.damage.Store(damaged)
		t.Run(fmt.Sprintf("needOpen=%v,damaged=%v", needOpen, damaged), func(t *testing.T) {
			r2, err := engine.Open(ctx, cs, []byte("pass"))
			if err != nil {
				t.Fatal(err)
			}
			if err := r2.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			f := New(r2, Options{})
			t.Cleanup(f.Close)
			mnt := t.TempDir()
			if _, err := os.Stat("/dev/fuse"); err != nil {
				t.Skip("no /dev/fuse")
			}
			srv, err := Mount(mnt, f.SnapshotsRoot([]*engine.Snapshot{sn}), MountOptions{FsName: "coffer-test", NeedOpen: needOpen})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Unmount(srv); srv.Wait() })
			if f.noOpen.Load() == needOpen {
				t.Fatalf("noOpen %v with NeedOpen %v", f.noOpen.Load(), needOpen)
			}
			cs.reset()
			base := filepath.Join(mnt, SnapshotName(sn))
			// Listings that read no file (ls -lR, find) fetch no content.
			for d := 0; d < dirs; d++ {
				testtree.Names(t, filepath.Join(base, fmt.Sprintf("d%d", d)))
			}
			if g := cs.dataGets.Load(); g != 0 {
				t.Fatalf("listing %d folders read data packs %d times", dirs, g)
			}
			read := 0
			for d := 0; d < dirs; d++ {
				dir := fmt.Sprintf("d%d", d)
				for _, name := range testtree.Names(t, filepath.Join(base, dir)) {
					got, err := os.ReadFile(filepath.Join(base, dir, name))
					if want, ok := files[dir+"/"+name]; !ok || err != nil || !bytes.Equal(got, want) {
						t.Fatalf("%s/%s: %d bytes, %v; want %d", dir, name, len(got), err, len(want))
					}
					read++
				}
			}
			if read != len(files) {
				t.Fatalf("read %d files of %d", read, len(files))
			}
			gets := cs.dataGets.Load()
			t.Logf("%d small files read with %d ranged reads of data packs, %d directories with %d of tree packs, %d stats; windows %+v",
				read, gets, dirs+1, cs.treeGets.Load(), cs.stats.Load(), f.Stats().Windows)
			if damaged {
				// Every blob failed to open from its window and was read
				// alone, byte-exact all the same.
				if gets < int64(read)/2 {
					t.Fatalf("damaged windows: only %d reads for %d files", gets, read)
				}
				return
			}
			if !needOpen && !damaged {
				checkListingPrefetch(t, cs, ctx, sn, files)
			}
			if gets == 0 || gets > int64(read)/20 {
				t.Fatalf("%d small files read with %d ranged reads of data packs, want at most %d", read, gets, read/20)
			}
			// The directories were written beside each other in a tree
			// pack: fewer reads than directories.
			if tg := cs.treeGets.Load(); tg >= dirs+1 {
				t.Fatalf("%d directories listed with %d reads of tree packs", dirs+1, tg)
			}
			if s := cs.stats.Load(); s > 4 {
				t.Fatalf("%d stats of packs for %d files", s, read)
			}
		})
	}
}

// checkListingPrefetch: on a fresh mount, once a small file was read, a
// listing of another folder fetches the window of its first small file
// before any of them is read.
func checkListingPrefetch(t *testing.T, cs *countingStore, ctx context.Context, sn *engine.Snapshot, files map[string][]byte) {
	r, err := engine.Open(ctx, cs, []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	r.LoadIndex(ctx)
	f := New(r, Options{CacheSize: 4 << 20}) // windows of 64 KiB: a folder spans several
	f.noPush.Store(true)                     // which would read the first files of d2 (TestPushSmallFiles)
	defer f.Close()
	mnt := t.TempDir()
	srv, err := Mount(mnt, f.SnapshotsRoot([]*engine.Snapshot{sn}), MountOptions{FsName: "coffer-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { Unmount(srv); srv.Wait() }()
	base := filepath.Join(mnt, SnapshotName(sn))
	if _, err := os.ReadFile(filepath.Join(base, "d0", "f001")); err != nil {
		t.Fatal(err)
	}
	before := f.Stats().Windows
	names := testtree.Names(t, filepath.Join(base, "d2"))
	// Wait for the prefetch to end, not only to start: a read while the
	// window is still coming waits for it and counts as a miss (seen
	// once under -race: Pending 1).
	for i := 0; i < 500 && (f.Stats().Windows.Prefetches == before.Prefetches || f.Stats().Windows.Pending != 0); i++ {
		time.Sleep(2 * time.Millisecond)
	}
	after := f.Stats().Windows
	if after.Prefetches != before.Prefetches+1 {
		t.Fatalf("listing d2 after a read prefetched %d windows, want 1", after.Prefetches-before.Prefetches)
	}
	// Its first non-empty file is then read from that window.
	for _, name := range names {
		if len(files["d2/"+name]) == 0 {
			continue
		}
		got, err := os.ReadFile(filepath.Join(base, "d2", name))
		if err != nil || !bytes.Equal(got, files["d2/"+name]) {
			t.Fatalf("d2/%s: %v", name, err)
		}
		break
	}
	if w := f.Stats().Windows; w.Loads != after.Loads || w.Hits <= after.Hits {
		t.Fatalf("the first file of d2 was not read from the prefetched window: %+v, then %+v", after, w)
	}
}
