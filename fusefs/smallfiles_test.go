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
