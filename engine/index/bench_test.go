package index

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// benchSizes are the store sizes the load benchmarks build: 1M blobs,
// and 10M when COFFER_BENCH_10M is set (it writes ~1 GiB of run files to
// TMPDIR and takes minutes).
func benchSizes() []int {
	if os.Getenv("COFFER_BENCH_10M") != "" {
		return []int{1 << 20, 10_000_000}
	}
	return []int{1 << 20}
}

// BenchmarkLoad builds the index of n blobs (packs of 16) from decoded
// index files, then opens it again from the cache folder; it reports
// heap bytes a blob and the time of each load. Reading, decrypting and
// decoding the index files themselves is not included.
func BenchmarkLoad(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprint("blobs=", n), func(b *testing.B) {
			dir := b.TempDir()
			o := Options{Dir: dir, Key: testKey(b), StoreID: "0123abcd"}
			var build, open, cpuBuild time.Duration
			var perBuild, perOpen float64
			for range b.N {
				os.RemoveAll(dir)
				start, c0 := time.Now(), cpuTime()
				x, per := bytesPerBlob(b, o, n)
				build += time.Since(start)
				cpuBuild += cpuTime() - c0
				perBuild = per
				x.Close()

				before := heapAlloc()
				start = time.Now()
				y, err := Open(o)
				if err != nil || y.Note() != "" || len(y.Covered()) == 0 {
					b.Fatalf("cache not used: %v %q", err, y.Note())
				}
				open += time.Since(start)
				perOpen = float64(int64(heapAlloc())-int64(before)) / float64(n)
				y.Close()
			}
			b.ReportMetric(build.Seconds()/float64(b.N), "s/build")
			b.ReportMetric(cpuBuild.Seconds()/float64(b.N), "cpu-s/build")
			b.ReportMetric(open.Seconds()/float64(b.N), "s/open-cache")
			b.ReportMetric(perBuild, "bytes/blob")
			b.ReportMetric(perOpen, "bytes/blob-cached")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkMapBaseline is the map this index replaces (the code before
// issue 10): heap bytes a blob for 1M blobs.
func BenchmarkMapBaseline(b *testing.B) {
	n := 1 << 20
	for range b.N {
		before := heapAlloc()
		type oldLoc struct {
			pack, offset, length, rawLen uint32
			kind                         format.BlobKind
			comp                         format.Compression
		}
		m := map[crypto.ID]oldLoc{}
		pos := map[crypto.ID]uint32{}
		var packs []crypto.ID
		synth(1, n, 16, func(ps []format.IndexPack) {
			for _, p := range ps {
				pos[p.ID] = uint32(len(packs))
				packs = append(packs, p.ID)
				for _, bl := range p.Blobs {
					m[bl.ID] = oldLoc{pack: pos[p.ID], offset: bl.Offset, length: bl.Length, rawLen: bl.RawLen}
				}
			}
		})
		b.ReportMetric(float64(int64(heapAlloc())-int64(before))/float64(n), "bytes/blob")
		if len(m) != n || len(pos) == 0 {
			b.Fatal(len(m))
		}
	}
	b.ReportMetric(0, "ns/op")
}

// benchIndex is a saved index of 1M blobs (one run), shared by the
// lookup benchmarks.
func benchIndex(b *testing.B, n int) *Master {
	x, _ := bytesPerBlob(b, Options{}, n)
	b.Cleanup(func() { x.Close() })
	return x
}

func lookupN() int {
	if s := os.Getenv("COFFER_BENCH_LOOKUP_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return 1 << 20
}

// BenchmarkHas asks for present ids (one record read each) and absent ids
// (RAM only), one goroutine.
func BenchmarkHas(b *testing.B) {
	n := lookupN()
	x := benchIndex(b, n)
	b.Run("hit", func(b *testing.B) {
		defer cpuPerOp(b)()
		for i := range b.N {
			if !x.Has(synthID(1, uint64(i%n)<<1)) {
				b.Fatal("miss")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		defer cpuPerOp(b)()
		for i := range b.N {
			if x.Has(synthID(2, uint64(i))) {
				b.Fatal("hit")
			}
		}
	})
	b.Run("lookup", func(b *testing.B) {
		defer cpuPerOp(b)()
		for i := range b.N {
			if _, _, ok := x.Lookup(synthID(1, uint64(i%n)<<1)); !ok {
				b.Fatal("miss")
			}
		}
	})
	// hit-repeat asks again and again for the same 1,000 present ids (a
	// blob shared by many files, a file read again through a mount).
	b.Run("hit-repeat", func(b *testing.B) {
		defer cpuPerOp(b)()
		for i := range b.N {
			if !x.Has(synthID(1, uint64(i%1000)<<1)) {
				b.Fatal("miss")
			}
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if !x.Has(synthID(1, uint64(i%n)<<1)) {
					b.Fatal("miss")
				}
				i += 7
			}
		})
	})
}

// cpuTime is the user and system CPU time of the process so far: on a
// busy machine it says more than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp reports the CPU time an op took (the process's, so run the
// lookup benchmarks alone): on a busy machine ns/op is mostly waiting.
func cpuPerOp(b *testing.B) func() {
	c0 := cpuTime()
	return func() { b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op") }
}
