package object

import (
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/cache"
	"github.com/coffer-backup/coffer/cache/cachetest"
)

// key stands for a blob id: the tests need nothing of the engine.
type key [32]byte

func (k key) String() string { return hex.EncodeToString(k[:4]) }

func keyOf(i int) key {
	var k key
	k[0], k[1], k[2] = byte(i), byte(i>>8), 0xcc
	return k
}

// makeFile returns the layout of a file of n pieces of random sizes
// (1 to maxPiece bytes) stored in st, and its content.
func makeFile(st *cachetest.Store[key], seed uint64, n, maxPiece int) (*Layout[key], []byte) {
	r := rand.New(rand.NewPCG(seed, 7))
	var all []byte
	var pieces []Piece[key]
	for i := 0; i < n; i++ {
		b := make([]byte, 1+r.IntN(maxPiece))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		k := keyOf(int(seed)*1000 + i)
		st.Blobs[k] = b
		pieces = append(pieces, Piece[key]{Key: k, Size: int64(len(b))})
		all = append(all, b...)
	}
	return NewLayout(pieces), all
}

func newLRU(st *cachetest.Store[key], maxBytes int64) *cache.LRU[key, []byte] {
	return cache.NewBytes(maxBytes, 4, st.Load)
}

// waitIdle waits until no load of c (a cache.LRU, Windows) is queued or
// running.
func waitIdle(t testing.TB, c interface{ Stats() cache.Stats }) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if c.Stats().Pending == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("loads still running")
}

func TestLayout(t *testing.T) {
	empty := NewLayout[key](nil)
	if empty.Size() != 0 || empty.Len() != 0 || empty.PieceAt(0) != 0 {
		t.Fatalf("empty layout: size %d, len %d, PieceAt(0) %d", empty.Size(), empty.Len(), empty.PieceAt(0))
	}
	sizes := []int64{3, 0, 5, 1, 0, 0, 7}
	var pieces []Piece[int]
	for i, s := range sizes {
		pieces = append(pieces, Piece[int]{Key: i, Size: s})
	}
	l := NewLayout(pieces)
	if l.Size() != 16 || l.Len() != len(sizes) {
		t.Fatalf("size %d, len %d", l.Size(), l.Len())
	}
	// Every byte is in the one piece that covers it; a piece of no bytes
	// holds none.
	for off := int64(0); off < 20; off++ {
		want, start := len(sizes), int64(0)
		for i, s := range sizes {
			if off >= start && off < start+s {
				want = i
				break
			}
			start += s
		}
		i := l.PieceAt(off)
		if i != want {
			t.Fatalf("PieceAt(%d) = %d, want %d", off, i, want)
		}
		if i < l.Len() && (l.Start(i) > off || l.End(i) <= off || l.End(i)-l.Start(i) != l.Piece(i).Size) {
			t.Fatalf("piece %d at [%d, %d) does not hold %d", i, l.Start(i), l.End(i), off)
		}
	}
}
