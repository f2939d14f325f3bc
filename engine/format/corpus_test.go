package format

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/coffer-backup/coffer/internal/corpus"
)

// The corpus measurements: every class of internal/corpus cut into blobs
// the way a backup cuts files (the average chunk is 1 MiB; a smaller file
// is one blob). COFFER_CORPUS=DIR (written by scripts/corpus) measures
// that folder instead of a small in-memory corpus.

const blobSize = 1 << 20

type corpusClass struct {
	class corpus.Class
	blobs [][]byte
	bytes int64
}

var (
	corpusOnce sync.Once
	corpusData []corpusClass
	corpusErr  error
)

// testCorpus returns the blobs of every class; perClass bounds the
// in-memory corpus (COFFER_CORPUS overrides it).
func testCorpus(tb testing.TB, perClass int) []corpusClass {
	tb.Helper()
	corpusOnce.Do(func() {
		dir := os.Getenv("COFFER_CORPUS")
		for _, c := range corpus.Classes {
			var files [][]byte
			if dir != "" {
				files, corpusErr = readClass(filepath.Join(dir, string(c)))
			} else {
				var fs []corpus.File
				fs, corpusErr = corpus.Generate(c, 1, perClass)
				for _, f := range fs {
					files = append(files, f.Data)
				}
			}
			if corpusErr != nil {
				return
			}
			cc := corpusClass{class: c}
			for _, f := range files {
				for len(f) > 0 {
					n := min(len(f), blobSize)
					cc.blobs = append(cc.blobs, f[:n])
					cc.bytes += int64(n)
					f = f[n:]
				}
			}
			corpusData = append(corpusData, cc)
		}
	})
	if corpusErr != nil {
		tb.Fatal(corpusErr)
	}
	return corpusData
}

func readClass(dir string) ([][]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return err
	})
	sort.Strings(paths)
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, err
}

// storedSize is what compress stores for the blobs, without the entropy
// pre-check when noCheck, storing a frame that saves 1/saving.
func storedSize(blobs [][]byte, enc *zstd.Encoder, noCheck bool, saving int) (stored int64) {
	var dst []byte
	for _, b := range blobs {
		var s []byte
		s, _, dst = compress(enc, dst, b, !noCheck, saving)
		stored += int64(len(s))
	}
	return stored
}

// skipped counts the blobs the pre-check stores raw without trying.
func skipped(blobs [][]byte) (n int) {
	for _, b := range blobs {
		if len(b) >= 64 && Incompressible(b) {
			n++
		}
	}
	return n
}

func newEncoder(tb testing.TB, l Level, window int) *zstd.Encoder {
	e, err := zstd.NewWriter(nil, encoderOptions(l, 1, window)...)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// BenchmarkCorpus: per class, level, window and pre-check, MB/s of one
// core and the ratio (raw/stored) as a metric.
//
//	COFFER_CORPUS=/dev/shm/corpus go test ./engine/format -run '^$' -bench Corpus -benchtime 1x
func BenchmarkCorpus(b *testing.B) {
	classes := testCorpus(b, 4<<20)
	type cfg struct {
		level   Level
		noCheck bool
		before  bool // as before issue 10: literals not always entropy-coded, 1/32 to save
	}
	cfgs := []cfg{
		{LevelFastest, true, true},
		{LevelFastest, true, false},
		{LevelFastest, false, false},
		{LevelDefault, true, false},
		{LevelDefault, false, false},
		{LevelBetter, true, false},
		{LevelBetter, false, false},
	}
	for _, cc := range classes {
		for _, c := range cfgs {
			check := "precheck"
			if c.noCheck {
				check = "nocheck"
			}
			name := fmt.Sprintf("%s/%s/%s", cc.class, c.level, check)
			if c.before {
				name = fmt.Sprintf("%s/before", cc.class)
			}
			b.Run(name, func(b *testing.B) {
				enc := newEncoder(b, c.level, encoderWindow)
				saving := minSaving
				if c.before {
					enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
						zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true), zstd.WithWindowSize(encoderWindow))
					saving = 32
				}
				defer enc.Close()
				b.SetBytes(cc.bytes)
				var stored int64
				for b.Loop() {
					stored = storedSize(cc.blobs, enc, c.noCheck, saving)
				}
				b.ReportMetric(float64(cc.bytes)/float64(stored), "ratio")
				n := 0
				if !c.noCheck {
					n = skipped(cc.blobs) // outside the timed loop
				}
				b.ReportMetric(float64(n), "skipped")
			})
		}
	}
}

// BenchmarkIncompressible is the cost of the pre-check itself.
func BenchmarkIncompressible(b *testing.B) {
	classes := testCorpus(b, 4<<20)
	for _, cc := range classes {
		b.Run(string(cc.class), func(b *testing.B) {
			b.SetBytes(cc.bytes)
			for b.Loop() {
				for _, blob := range cc.blobs {
					Incompressible(blob)
				}
			}
		})
	}
}

// TestPrecheckKeepsRatio: on every class of the corpus, the entropy
// pre-check costs at most 0.5% of the stored size at every level, skips
// 90% of the JPEG and gzip blobs and none of the compressible classes';
// and each class compresses at least as well as stated.
func TestPrecheckKeepsRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 28 MiB several times")
	}
	// Ratios at the default level on the in-memory corpus, with headroom
	// (measured: see docs/PERFORMANCE.md).
	minRatio := map[corpus.Class]float64{
		corpus.JSONLogs: 3, corpus.CSV: 3, corpus.Source: 2.8, corpus.Text: 1.6,
		corpus.JPEG: 1, corpus.Gzip: 1, corpus.Columnar: 1.01,
	}
	classes := testCorpus(t, 4<<20)
	for _, cc := range classes {
		for _, l := range []Level{LevelFastest, LevelDefault, LevelBetter} {
			enc := newEncoder(t, l, encoderWindow)
			with := storedSize(cc.blobs, enc, false, minSaving)
			without := storedSize(cc.blobs, enc, true, minSaving)
			skipped := skipped(cc.blobs)
			enc.Close()
			if float64(with) > float64(without)*1.005 {
				t.Errorf("%s at %s: stored %d bytes with the pre-check, %d without (> 0.5%% lost)", cc.class, l, with, without)
			}
			if cc.class.Compressible() && skipped > 0 {
				t.Errorf("%s at %s: the pre-check skipped %d of %d blobs of a compressible class", cc.class, l, skipped, len(cc.blobs))
			}
			big := 0
			for _, b := range cc.blobs {
				if len(b) >= precheckMin {
					big++
				}
			}
			// JPEG and gzip look random; parquet's zstd pages (7.4-7.8
			// bits a byte) are compressed, and shrink by 0.1%.
			if (cc.class == corpus.JPEG || cc.class == corpus.Gzip) && skipped < big*9/10 {
				t.Errorf("%s at %s: the pre-check skipped %d of the %d blobs of 16 KiB or more, want 90%%", cc.class, l, skipped, big)
			}
			ratio := float64(cc.bytes) / float64(with)
			t.Logf("%-9s %-8s ratio %.3f, %d of %d blobs skipped", cc.class, l, ratio, skipped, len(cc.blobs))
			if l == LevelDefault && ratio < minRatio[cc.class] {
				t.Errorf("%s at %s: ratio %.3f, want at least %.2f", cc.class, l, ratio, minRatio[cc.class])
			}
		}
	}
}

// BenchmarkEncoderMemory: the heap an encoder of each level holds once n
// blobs of 1 MiB were compressed at once (n = 2, this machine's cores,
// and 16), reported as MiB per encoder state.
//
//	go test ./engine/format -run '^$' -bench EncoderMemory -benchtime 1x
func BenchmarkEncoderMemory(b *testing.B) {
	blob := corpus.Seq(200000)[:1<<20]
	for _, l := range []Level{LevelFastest, LevelDefault, LevelBetter} {
		for _, n := range []int{2, 16} {
			b.Run(fmt.Sprintf("%s/n%d", l, n), func(b *testing.B) {
				for b.Loop() {
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					e, _ := zstd.NewWriter(nil, encoderOptions(l, n, encoderWindow)...)
					var wg sync.WaitGroup
					for range n {
						wg.Add(1)
						go func() {
							defer wg.Done()
							e.EncodeAll(blob, make([]byte, 0, len(blob)))
						}()
					}
					wg.Wait()
					runtime.GC()
					runtime.ReadMemStats(&after)
					b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n)/(1<<20), "MiB/encoder")
					runtime.KeepAlive(e)
					e.Close()
				}
			})
		}
	}
}
