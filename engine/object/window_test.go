package object

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// objects is a set of byte strings read by range, counting the fetches
// and the bytes fetched.
type objects struct {
	data    map[int][]byte
	fetches atomic.Int64
	bytes   atomic.Int64
	fail    atomic.Bool
}

var errFetch = errors.New("fetch failed")

func (o *objects) fetch(ctx context.Context, obj int, off, n int64) ([]byte, error) {
	if o.fail.Load() {
		return nil, errFetch
	}
	o.fetches.Add(1)
	o.bytes.Add(n)
	return bytes.Clone(o.data[obj][off : off+n]), nil
}

func newObjects(seed uint64, sizes ...int) *objects {
	r := rand.New(rand.NewPCG(seed, 1))
	o := &objects{data: map[int][]byte{}}
	for i, s := range sizes {
		b := make([]byte, s)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		o.data[i] = b
	}
	return o
}

func TestWindowsReadRandom(t *testing.T) {
	o := newObjects(1, 100_000, 4096, 1, 65_537)
	w := NewWindows(20_000, 4096, 2, o.fetch)
	defer w.Close()
	r := rand.New(rand.NewPCG(2, 2))
	ctx := context.Background()
	for i := 0; i < 3000; i++ {
		obj := r.IntN(len(o.data))
		size := int64(len(o.data[obj]))
		off := r.Int64N(size + 1)
		n := r.Int64N(min(size-off, 9000) + 1)
		got, err := w.Read(ctx, obj, size, off, n)
		if err != nil || !bytes.Equal(got, o.data[obj][off:off+n]) {
			t.Fatalf("read %d at %d of object %d: %d bytes, %v", n, off, obj, len(got), err)
		}
		if n > 0 {
			got[0]++ // the copy is the caller's: the next read is still right
		}
		if s := w.Stats(); s.Bytes > 20_000 {
			t.Fatalf("holds %d bytes over a 20000 budget", s.Bytes)
		}
	}
	for _, bad := range [][2]int64{{-1, 2}, {0, -1}, {99_999, 2}, {100_001, 0}} {
		if _, err := w.Read(ctx, 0, 100_000, bad[0], bad[1]); err == nil {
			t.Fatalf("read of %d at %d succeeded", bad[1], bad[0])
		}
	}
}

// TestWindowsNeighbours: reading an object in small consecutive pieces
// fetches each window once, the windows after the first two in the
// background, and no byte outside the object.
func TestWindowsNeighbours(t *testing.T) {
	const size, win = 50_000, 8192
	o := newObjects(3, size)
	w := NewWindows(1<<20, win, 2, o.fetch)
	defer w.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(4, 4))
	var reads int
	for off := int64(0); off < size; reads++ {
		n := min(1+r.Int64N(700), size-off)
		got, err := w.Read(ctx, 0, size, off, n)
		if err != nil || !bytes.Equal(got, o.data[0][off:off+n]) {
			t.Fatalf("read %d at %d: %v", n, off, err)
		}
		off += n
		time.Sleep(100 * time.Microsecond) // a reader with work to do: the fetch ahead wins
	}
	waitIdle(t, w)
	windows := int64((size + win - 1) / win)
	if f := o.fetches.Load(); f != windows || o.bytes.Load() != size {
		t.Fatalf("%d reads made %d fetches of %d bytes, want %d of %d", reads, f, o.bytes.Load(), windows, size)
	}
	if s := w.Stats(); s.Prefetches < windows-3 {
		t.Fatalf("only %d of %d windows fetched ahead", s.Prefetches, windows)
	}
	// Prefetch queues only what is not held.
	if n := w.Prefetch(0, size, 0, size); n != 0 {
		t.Fatalf("prefetch of held windows queued %d", n)
	}
	// A forgotten window is fetched again.
	w.Forget(0, size, 9000, 10)
	if _, err := w.Read(ctx, 0, size, 9000, 10); err != nil || o.fetches.Load() != windows+1 {
		t.Fatalf("after forget: %d fetches, %v", o.fetches.Load(), err)
	}
	// A failed fetch is the read's error and is not kept.
	o2 := newObjects(5, 30_000)
	w2 := NewWindows(1<<20, win, 2, o2.fetch)
	defer w2.Close()
	o2.fail.Store(true)
	if _, err := w2.Read(ctx, 0, 30_000, 100, 10); !errors.Is(err, errFetch) {
		t.Fatalf("failed fetch: %v", err)
	}
	o2.fail.Store(false)
	if got, err := w2.Read(ctx, 0, 30_000, 100, 10); err != nil || !bytes.Equal(got, o2.data[0][100:110]) {
		t.Fatalf("after a failed fetch: %v", err)
	}
}

// TestWindowsConcurrent: concurrent readers of neighbouring ranges share
// the fetches of their windows.
func TestWindowsConcurrent(t *testing.T) {
	const size, win = 64 << 10, 16 << 10
	o := newObjects(6, size)
	w := NewWindows(1<<20, win, 4, o.fetch)
	defer w.Close()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; i < 200; i++ {
				off := r.Int64N(size - 100)
				got, err := w.Read(context.Background(), 0, size, off, 100)
				if err != nil || !bytes.Equal(got, o.data[0][off:off+100]) {
					t.Errorf("read at %d: %v", off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitIdle(t, w)
	if f := o.fetches.Load(); f != size/win {
		t.Fatalf("%d fetches of %d windows", f, size/win)
	}
}
