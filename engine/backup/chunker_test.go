package backup

import (
	"bytes"
	"io"
	"math/rand"
	"testing"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
)

// shortReader returns at most a random few bytes a Read, and sometimes
// none, as a network body may.
type shortReader struct {
	r   io.Reader
	rnd *rand.Rand
}

func (s *shortReader) Read(p []byte) (int, error) {
	if s.rnd.Intn(8) == 0 {
		return 0, nil
	}
	return s.r.Read(p[:min(len(p), 1+s.rnd.Intn(3<<20))])
}

// chunkData is random bytes with runs of zeros and repeats, so that
// chunks of every length up to max occur.
func chunkData(rnd *rand.Rand, size int) []byte {
	p := make([]byte, size)
	rnd.Read(p)
	for i := 0; i < 4; i++ {
		off, n := rnd.Intn(size), rnd.Intn(size/3)
		clear(p[off:min(size, off+n)])
	}
	return p
}

// TestChunkerMatchesLibrary: the backup's chunker cuts every stream
// where go-cdc-chunkers' FastCDC v1.0.0 does, keyed and not, for the
// default sizes, small sizes and the library's own defaults, through
// short reads and stream lengths around the sizes.
func TestChunkerMatchesLibrary(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	key := bytes.Repeat([]byte{7}, 32)
	cases := []struct{ min, normal, max, size int }{
		{512 << 10, 1 << 20, 8 << 20, 40 << 20},
		{512 << 10, 1 << 20, 8 << 20, 8<<20 + 1},
		{64, 256, 1024, 200 << 10},
		{1 << 10, 4 << 10, 16 << 10, 1 << 20},
		{2 << 10, 8 << 10, 64 << 10, 2 << 20},
	}
	for _, tc := range cases {
		for _, k := range [][]byte{nil, key} {
			data := chunkData(rnd, tc.size)
			for _, size := range []int{0, 1, tc.min, tc.min + 1, tc.normal, tc.max - 1, tc.max, tc.max + 1, tc.size} {
				d := data[:min(size, len(data))]
				lib, err := chunkers.NewChunker("fastcdc-v1.0.0", bytes.NewReader(d), &chunkers.ChunkerOpts{
					MinSize: tc.min, NormalSize: tc.normal, MaxSize: tc.max, Key: k})
				if err != nil {
					t.Fatal(err)
				}
				var want []int
				for {
					c, err := lib.Next()
					if len(c) > 0 {
						want = append(want, len(c))
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				c, err := newCDC(tc.min, tc.normal, tc.max, k)
				if err != nil {
					t.Fatal(err)
				}
				s := c.scanner(&shortReader{bytes.NewReader(d), rnd}, make([]byte, tc.max))
				var got []int
				var joined []byte
				for {
					c, err := s.next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, len(c))
					joined = append(joined, c...)
				}
				if !bytes.Equal(joined, d) {
					t.Fatalf("%+v size %d: chunks do not rebuild the stream", tc, size)
				}
				if len(got) != len(want) {
					t.Fatalf("%+v size %d key %v: %d chunks, library %d", tc, size, k != nil, len(got), len(want))
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("%+v size %d key %v: chunk %d is %d bytes, library %d", tc, size, k != nil, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkChunker cuts 64 MiB of random bytes through the library's
// chunker and the backup's, each with a window of max bytes (the
// backup's memory bound), at the store's default sizes.
func BenchmarkChunker(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.New(rand.NewSource(1)).Read(data)
	key := bytes.Repeat([]byte{7}, 32)
	const mn, nm, mx = 512 << 10, 1 << 20, 8 << 20
	buf := make([]byte, mx)
	b.Run("library", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			c, err := chunkers.NewChunkerBuffer("fastcdc-v1.0.0", bytes.NewReader(data),
				&chunkers.ChunkerOpts{MinSize: mn, NormalSize: nm, MaxSize: mx, Key: key}, buf)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := c.Next(); err != nil {
					break
				}
			}
		}
	})
	b.Run("coffer", func(b *testing.B) {
		c, err := newCDC(mn, nm, mx, key)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		for range b.N {
			s := c.scanner(bytes.NewReader(data), buf)
			for {
				if _, err := s.next(); err != nil {
					break
				}
			}
		}
	})
}
