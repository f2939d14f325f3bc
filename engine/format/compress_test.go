package format

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/coffer-backup/coffer/internal/corpus"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Level
	}{
		{"off", LevelOff}, {"fastest", LevelFastest}, {"default", LevelDefault}, {"better", LevelBetter},
		{"Better", LevelBetter}, {"OFF", LevelOff},
	} {
		got, err := ParseLevel(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, err := ParseLevel(got.String()); err != nil || back != got {
			t.Errorf("%q: String %q does not parse back: %v, %v", tc.in, got.String(), back, err)
		}
	}
	for _, bad := range []string{"", "fast", "max", "zstd", "9", "default "} {
		_, err := ParseLevel(bad)
		if err == nil {
			t.Errorf("ParseLevel(%q) accepted", bad)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, strconv.Quote(bad)) || !strings.Contains(msg, "off, fastest, default, better") {
			t.Errorf("ParseLevel(%q): %q does not name the value and the valid ones", bad, msg)
		}
	}
	// The zero value is the default, and the default is zstd's.
	var zero Level
	if zero != LevelDefault || LevelDefault.zstd() != zstd.SpeedDefault {
		t.Errorf("the zero Level is %v, the default level is zstd's %v", zero, LevelDefault.zstd())
	}
}

// TestLevelsRoundTrip: every level stores what Decompress gives back byte
// for byte, reusing dst, on compressible, random, tiny and mixed blobs;
// off stores everything raw; random bytes are stored raw at every level.
func TestLevelsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	mixed := append(append(append([]byte(nil), corpus.Seq(20000)...), random[:300<<10]...), corpus.Seq(20000)...)
	blobs := map[string][]byte{
		"seq": corpus.Seq(100000), "random": random, "empty": nil, "tiny": []byte("hello"), "mixed": mixed,
		"zeros": make([]byte, 3<<20), "random-16k": random[:16<<10], "text-63": bytes.Repeat([]byte("a"), 63),
	}
	for _, l := range []Level{LevelDefault, LevelOff, LevelFastest, LevelBetter} {
		var dst, out []byte
		for name, raw := range blobs {
			stored, c, scratch := Compress(dst, raw, l)
			dst = scratch
			if l == LevelOff && c != CompNone {
				t.Errorf("%s at off: stored as %d", name, c)
			}
			if strings.HasPrefix(name, "random") && c != CompNone {
				t.Errorf("%s at %s: random bytes stored compressed", name, l)
			}
			if c == CompNone && !bytes.Equal(stored, raw) {
				t.Errorf("%s at %s: raw form differs", name, l)
			}
			var err error
			out, err = Decompress(out[:0], stored, c, len(raw))
			if err != nil {
				t.Fatalf("%s at %s: %v", name, l, err)
			}
			if !bytes.Equal(out, raw) {
				t.Fatalf("%s at %s: round trip differs", name, l)
			}
			compressible := name == "zeros" || name == "seq" || name == "mixed"
			if l != LevelOff && compressible && c != CompZstd {
				t.Errorf("%s at %s: a compressible blob stored raw", name, l)
			}
		}
	}
}

// TestSeqCompresses is the case of issue 10: `seq 1 100000` (the digits
// of logs and CSV) was stored raw at SpeedFastest. The default level
// must shrink it at least 8× (measured: 12.4×; restic 12.3×).
func TestSeqCompresses(t *testing.T) {
	raw := corpus.Seq(100000)
	stored, c, _ := Compress(nil, raw, LevelDefault)
	ratio := float64(len(raw)) / float64(len(stored))
	t.Logf("seq 1 100000: %d bytes stored as %d (%.1f×), compression %d", len(raw), len(stored), ratio, c)
	if c != CompZstd || ratio < 8 {
		t.Errorf("seq 1 100000: %d bytes stored as %d (%.1f×) with the default level, want at least 8×", len(raw), len(stored), ratio)
	}
}

// The levels write plain zstd frames: a frame written at one level reads
// with the same decoder as any other (and as the frames of stores written
// before levels existed: TestStoreFormatV1Fixture in engine).
func TestLevelsShareTheDecoder(t *testing.T) {
	raw := corpus.Seq(50000)
	var frames [][]byte
	for _, l := range []Level{LevelFastest, LevelDefault, LevelBetter} {
		stored, c, _ := Compress(nil, raw, l)
		if c == CompZstd {
			frames = append(frames, append([]byte(nil), stored...))
		}
	}
	if len(frames) < 2 {
		t.Fatalf("only %d levels compressed seq 1 50000", len(frames))
	}
	for i, f := range frames {
		out, err := Decompress(nil, f, CompZstd, len(raw))
		if err != nil || !bytes.Equal(out, raw) {
			t.Errorf("frame %d: %v", i, err)
		}
	}
}

// The entropy pre-check runs on every blob of 16 KiB or more: it must
// not allocate.
func TestIncompressibleAllocatesNothing(t *testing.T) {
	blob := corpus.Seq(200000)
	if n := testing.AllocsPerRun(10, func() { Incompressible(blob) }); n != 0 {
		t.Errorf("Incompressible: %v allocations a blob", n)
	}
}
