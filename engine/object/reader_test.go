package object

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/cache/cachetest"
)

func TestReaderRandomReads(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, want := makeFile(st, 1, 40, 3000)
	c := newLRU(st, 20_000) // smaller than the file
	defer c.Close()
	rd := NewReader(c, l, 8000)
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 2000; i++ {
		off := r.Int64N(int64(len(want)) + 10)
		p := make([]byte, r.IntN(9000))
		n, err := rd.ReadAt(context.Background(), p, off)
		wantN := max(0, min(len(p), len(want)-int(off)))
		if n != wantN || !bytes.Equal(p[:n], want[min(int(off), len(want)):min(int(off), len(want))+n]) {
			t.Fatalf("read %d at %d: got %d bytes (%v), want %d", len(p), off, n, err, wantN)
		}
		if (n < len(p)) != (err == io.EOF) {
			t.Fatalf("read %d at %d: n=%d err=%v", len(p), off, n, err)
		}
	}
	if s := c.Stats(); s.Bytes > 20_000 {
		t.Fatalf("holds %d bytes", s.Bytes)
	}
	if _, err := rd.ReadAt(context.Background(), make([]byte, 1), -1); err == nil {
		t.Fatal("a read at a negative offset succeeded")
	}
}

// TestReaderPieceSize: a piece whose loaded length is not the size the
// layout gives it fails the read instead of shifting the bytes after it.
func TestReaderPieceSize(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, _ := makeFile(st, 4, 5, 3000)
	st.Blobs[l.Piece(2).Key] = st.Blobs[l.Piece(2).Key][1:]
	c := newLRU(st, 1<<20)
	defer c.Close()
	rd := NewReader(c, l, 0)
	p := make([]byte, l.Size())
	if n, err := rd.ReadAt(context.Background(), p, 0); err == nil || !strings.Contains(err.Error(), "piece 2") {
		t.Fatalf("read over a short piece: %d bytes, %v", n, err)
	}
	// The pieces around it read.
	if _, err := rd.ReadAt(context.Background(), p[:l.End(1)], 0); err != nil {
		t.Fatal(err)
	}
	// A failed load is the read's error.
	delete(st.Blobs, l.Piece(4).Key)
	c2 := newLRU(st, 1<<20)
	defer c2.Close()
	if _, err := NewReader(c2, l, 0).ReadAt(context.Background(), p[:1], l.Start(4)); err != cachetest.ErrNotFound {
		t.Fatalf("read of a missing piece: %v", err)
	}
}

func TestReadAheadSkipsCached(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, want := makeFile(st, 2, 30, 3000)
	c := newLRU(st, 1<<20)
	defer c.Close()
	ctx := context.Background()
	// A reader of the middle third caches those pieces first.
	third := l.Len() / 3
	mid := NewReader(c, l, 0)
	midStart, midEnd := l.Start(third), l.End(2*third-1)
	p := make([]byte, midEnd-midStart)
	if _, err := mid.ReadAt(ctx, p, midStart); err != nil || !bytes.Equal(p, want[midStart:midEnd]) {
		t.Fatal("middle read", err)
	}
	if st.Total.Load() != int64(third) {
		t.Fatalf("reading %d pieces without read-ahead made %d loads", third, st.Total.Load())
	}
	// A sequential reader of the whole file with a large window must load
	// every other piece exactly once and never one of the cached ones.
	rd := NewReader(c, l, 1<<20)
	buf := make([]byte, 700)
	var got []byte
	for off := int64(0); ; {
		n, err := rd.ReadAt(ctx, buf, off)
		got = append(got, buf[:n]...)
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if off == int64(n) {
			// Let the read-ahead the first read queued run before the
			// reader goes on: otherwise, on a loaded machine, the reader's
			// own loads can reach every piece before a queued prefetch is
			// scheduled, and the count below would depend on timing.
			waitIdle(t, c)
			if s := c.Stats(); s.Prefetches == 0 {
				t.Fatalf("the first sequential read queued no read-ahead: %+v", s)
			}
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sequential read differs")
	}
	waitIdle(t, c)
	for i := 0; i < l.Len(); i++ {
		if n := st.Count(l.Piece(i).Key); n != 1 {
			t.Fatalf("piece %d loaded %d times", i, n)
		}
	}
	if s := c.Stats(); s.Prefetches == 0 {
		t.Fatalf("no read-ahead happened: %+v", s)
	}
}

func TestReadAheadBoundedAndResetBySeek(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, _ := makeFile(st, 3, 200, 3000)
	c := newLRU(st, 1<<30)
	defer c.Close()
	ctx := context.Background()
	const ahead = 6000
	rd := NewReader(c, l, ahead)
	rd.slack = 200
	buf := make([]byte, 100)
	for off := int64(0); off < 3000; off += 100 {
		rd.ReadAt(ctx, buf, off)
	}
	waitIdle(t, c)
	// Loaded: what was read plus at most the window after it (and the
	// piece the window's end falls in).
	var loaded int64
	for i := 0; i < l.Len(); i++ {
		if st.Count(l.Piece(i).Key) > 0 {
			loaded += l.Piece(i).Size
		}
	}
	if loaded > 3000+ahead+2*3000 {
		t.Fatalf("read 3000 bytes with a %d-byte window and loaded %d", ahead, loaded)
	}
	// Random reads far apart start no read-ahead.
	before := c.Stats().Prefetches
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 20; i++ {
		rd.ReadAt(ctx, buf, r.Int64N(l.Size()))
	}
	waitIdle(t, c)
	if after := c.Stats().Prefetches; after-before > 2 {
		t.Fatalf("random reads prefetched %d pieces", after-before)
	}
}

// BenchmarkReaderSequential reads a 64 MiB file of 1 MiB pieces from
// memory in 128 KiB reads (the kernel's FUSE read size), with the
// mount's default read-ahead: warm, every piece cached (the reader's own
// cost), and cold, through an LRU half the file's size (read-ahead and
// loads included).
func BenchmarkReaderSequential(b *testing.B) {
	const piece, n, readSize, ahead = 1 << 20, 64, 128 << 10, 32 << 20
	st := cachetest.NewStore[key]()
	var pieces []Piece[key]
	for i := 0; i < n; i++ {
		k := keyOf(i)
		st.Blobs[k] = bytes.Repeat([]byte{byte(i)}, piece)
		pieces = append(pieces, Piece[key]{Key: k, Size: piece})
	}
	l := NewLayout(pieces)
	readAll := func(b *testing.B, rd *Reader[key]) {
		buf := make([]byte, readSize)
		for off := int64(0); off < l.Size(); off += readSize {
			if _, err := rd.ReadAt(context.Background(), buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
	b.Run("warm", func(b *testing.B) {
		c := newLRU(st, 2*n*piece)
		defer c.Close()
		readAll(b, NewReader(c, l, ahead))
		b.SetBytes(l.Size())
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			readAll(b, NewReader(c, l, ahead))
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(l.Size())
		for i := 0; i < b.N; i++ {
			c := newLRU(st, n*piece/2)
			readAll(b, NewReader(c, l, ahead))
			c.Close()
		}
	})
}
