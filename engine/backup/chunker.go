package backup

import (
	"encoding/binary"
	"errors"
	"io"
	"math"

	"github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
	"github.com/zeebo/blake3"
)

// cdc is the content-defined chunker of a store's parameters
// ("fastcdc-v1.0.0", keyed): the cut points of go-cdc-chunkers' FastCDC
// v1.0.0, computed here rather than through that package's Chunker,
// for two costs the backup of large files paid there
// (docs/PERFORMANCE.md, "first-backup CPU (session 4)"):
//
//   - its reader needs Max (8 MiB) contiguous bytes at every cut, so with
//     a window of Max bytes it slid the unread 7 MiB to the front after
//     every 1 MiB chunk: 7 bytes moved for each byte backed up. The
//     scanner below cuts inside the bytes it has when they are enough to
//     decide (at least lookahead bytes, and a cut found before their
//     end), and slides and refills only then: under one byte moved for
//     each byte backed up, with the same Max-byte window.
//   - its gear loop tests i == NormalSize at every byte; here the two
//     masks have a loop each.
//
// TestChunkerMatchesLibrary holds the cut points equal to the library's.
type cdc struct {
	g                *[256]uint64
	maskS, maskL     uint64
	min, normal, max int
	lookahead        int // bytes enough to try a cut before refilling
}

// normalLevel is FastCDC v1.0.0's normalisation level.
const normalLevel = 2

func newCDC(min, normal, max int, key []byte) (*cdc, error) {
	if min < 64 || normal <= min || max <= normal || normal&(normal-1) != 0 {
		return nil, errors.New("chunker: want 64 <= min < normal < max, normal a power of two")
	}
	g, err := gearTable(key)
	if err != nil {
		return nil, err
	}
	bits := int(math.Log2(float64(normal)))
	c := &cdc{g: g, maskS: spacedMask(bits + normalLevel), maskL: spacedMask(bits - normalLevel),
		min: min, normal: normal, max: max}
	if min == 2<<10 && normal == 8<<10 && max == 64<<10 { // the library's fixed masks for its defaults
		c.maskS, c.maskL = 0x0003590703530000, 0x0000d90003530000
	}
	c.lookahead = max / 2
	if c.lookahead <= normal {
		c.lookahead = normal + 1 // a cut found in more than normal bytes is final
	}
	return c, nil
}

// gearTable is fastcdc's table for key: the static table, or with a key
// the first 2 KiB of the keyed BLAKE3 XOF of the static table's entries.
func gearTable(key []byte) (*[256]uint64, error) {
	if key == nil {
		return &fastcdc.G, nil
	}
	h, err := blake3.NewKeyed(key)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	for i := range 256 {
		binary.LittleEndian.PutUint64(b[:], fastcdc.G[i])
		h.Write(b[:])
	}
	out := make([]byte, 8*256)
	if _, err := io.ReadFull(h.Digest(), out); err != nil {
		return nil, err
	}
	t := new([256]uint64)
	for i := range t {
		t[i] = binary.LittleEndian.Uint64(out[8*i:])
	}
	return t, nil
}

// spacedMask spreads ones 1 bits evenly over a 64-bit word from the top.
func spacedMask(ones int) uint64 {
	if ones >= 64 {
		return math.MaxUint64
	}
	if ones <= 0 {
		return 0
	}
	var m uint64
	step := 64 / ones
	for i := range ones {
		m |= 1 << (63 - i*step)
	}
	return m
}

// cut returns the length of the chunk that starts data, data being all
// the bytes left or at least max of them: FastCDC's Algorithm(data, len(data)).
func (c *cdc) cut(data []byte) int {
	n, normal := len(data), c.normal
	switch {
	case n <= c.min:
		return n
	case n >= c.max:
		n = c.max
	case n <= normal:
		normal = n
	}
	i, fp := gear(c.g, 0, c.maskS, data[c.min:normal])
	if i >= 0 {
		return c.min + i
	}
	if i, _ = gear(c.g, fp, c.maskL, data[normal:n]); i >= 0 {
		return normal + i
	}
	return n
}

// gear runs the gear hash fp over p and returns the index of the first
// byte after which fp&mask is 0 (-1 if none) and the hash after p. It
// takes two bytes a step: fp<<2 + (g[a]<<1 + g[b]) is two hash steps
// with one shift and one add on the dependency chain instead of two of
// each (the arithmetic is mod 2^64 either way).
func gear(g *[256]uint64, fp, mask uint64, p []byte) (int, uint64) {
	i := 0
	for ; i+1 < len(p); i += 2 {
		a, b := g[p[i]], g[p[i+1]]
		f1 := fp<<1 + a
		fp = fp<<2 + (a<<1 + b)
		if f1&mask == 0 {
			return i, f1
		}
		if fp&mask == 0 {
			return i + 1, fp
		}
	}
	if i < len(p) {
		fp = fp<<1 + g[p[i]]
		if fp&mask == 0 {
			return i, fp
		}
	}
	return -1, fp
}

// cdcScanner cuts a stream into chunks in a window buf of at least max
// bytes; the chunks alias buf until the next call.
type cdcScanner struct {
	c    *cdc
	src  io.Reader
	buf  []byte
	r, w int // unread bytes: buf[r:w]
	err  error
	last int // length of the chunk returned last
}

func (c *cdc) scanner(src io.Reader, buf []byte) *cdcScanner {
	return &cdcScanner{c: c, src: src, buf: buf}
}

// next returns the next chunk, or io.EOF after the last one.
func (s *cdcScanner) next() ([]byte, error) {
	s.r += s.last
	s.last = 0
	for {
		avail := s.w - s.r
		if s.err != nil && s.err != io.EOF {
			return nil, s.err
		}
		if s.err == io.EOF || avail >= s.c.max {
			if avail == 0 {
				return nil, io.EOF
			}
			s.last = s.c.cut(s.buf[s.r:s.w])
			return s.buf[s.r : s.r+s.last], nil
		}
		// Fewer than max bytes: a cut found before their end is the one
		// max bytes would give (the loop stops at the first), if the
		// bytes reach past normal (where the mask changes).
		if avail >= s.c.lookahead {
			if n := s.c.cut(s.buf[s.r:s.w]); n < avail {
				s.last = n
				return s.buf[s.r : s.r+n], nil
			}
		}
		s.fill()
	}
}

// fill slides the unread bytes to the front when the window's end is
// reached, then reads until the window is full or the source ends.
func (s *cdcScanner) fill() {
	if s.w == len(s.buf) {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	for empty := 0; s.w < len(s.buf) && s.err == nil; {
		m, err := s.src.Read(s.buf[s.w:])
		s.w += m
		s.err = err
		if m == 0 && err == nil {
			if empty++; empty >= 100 {
				s.err = io.ErrNoProgress
			}
		}
	}
}
