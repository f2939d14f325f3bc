package format

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Compression says how a blob's plaintext is stored before encryption.
type Compression uint8

const (
	CompNone Compression = 0 // stored as is
	CompZstd Compression = 1 // zstd frame
)

// Level is how hard a writer compresses. It is a writer's setting, not
// part of the format: every level writes a plain zstd frame (or the raw
// bytes), and readers decode them all alike. The zero value is
// LevelDefault.
type Level uint8

const (
	// LevelDefault is zstd's default level, the one chosen by measurement
	// on the corpus of internal/corpus (docs/PERFORMANCE.md, "Issue 10:
	// compression"), and what a store uses unless told otherwise.
	LevelDefault Level = iota
	LevelOff           // store every blob raw
	LevelFastest       // zstd SpeedFastest
	LevelBetter        // zstd SpeedBetterCompression
)

// levels are the option values of the levels, in order of effort: the
// one table ParseLevel, String, LevelNames and the encoders read.
var levels = [...]struct {
	name  string
	level Level
	zstd  zstd.EncoderLevel
}{
	{"off", LevelOff, 0},
	{"fastest", LevelFastest, zstd.SpeedFastest},
	{"default", LevelDefault, zstd.SpeedDefault},
	{"better", LevelBetter, zstd.SpeedBetterCompression},
}

// LevelNames are the values ParseLevel accepts, in order of effort.
var LevelNames = func() []string {
	var names []string
	for _, x := range levels {
		names = append(names, x.name)
	}
	return names
}()

// ParseLevel reads a compression option value: off, fastest, default or
// better (case does not matter).
func ParseLevel(s string) (Level, error) {
	for _, x := range levels {
		if strings.EqualFold(s, x.name) {
			return x.level, nil
		}
	}
	return 0, fmt.Errorf("compression %q: want one of %s", s, strings.Join(LevelNames, ", "))
}

// String returns the option value of a level.
func (l Level) String() string {
	for _, x := range levels {
		if x.level == l {
			return x.name
		}
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

func (l Level) zstd() zstd.EncoderLevel {
	for _, x := range levels {
		if x.level == l {
			return x.zstd
		}
	}
	return zstd.SpeedDefault
}

// encoderWindow is the zstd window of every level: 1 MiB (the average
// chunk) instead of 8 MiB. Each concurrent encoder keeps a window of
// history, and chunks rarely repeat themselves further apart; a larger
// window gained under 0.5% on the corpus (docs/PERFORMANCE.md).
const encoderWindow = 1 << 20

// encoderOptions are the zstd settings of a level. Literals are always
// entropy-coded: klauspost skips that at its faster levels when a block
// finds no matches, to fail fast on random data, which the entropy
// pre-check (Incompressible) already keeps away. Without it, fastest
// stored `seq 1 100000` raw and default left 1.7% on parquet-like zstd
// pages that restic saves (docs/PERFORMANCE.md).
func encoderOptions(l Level, concurrency, window int) []zstd.EOption {
	return []zstd.EOption{zstd.WithEncoderLevel(l.zstd()), zstd.WithEncoderConcurrency(concurrency),
		zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true), zstd.WithWindowSize(window),
		zstd.WithAllLitEntropyCompression(true)}
}

var (
	zstdEncOnce [len(levels)]sync.Once // by Level
	zstdEnc     [len(levels)]*zstd.Encoder
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
)

func encoder(l Level) *zstd.Encoder {
	zstdEncOnce[l].Do(func() {
		var err error
		// One encoder state per core: EncodeAll waits for a free one, so
		// memory is cores × (tables of the level + window), whatever the
		// number of blob workers.
		zstdEnc[l], err = zstd.NewWriter(nil, encoderOptions(l, runtime.GOMAXPROCS(0), encoderWindow)...)
		if err != nil {
			panic(err)
		}
	})
	return zstdEnc[l]
}

// objectWindow is the window of the encoder of metadata objects (index
// files, snapshots): an index file is mostly random blob ids, with nothing
// to match far back.
const objectWindow = 256 << 10

// objEncs holds metadata encoders between uses, by level: a pool, so that
// one not used for two collections is dropped rather than kept.
var objEncs [len(levels)]sync.Pool

// objectEncoder is an encoder of metadata objects: one state, a small
// window and history, not kept while unused (put it back in objEncs[l]).
// Index files went through the blob encoder before: an input over one
// zstd block (128 KiB) gives each of its states a history of window +
// block, 2 MiB, kept for the process's life, and whether an index file was
// compressed at all depends on the entropy of its blob lengths, so a
// backup of a million tiny files kept 4 MiB more than one of 100,000
// larger files (docs/PERFORMANCE.md, session 5). Kept, this one still
// holds 2.7 MiB of tables and buffers.
func objectEncoder(l Level) *zstd.Encoder {
	if e, ok := objEncs[l].Get().(*zstd.Encoder); ok {
		return e
	}
	e, err := zstd.NewWriter(nil, append(encoderOptions(l, 1, objectWindow), zstd.WithLowerEncoderMem(true))...)
	if err != nil {
		panic(err)
	}
	return e
}

// CompressObject is Compress for a metadata object, with the encoder of
// objectEncoder: the same level and format, less memory.
func CompressObject(raw []byte, l Level) (stored []byte, c Compression) {
	if l == LevelOff {
		return raw, CompNone
	}
	e := objectEncoder(l)
	stored, c, _ = compress(e, nil, raw, true, minSaving)
	objEncs[l].Put(e)
	return stored, c
}

func decoder() *zstd.Decoder {
	zstdDecOnce.Do(func() {
		var err error
		zstdDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			panic(err)
		}
	})
	return zstdDec
}

// Compress returns the stored form of raw and says which it is: a zstd
// frame (appended to dst) when that saves at least 1/256 of the size
// (minSaving), raw itself otherwise. A blob whose bytes look random
// (Incompressible) is stored raw without trying. dst, possibly grown, is
// returned for reuse.
func Compress(dst, raw []byte, l Level) (stored []byte, c Compression, scratch []byte) {
	if l == LevelOff {
		return raw, CompNone, dst
	}
	return compress(encoder(l), dst, raw, true, minSaving)
}

// compress is Compress with the encoder, the pre-check and the saving
// (1/saving) as parameters, which the corpus measurements vary.
func compress(enc *zstd.Encoder, dst, raw []byte, precheck bool, saving int) (stored []byte, c Compression, scratch []byte) {
	if len(raw) < 64 || precheck && Incompressible(raw) {
		return raw, CompNone, dst
	}
	out := enc.EncodeAll(raw, dst[:0])
	if len(out) < len(raw)-len(raw)/saving {
		return out, CompZstd, out
	}
	return raw, CompNone, out
}

// minSaving: a zstd frame is stored when it is at least 1/minSaving
// smaller than the raw blob. Already-compressed columnar files (parquet's
// zstd pages) shrink by 0.5-3% a blob: 1/32 stored many raw where restic
// saves that much; decoding a frame costs little next to fetching it.
const minSaving = 256

// Entropy pre-check. Already-compressed content (JPEG, gzip, zstd pages,
// encrypted files) is most of the bytes of many buckets, and zstd's
// SpeedDefault spends real time failing on it. Its bytes are close to
// uniform: the order-0 entropy of a sample shows it for a fraction of the
// cost of compressing. Only large blobs are sampled; the threshold is set
// between the compressible classes of the corpus (at most 5.6 bits per
// byte) and the JPEG and gzip ones (7.86 and more); parquet-like zstd
// pages (7.4-7.85) are still compressed, as they shrink by 2%. See
// TestPrecheckKeepsRatio.
const (
	precheckMin     = 16 << 10 // smaller blobs are just compressed
	precheckSamples = 8        // spread over the blob
	precheckSample  = 2 << 10  // bytes each
	// precheckBits: above this many bits per byte a sample counts as
	// random. 16 KiB of uniform bytes measure about 7.99, gzip 7.98,
	// JPEG 7.88-7.95; text 4.1, JSON logs 5, source code 4.8-5.6, CSV
	// 3.4-4.5, x86 code 6-6.5.
	precheckBits = 7.85
)

// Incompressible reports whether raw looks like random bytes: it is at
// least 16 KiB and the order-0 entropy of 8 samples of 2 KiB, spread over
// it, is above 7.85 bits per byte. A blob that repeats itself at long
// distances with random content in between can be misjudged; that costs
// ratio, never correctness.
func Incompressible(raw []byte) bool {
	if len(raw) < precheckMin {
		return false
	}
	var hist [256]uint32
	step := (len(raw) - precheckSample) / (precheckSamples - 1)
	for i := range precheckSamples {
		for _, b := range raw[i*step : i*step+precheckSample] {
			hist[b]++
		}
	}
	return entropy(&hist, precheckSamples*precheckSample) > precheckBits
}

func entropy(hist *[256]uint32, n int) float64 {
	var h float64
	inv := 1 / float64(n)
	for _, c := range hist {
		if c != 0 {
			p := float64(c) * inv
			h -= p * math.Log2(p)
		}
	}
	return h
}

// Decompress appends the plaintext of a stored blob to dst; rawLen is the
// plaintext length the index promises, and any other length is an error.
func Decompress(dst, stored []byte, c Compression, rawLen int) ([]byte, error) {
	switch c {
	case CompNone:
		if len(stored) != rawLen {
			return nil, fmt.Errorf("%w: stored blob is %d bytes, index says %d", ErrCorrupt, len(stored), rawLen)
		}
		return append(dst, stored...), nil
	case CompZstd:
		// Preallocate what the header promises, but no more than the input
		// could plausibly expand to: a forged length must not make us
		// allocate a gigabyte before the output proves it.
		want := min(rawLen, 64*len(stored)+64<<10)
		if cap(dst)-len(dst) < want {
			nd := make([]byte, len(dst), len(dst)+want)
			copy(nd, dst)
			dst = nd
		}
		start := len(dst)
		out, err := decoder().DecodeAll(stored, dst)
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		if len(out)-start != rawLen {
			return nil, fmt.Errorf("%w: blob decompressed to %d bytes, index says %d", ErrCorrupt, len(out)-start, rawLen)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown compression %d", ErrCorrupt, c)
}
