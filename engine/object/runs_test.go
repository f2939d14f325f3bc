package object

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/cache"
)

// rng is a block of a ranged object: n bytes at off.
type rng struct{ off, n int64 }

// ranged is one object read by byte range, as the live mount reads a
// bucket's object, counting the requests and the bytes they ask for.
type ranged struct {
	data  []byte
	delay time.Duration

	requests, bytes atomic.Int64
	mu              sync.Mutex
	sizes           []int64    // every request's length, in order
	runs            [][2]int64 // every run request's offset and length
}

func newRanged(size int) *ranged {
	var seed [32]byte
	seed[0], seed[1], seed[2] = byte(size), byte(size>>8), byte(size>>16)
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b) // (a byte at a time is slow under -race)
	return &ranged{data: b}
}

func (o *ranged) count(n int64) {
	o.requests.Add(1)
	o.bytes.Add(n)
	o.mu.Lock()
	o.sizes = append(o.sizes, n)
	o.mu.Unlock()
	if o.delay > 0 {
		time.Sleep(o.delay)
	}
}

// load is the LRU's loader: one request a block.
func (o *ranged) load(ctx context.Context, b rng) ([]byte, error) {
	o.count(b.n)
	return bytes.Clone(o.data[b.off : b.off+b.n]), nil
}

// loadRun is the run loader: one request for consecutive blocks.
func (o *ranged) loadRun(ctx context.Context, bs []rng, put func(i int, b []byte)) error {
	last := bs[len(bs)-1]
	o.mu.Lock()
	o.runs = append(o.runs, [2]int64{bs[0].off, last.off + last.n - bs[0].off})
	o.mu.Unlock()
	o.count(last.off + last.n - bs[0].off)
	for i, b := range bs {
		if b.off != bs[0].off+int64(i)*bs[0].n {
			panic("a run of blocks that do not follow each other")
		}
		put(i, bytes.Clone(o.data[b.off:b.off+b.n]))
	}
	return nil
}

// blocks lays o out in blocks of size bytes.
func (o *ranged) blocks(size int64) *Layout[rng] {
	var pieces []Piece[rng]
	for off := int64(0); off < int64(len(o.data)); off += size {
		n := min(size, int64(len(o.data))-off)
		pieces = append(pieces, Piece[rng]{Key: rng{off, n}, Size: n})
	}
	return NewLayout(pieces)
}

func (o *ranged) largest() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var m int64
	for _, n := range o.sizes {
		m = max(m, n)
	}
	return m
}

// pread reads n bytes at off the way the kernel sends a large read to a
// FUSE file: split into 128 KiB reads, sent at once, served in any
// order.
func pread(t *testing.T, rd *Reader[rng], want []byte, off, n int64) {
	t.Helper()
	const split = 128 << 10
	var wg sync.WaitGroup
	errs := make(chan error, n/split+1)
	for o := off; o < off+n; o += split {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, min(split, off+n-o))
			k, err := rd.ReadAt(context.Background(), p, o)
			if err != nil && err != io.EOF || !bytes.Equal(p[:k], want[o:o+int64(k)]) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("read at %d: wrong bytes (%v)", off, err)
	}
}

// TestRandomPreadsFetchTheirBlocks: a random 1 MiB pread, split by the
// kernel into 8 reads of 128 KiB that look sequential, fetches the 256
// KiB blocks it covers (at most 1.25 MiB) and opens no read-ahead, with
// and without run loads.
func TestRandomPreadsFetchTheirBlocks(t *testing.T) {
	const size, block = 256 << 20, 256 << 10
	o := newRanged(size)
	for _, runs := range []bool{false, true} {
		o.requests.Store(0)
		o.bytes.Store(0)
		c := cache.NewBytes(64<<20, 4, o.load)
		l := o.blocks(block)
		rd := NewReader(c, l, 32<<20)
		if runs {
			rd = NewRunReader(c, l, 32<<20, o.loadRun)
		}
		r := rand.New(rand.NewPCG(5, 5))
		const preads = 60
		for i := 0; i < preads; i++ {
			off := r.Int64N((size-1<<20)/4096) * 4096
			pread(t, rd, o.data, off, 1<<20)
		}
		waitIdle(t, c)
		if got := o.bytes.Load(); got > preads*(5*block) {
			t.Fatalf("runs %v: %d random 1 MiB preads fetched %.2f MiB each, want at most 1.25", runs, preads, float64(got)/preads/(1<<20))
		}
		if p := c.Stats().Prefetches; p != 0 {
			t.Fatalf("runs %v: random preads prefetched %d blocks", runs, p)
		}
		c.Close()
	}
}

// TestSequentialRunsGrow: a long sequential read in 128 KiB reads fetches
// every block once, in requests that grow to the largest run (8 MiB with
// a 32 MiB window), far fewer than the blocks; a sequential run that
// starts after a seek opens the window once it is seekRun long.
func TestSequentialRunsGrow(t *testing.T) {
	const size, block = 128 << 20, 256 << 10
	o := newRanged(size)
	c := cache.NewBytes(256<<20, 4, o.load)
	defer c.Close()
	l := o.blocks(block)
	rd := NewRunReader(c, l, 32<<20, o.loadRun)
	o.delay = 200 * time.Microsecond // a request takes a while: the read-ahead is ahead
	buf := make([]byte, 128<<10)
	for off := int64(0); off < 48<<20; off += int64(len(buf)) {
		if _, err := rd.ReadAt(context.Background(), buf, off); err != nil || !bytes.Equal(buf, o.data[off:off+int64(len(buf))]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	waitIdle(t, c)
	blocks := int64(48 << 20 / block)
	if r := o.requests.Load(); r > blocks/8 {
		t.Fatalf("read %d blocks in %d requests", blocks, r)
	}
	if m := o.largest(); m != maxRun {
		t.Fatalf("largest request %d bytes, want %d", m, maxRun)
	}
	if s := c.Stats(); s.Prefetches < blocks/2 {
		t.Fatalf("%d of %d blocks read ahead", s.Prefetches, blocks)
	}
	// No block twice: what was fetched is what was read, plus at most
	// the window past it.
	if b := o.bytes.Load(); b > 48<<20+32<<20 {
		t.Fatalf("read %d bytes, fetched %d", 48<<20, b)
	}

	// A seek far ahead, then a sequential run: the blocks of the first
	// seekRun bytes one by one, then the window opens.
	before, ahead := o.requests.Load(), c.Stats().Prefetches
	from := int64(96 << 20)
	for off := from; off < from+seekRun-int64(len(buf)); off += int64(len(buf)) {
		rd.ReadAt(context.Background(), buf, off)
	}
	waitIdle(t, c)
	if got, want := o.requests.Load()-before, int64(seekRun/block); got != want || c.Stats().Prefetches > ahead {
		t.Fatalf("a run after a seek made %d requests before %d bytes, want %d with no read-ahead", got, seekRun, want)
	}
	for off := from + seekRun - int64(len(buf)); off < from+seekRun+4<<20; off += int64(len(buf)) {
		rd.ReadAt(context.Background(), buf, off)
	}
	waitIdle(t, c)
	if s := c.Stats(); s.Prefetches <= ahead {
		t.Fatalf("a run of %d bytes after a seek opened no read-ahead", seekRun)
	}
}

// readInOrder reads want through rd from its start in reads of 128 KiB,
// as cat does, calling after (if not nil) after each.
func readInOrder(t *testing.T, rd *Reader[rng], want []byte, after func()) {
	t.Helper()
	buf := make([]byte, 128<<10)
	for off := int64(0); off < int64(len(want)); off += int64(len(buf)) {
		n, err := rd.ReadAt(context.Background(), buf, off)
		if err != nil && err != io.EOF || !bytes.Equal(buf[:n], want[off:min(off+int64(len(buf)), int64(len(want)))]) {
			t.Fatalf("read at %d: %v", off, err)
		}
		if after != nil {
			after()
		}
	}
}

// TestRunPiecesLoadWithTheRunLoader: with one load at a time and slow
// requests, a sequential reader reaches blocks whose stretch is queued
// but not started; their whole stretch starts then (the cache's
// GetWith), so every request is still a whole aligned stretch, not a
// lone block and the rest of its stretch; and no block is loaded with
// the LRU's loader, which serves the reads outside a run (the live mount
// decides in the run loader whether a stream is kept on disk).
func TestRunPiecesLoadWithTheRunLoader(t *testing.T) {
	const size, block = 16 << 20, 256 << 10
	o := newRanged(size)
	o.delay = 3 * time.Millisecond
	var alone atomic.Int64
	counted := func(ctx context.Context, b rng) ([]byte, error) {
		alone.Add(1)
		return o.load(ctx, b)
	}
	c := cache.NewBytes(64<<20, 1, counted)
	defer c.Close()
	rd := NewRunReader(c, o.blocks(block), 8<<20, o.loadRun)
	readInOrder(t, rd, o.data, nil)
	waitIdle(t, c)
	if n := alone.Load(); n != 0 {
		t.Fatalf("a sequential read loaded %d blocks with the LRU's loader", n)
	}
	if r := o.requests.Load(); r < 3 {
		t.Fatalf("%d requests: the test's delay did not make the reader wait", r)
	}
	o.mu.Lock()
	for _, r := range o.runs {
		if r[0]%r[1] != 0 || r[1] < minAhead {
			t.Errorf("a request of %d bytes at %d: want whole stretches at multiples of their length (all: %v)", r[1], r[0], o.runs)
		}
	}
	o.mu.Unlock()
	// A read elsewhere, outside the run, is the LRU's.
	c2 := cache.NewBytes(64<<20, 1, counted)
	defer c2.Close()
	rd2 := NewRunReader(c2, o.blocks(block), 8<<20, o.loadRun)
	buf := make([]byte, 128<<10)
	if _, err := rd2.ReadAt(context.Background(), buf, 5<<20); err != nil || !bytes.Equal(buf, o.data[5<<20:5<<20+len(buf)]) {
		t.Fatalf("random read: %v", err)
	}
	if n := alone.Load(); n != 1 {
		t.Fatalf("a random read loaded %d blocks with the LRU's loader, want 1", n)
	}
}

// TestRunsAligned: a file read in order from its start is fetched in
// whole stretches that start at multiples of their length (a 16 MiB file:
// 2, 2, 2, 2, 4 and 4 MiB), with no request for a lone block to reach
// exactly the window's end (there were 8 requests, two of one block).
// The reader waits for the loads after each read, so that what is
// fetched is what was queued (a reader that outruns a queued stretch:
// TestRunPiecesLoadWithTheRunLoader).
func TestRunsAligned(t *testing.T) {
	const size, block = 16 << 20, 256 << 10
	o := newRanged(size)
	c := cache.NewBytes(64<<20, 4, o.load)
	defer c.Close()
	rd := NewRunReader(c, o.blocks(block), 32<<20, o.loadRun)
	readInOrder(t, rd, o.data, func() { waitIdle(t, c) })
	o.mu.Lock()
	defer o.mu.Unlock()
	var total int64
	for _, r := range o.runs {
		if r[0]%r[1] != 0 || r[1] < minAhead {
			t.Errorf("a request of %d bytes at %d: want whole stretches at multiples of their length (all: %v)", r[1], r[0], o.runs)
		}
		total += r[1]
	}
	if int64(len(o.sizes)) != int64(len(o.runs)) || total != size || len(o.runs) > 6 {
		t.Fatalf("%d requests (%d of runs) for %d bytes of %d: %v", len(o.sizes), len(o.runs), total, size, o.runs)
	}
}

// TestSmallFileOneRequest: a file of up to 2 MiB read from its start in
// 128 KiB reads (grep, cat) costs one request: the first read's own
// block comes with the window's first stretch, not in a request of its
// own. (Before, every such file cost two.)
func TestSmallFileOneRequest(t *testing.T) {
	for _, size := range []int{100 << 10, 300 << 10, 1_400_000, 2 << 20} {
		o := newRanged(size)
		c := cache.NewBytes(64<<20, 4, o.load)
		rd := NewRunReader(c, o.blocks(256<<10), 32<<20, o.loadRun)
		buf := make([]byte, 128<<10)
		var got []byte
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := rd.ReadAt(context.Background(), buf, off)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		waitIdle(t, c)
		if !bytes.Equal(got, o.data) {
			t.Fatalf("%d bytes: wrong bytes", size)
		}
		if r := o.requests.Load(); r != 1 {
			t.Fatalf("a %d-byte file read from its start cost %d requests (%v), want 1", size, r, o.sizes)
		}
		c.Close()
	}
}

// TestWhenRandom: a file read at random calls the hook once, after the
// seeks it asked for; a sequential reader (cat, grep), even one that
// starts with a seek (tail -f, a resumed copy), never calls it.
func TestWhenRandom(t *testing.T) {
	const size, block = 64 << 20, 256 << 10
	o := newRanged(size)
	c := cache.NewBytes(64<<20, 4, o.load)
	defer c.Close()
	l := o.blocks(block)

	var calls atomic.Int32
	called := make(chan struct{}, 4)
	hook := func() { calls.Add(1); called <- struct{}{} }

	seq := NewRunReader(c, l, 32<<20, o.loadRun)
	seq.WhenRandom(2, hook)
	from := int64(40 << 20) // one seek first, then in order
	for off := from; off < size; off += 128 << 10 {
		pread(t, seq, o.data, off, 128<<10)
	}
	rnd := NewRunReader(c, l, 32<<20, o.loadRun)
	rnd.WhenRandom(4, hook)
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 3; i++ {
		pread(t, rnd, o.data, r.Int64N((size-1<<20)/4096)*4096, 1<<20)
	}
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Fatalf("called %d times after 1 seek of a sequential reader and 3 random preads, want 0 (after 4 seeks)", n)
	}
	for i := 0; i < 10; i++ {
		pread(t, rnd, o.data, r.Int64N((size-1<<20)/4096)*4096, 1<<20)
	}
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("13 random preads did not call the hook")
	}
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("called %d times, want once", n)
	}
	waitIdle(t, c)
}

// TestReadBeside: a piece that is not in memory is asked of the beside
// function first, with the read's own range; what it answers loads
// nothing, what it refuses is loaded as before, and the bytes are right
// either way.
func TestReadBeside(t *testing.T) {
	const size, block = 4 << 20, 256 << 10
	o := newRanged(size)
	c := cache.NewBytes(64<<20, 4, o.load)
	defer c.Close()
	rd := NewReader(c, o.blocks(block), 0)
	var asked atomic.Int64
	rd.ReadBeside(func(k rng, p []byte, off int64) bool {
		asked.Add(1)
		if k.off/block%2 == 1 {
			return false // odd blocks: not there
		}
		copy(p, o.data[k.off+off:])
		return true
	})
	r := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 200; i++ {
		n := 1 + r.Int64N(300<<10)
		off := r.Int64N(size - n)
		p := make([]byte, n)
		if _, err := rd.ReadAt(context.Background(), p, off); err != nil || !bytes.Equal(p, o.data[off:off+n]) {
			t.Fatalf("read of %d at %d: %v, or wrong bytes", n, off, err)
		}
	}
	if asked.Load() == 0 {
		t.Fatal("the beside function was never asked")
	}
	if got, max := o.bytes.Load(), int64(size/2); got > max || got == 0 {
		t.Fatalf("loaded %d bytes: want the odd blocks only (at most %d), some", got, max)
	}
}
