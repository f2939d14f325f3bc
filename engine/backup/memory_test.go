package backup_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"
)

// genSource is a bucket-like source of n objects generated on the fly, 1,000
// per folder, each of size bytes of distinct content (so each is a new
// blob): nothing about it is held in memory, so whatever grows with n
// while it is backed up is the backup's.
type genSource struct {
	n, size int
}

const genPerDir = 1000

func (s *genSource) URI() string { return "gen://memory-test" }

func (s *genSource) Walk(ctx context.Context, fn func(*backup.Item) error, warn func(string, error)) error {
	if err := fn(&backup.Item{Node: tree.Node{Type: tree.TypeDir, Mode: 0o755}}); err != nil {
		return err
	}
	var it backup.Item
	for i := 0; i < s.n; i++ {
		if i%genPerDir == 0 {
			it = backup.Item{Path: fmt.Sprintf("d%05d", i/genPerDir), Node: tree.Node{Type: tree.TypeDir, Mode: 0o755, MTime: 1}}
			if err := fn(&it); err != nil {
				return err
			}
		}
		// Items are reused by nobody: the pipeline keeps the pointer
		// until the assembler is done with it.
		it := &backup.Item{Path: fmt.Sprintf("d%05d/f%08d", i/genPerDir, i),
			Node: tree.Node{Type: tree.TypeFile, Mode: 0o644, MTime: 1, Size: uint64(s.size), Inode: uint64(i + 1), CTime: 1}}
		if err := fn(it); err != nil {
			return err
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func (s *genSource) Open(_ context.Context, it *backup.Item) (io.ReadCloser, error) {
	i, err := strconv.Atoi(it.Path[len(it.Path)-8:])
	if err != nil {
		return nil, err
	}
	return &genReader{left: s.size, seed: uint64(i)}, nil
}

// genReader yields size bytes that differ for every seed.
type genReader struct {
	left int
	seed uint64
	pos  uint64
}

func (r *genReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	var w [8]byte
	for i := 0; i < n; i++ {
		if r.pos%8 == 0 {
			binary.LittleEndian.PutUint64(w[:], (r.seed+1)*0x9E3779B97F4A7C15^(r.pos/8)*0xBF58476D1CE4E5B9)
		}
		p[i] = w[r.pos%8]
		r.pos++
	}
	r.left -= n
	return n, nil
}

func (r *genReader) Close() error { return nil }

// peakHeap samples the live heap (as of the last GC) until stop is called
// and returns its maximum. With MEMPROF=FILE in the environment it writes
// a heap profile to FILE at each new maximum (go tool pprof FILE shows what
// was live at the peak).
func peakHeap() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak {
				peak = v
				if f := os.Getenv("MEMPROF"); f != "" {
					w, _ := os.Create(f)
					pprof.Lookup("heap").WriteTo(w, 0)
					w.Close()
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		runtime.GC() // the last GC's figure covers the end of the run
		close(done)
		wg.Wait()
		return peak
	}
}

// allocated returns the bytes the process has allocated on the heap so far.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// baseline collects garbage and returns the live heap.
func baseline() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapGrowth backs up a generated source of n objects of size bytes into a
// new folder store, then backs it up again unchanged from a freshly opened
// store (its index loaded from the index files), twice, and returns how
// far the live heap rose above the baseline during the first backup and
// during the lower of the two re-backups, and the bytes the first backup
// allocated.
func heapGrowth(t *testing.T, n, size int) (first, again, alloc uint64) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("memory test")
	kdf := crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}
	// Packs of 1 MiB: the data pack buffers (uploaders+1 of pack_size,
	// allocated as needed) would otherwise move the peak in steps of 16 MiB.
	r, err := engine.Create(ctx, st, pass, engine.CreateOptions{KDF: kdf, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src := &genSource{n: n, size: size}
	opt := backup.Options{Concurrency: 2, Host: "test"}

	useSmallMemtable(t, r)
	b0 := baseline()
	a0 := allocated()
	stop := peakHeap()
	res, err := backup.Run(ctx, r, src, opt)
	alloc = allocated() - a0
	p := stop()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Snapshot.Stats.Files; got != uint64(n) {
		t.Fatalf("first backup: %d files, want %d", got, n)
	}
	first = p - min(p, b0)
	r.Index.Close()

	// The re-backup's peak moves with what the GC finds live at its
	// marks (zstd encoders, an index file being read): the lower of two
	// runs is kept.
	again = ^uint64(0)
	for range 2 {
		r, err = engine.Open(ctx, st, pass)
		if err != nil {
			t.Fatal(err)
		}
		useSmallMemtable(t, r)
		b0 = baseline() // before Run loads the index: reading it is measured too
		stop = peakHeap()
		res, err = backup.Run(ctx, r, src, opt)
		p = stop()
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Snapshot.Stats.Unchanged; got != uint64(n) {
			t.Fatalf("re-backup: %d files unchanged, want %d", got, n)
		}
		again = min(again, p-min(p, b0))
		r.Index.Close()
	}
	return first, again, alloc
}

// memTestMemtable is the index memtable of the test: small, so that it is
// full (bounded, not growing) at both sizes the test compares.
const memTestMemtable = 1024

func useSmallMemtable(t *testing.T, r *engine.Repo) {
	x, err := index.Open(index.Options{Memtable: memTestMemtable})
	if err != nil {
		t.Fatal(err)
	}
	r.Index.Close()
	r.Index = x
}

// TestBackupMemoryPerObject is the small-scale check that a backup's memory
// does not grow with the number of objects: it backs up, then re-backs up
// unchanged, nSmall and nLarge generated objects of the same total size
// (one tiny blob each) and compares the peak live heap above the baseline.
//
// What may grow per object is the compact index's RAM: a table of id
// prefixes (2.25 bytes a blob) plus the pack table, about 4.7 bytes per blob
// (engine/index, TestRAMPerBlob). Everything else a backup holds (the walk
// window, the open directories, the packs being filled and their blob
// lists, the index memtable, the locations of packs not yet in an index
// file, the index files being read, ...) is bounded by constants.
// nSmall is past the largest of those bounds (an index file every 50,000
// blobs; index files read within a 4 MiB budget; the memtable is made
// small here; packs of 1 MiB), so between the two sizes mostly the index
// should grow: ~5 bytes an object. Measured: first backup -7 to 11 bytes
// an object, re-backup 26-28 (of which the peak's timing against the GC's
// marks, an index file of 50,000 blobs being read or not, is most). The
// bound, 48 bytes an object, leaves room for that and still fails a backup
// that keeps anything of a path's size per object: with every walked path
// kept in a slice the first backup measured 109 bytes an object and the
// re-backup 65; with index files read 8 at a time whatever their size
// (before indexLoadBudget), the re-backup measured 76.
//
// It also bounds what the first backup allocates per object, garbage
// included: the heap's high point is the live heap plus what is allocated
// until the next collection, and garbage per object makes a backup of many
// small objects collect more often for the same bytes. With a BLAKE3
// hasher made for every blob id (7 KiB each, and the index's memtable made
// again at each flush) it measured 16,589 bytes an object; without, 3,063
// (the test's own paths and items, nodes, index entries, the runs written).
// Bound: 6 KiB.
func TestBackupMemoryPerObject(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: backs up 270,000 objects and re-backs them up twice")
	}
	const (
		total  = 8 << 20
		nSmall = 60_000
		nLarge = 210_000
		bound  = 48.0
		// allocBound bounds the bytes allocated per object (above).
		allocBound = 6 << 10
	)
	old := debug.SetGCPercent(25) // frequent GCs: the live-heap samples see the peaks
	defer debug.SetGCPercent(old)
	s1, a1, al1 := heapGrowth(t, nSmall, total/nSmall)
	s2, a2, al2 := heapGrowth(t, nLarge, total/nLarge)
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(nLarge-nSmall) }
	t.Logf("first backup: %d objects +%.1f MiB, %d objects +%.1f MiB: %.1f bytes/object",
		nSmall, float64(s1)/(1<<20), nLarge, float64(s2)/(1<<20), per(s1, s2))
	t.Logf("unchanged re-backup: %d objects +%.1f MiB, %d objects +%.1f MiB: %.1f bytes/object",
		nSmall, float64(a1)/(1<<20), nLarge, float64(a2)/(1<<20), per(a1, a2))
	if p := per(s1, s2); p > bound {
		t.Errorf("first backup: the heap grows by %.1f bytes per object (bound %.0f)", p, bound)
	}
	if p := per(a1, a2); p > bound {
		t.Errorf("unchanged re-backup: the heap grows by %.1f bytes per object (bound %.0f)", p, bound)
	}
	t.Logf("first backup allocated %.1f MiB for %d objects, %.1f MiB for %d: %.0f bytes/object",
		float64(al1)/(1<<20), nSmall, float64(al2)/(1<<20), nLarge, per(al1, al2))
	if p := per(al1, al2); p > allocBound {
		t.Errorf("first backup: allocates %.0f bytes per object (bound %d)", p, allocBound)
	}
}

// BenchmarkBackupObjects backs up 512 MiB of generated objects, as 100,000
// and as 1,000,000 objects, into a new folder store with the defaults of
// cmd/coffer (GOGC 50, the default memtable and pack size), and reports
// the peak live heap above the baseline: how far a first backup's memory
// moves with the number of objects (docs/PERFORMANCE.md, "flat memory").
//
//	go test ./engine/backup -run '^$' -bench BackupObjects -benchtime 1x
func BenchmarkBackupObjects(b *testing.B) {
	const total = 512 << 20
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint("n=", n), func(b *testing.B) {
			old := debug.SetGCPercent(50)
			defer debug.SetGCPercent(old)
			b.SetBytes(total)
			var peak uint64
			for range b.N {
				ctx := context.Background()
				st, err := store.NewFolder(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				r, err := engine.Create(ctx, st, []byte("bench"), engine.CreateOptions{KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}})
				if err != nil {
					b.Fatal(err)
				}
				b0 := baseline()
				stop := peakHeap()
				_, err = backup.Run(ctx, r, &genSource{n: n, size: total / n}, backup.Options{Host: "bench"})
				p := stop()
				if err != nil {
					b.Fatal(err)
				}
				r.Index.Close()
				peak = max(peak, p-min(p, b0))
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-live-MiB")
		})
	}
}
