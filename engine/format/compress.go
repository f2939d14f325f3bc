package format

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Compression says how a blob's plaintext is stored before encryption.
type Compression uint8

const (
	CompNone Compression = 0 // stored as is
	CompZstd Compression = 1 // zstd frame
)

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdInit() {
	zstdOnce.Do(func() {
		var err error
		n := runtime.GOMAXPROCS(0)
		// A 1 MiB window (the average chunk) instead of 8 MiB: each
		// encoder keeps one window of history, and chunks rarely repeat
		// themselves further apart (see docs/PERFORMANCE.md).
		zstdEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(n), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true),
			zstd.WithWindowSize(1<<20))
		if err != nil {
			panic(err)
		}
		zstdDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(n), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			panic(err)
		}
	})
}

// compress returns the stored form of raw and says which it is: a zstd
// frame (appended to dst) when that saves at least 1/32 of the size, raw
// itself otherwise. dst, possibly grown, is returned for reuse.
func Compress(dst, raw []byte) (stored []byte, c Compression, scratch []byte) {
	if len(raw) < 64 {
		return raw, CompNone, dst
	}
	zstdInit()
	out := zstdEnc.EncodeAll(raw, dst[:0])
	if len(out) < len(raw)-len(raw)/32 {
		return out, CompZstd, out
	}
	return raw, CompNone, out
}

// decompress appends the plaintext of a stored blob to dst; rawLen is the
// plaintext length the index promises, and any other length is an error.
func Decompress(dst, stored []byte, c Compression, rawLen int) ([]byte, error) {
	switch c {
	case CompNone:
		if len(stored) != rawLen {
			return nil, fmt.Errorf("%w: stored blob is %d bytes, index says %d", ErrCorrupt, len(stored), rawLen)
		}
		return append(dst, stored...), nil
	case CompZstd:
		zstdInit()
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
		out, err := zstdDec.DecodeAll(stored, dst)
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
