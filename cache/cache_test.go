package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
)

func idOf(i int) engine.ID {
	var id engine.ID
	id[0], id[1], id[2] = byte(i), byte(i>>8), 0xcc
	return id
}

// fakeStore serves blobs by id and counts loads per id.
type fakeStore struct {
	mu    sync.Mutex
	blobs map[engine.ID][]byte
	loads map[engine.ID]int
	delay time.Duration
	total atomic.Int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{blobs: map[engine.ID][]byte{}, loads: map[engine.ID]int{}}
}

func (s *fakeStore) load(ctx context.Context, id engine.ID) ([]byte, error) {
	s.total.Add(1)
	s.mu.Lock()
	s.loads[id]++
	b, ok := s.blobs[id]
	d := s.delay
	s.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, errNotFound
	}
	return b, nil
}

func (s *fakeStore) count(id engine.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[id]
}

func TestLRUByteBound(t *testing.T) {
	st := newFakeStore()
	for i := 0; i < 100; i++ {
		st.blobs[idOf(i)] = make([]byte, 1000+i)
	}
	c := NewChunks(10_000, 4, st.load)
	defer c.Close()
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		for i := 0; i < 100; i++ {
			b, err := c.Get(ctx, idOf(i))
			if err != nil || len(b) != 1000+i {
				t.Fatalf("get %d: %d bytes, %v", i, len(b), err)
			}
			if s := c.Stats(); s.Bytes > 10_000 {
				t.Fatalf("holds %d bytes, budget 10000", s.Bytes)
			}
		}
	}
	s := c.Stats()
	if s.Bytes < 8_000 || s.Entries < 7 {
		t.Fatalf("holds too little: %+v", s)
	}
	// The most recent ones are kept, the oldest evicted.
	if !c.Contains(idOf(99)) || c.Contains(idOf(0)) {
		t.Fatal("eviction is not least-recently-used")
	}
	// Something larger than the whole budget is served, not kept.
	st.blobs[idOf(1000)] = make([]byte, 20_000)
	if b, err := c.Get(ctx, idOf(1000)); err != nil || len(b) != 20_000 || c.Contains(idOf(1000)) {
		t.Fatalf("oversized blob: %d bytes, %v, kept %v", len(b), err, c.Contains(idOf(1000)))
	}
	if s := c.Stats(); s.Bytes > 10_000 {
		t.Fatalf("holds %d bytes after an oversized blob", s.Bytes)
	}
}

func TestLRUMergesConcurrentLoads(t *testing.T) {
	st := newFakeStore()
	st.delay = 50 * time.Millisecond
	st.blobs[idOf(1)] = []byte("one")
	st.blobs[idOf(2)] = []byte("two")
	c := NewChunks(1<<20, 4, st.load)
	defer c.Close()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := idOf(1 + i%2)
			b, err := c.Get(context.Background(), id)
			if err != nil || len(b) != 3 {
				t.Errorf("get: %q %v", b, err)
			}
		}()
	}
	wg.Wait()
	if n1, n2 := st.count(idOf(1)), st.count(idOf(2)); n1 != 1 || n2 != 1 {
		t.Fatalf("loader calls: %d and %d, want 1 each", n1, n2)
	}
	// A failed load is not cached: the next Get tries again.
	if _, err := c.Get(context.Background(), idOf(3)); !errors.Is(err, errNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	c.Get(context.Background(), idOf(3))
	if n := st.count(idOf(3)); n != 2 {
		t.Fatalf("a failed load was cached: %d calls", n)
	}
}

// TestLRUGetWith: an LRU without a loader of its own, fed by the loads
// its callers hand over (as engine.TreeCache does), merges concurrent
// loads of one id, keeps the result, and does not keep a failure.
func TestLRUGetWith(t *testing.T) {
	st := newFakeStore()
	st.delay = 50 * time.Millisecond
	st.blobs[idOf(1)] = []byte("one")
	c := New[engine.ID](1<<20, func(b []byte) int64 { return int64(len(b)) }, 4, nil)
	defer c.Close()
	get := func(id engine.ID) ([]byte, error) {
		return c.GetWith(context.Background(), id, func(ctx context.Context) ([]byte, error) { return st.load(ctx, id) })
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := get(idOf(1)); err != nil || string(b) != "one" {
				t.Errorf("get: %q %v", b, err)
			}
		}()
	}
	wg.Wait()
	if b, err := get(idOf(1)); err != nil || string(b) != "one" || st.count(idOf(1)) != 1 {
		t.Fatalf("after the merged load: %q %v, %d loads", b, err, st.count(idOf(1)))
	}
	if s := c.Stats(); s.Loads != 1 || s.Hits != 1 || s.Misses != 20 {
		t.Fatalf("stats %+v", s)
	}
	get(idOf(2))
	if _, err := get(idOf(2)); !errors.Is(err, errNotFound) || st.count(idOf(2)) != 2 {
		t.Fatalf("a failed load: %v, %d loads", err, st.count(idOf(2)))
	}
}

func TestLRUWaiterGivesUp(t *testing.T) {
	st := newFakeStore()
	st.delay = 200 * time.Millisecond
	st.blobs[idOf(1)] = []byte("x")
	c := NewChunks(1<<20, 4, st.load)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, idOf(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled get: %v", err)
	}
	// The load went on and another caller gets its result.
	if b, err := c.Get(context.Background(), idOf(1)); err != nil || string(b) != "x" || st.count(idOf(1)) != 1 {
		t.Fatalf("after a waiter gave up: %q %v, %d loads", b, err, st.count(idOf(1)))
	}
}

// makeFile returns a file of n chunks of random sizes and its content.
func makeFile(st *fakeStore, seed uint64, n int) (*File, []byte) {
	r := rand.New(rand.NewPCG(seed, 7))
	var all []byte
	var chunks []engine.Chunk
	for i := 0; i < n; i++ {
		b := make([]byte, 1+r.IntN(3000))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		id := idOf(int(seed)*1000 + i)
		st.blobs[id] = b
		chunks = append(chunks, engine.Chunk{ID: id, Size: uint32(len(b))})
		all = append(all, b...)
	}
	return NewFile(chunks), all
}

func TestReaderRandomReads(t *testing.T) {
	st := newFakeStore()
	f, want := makeFile(st, 1, 40)
	c := NewChunks(20_000, 4, st.load) // smaller than the file
	defer c.Close()
	rd := NewReader(c, f, 8000)
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
}

func TestReadAheadSkipsCached(t *testing.T) {
	st := newFakeStore()
	f, want := makeFile(st, 2, 30)
	c := NewChunks(1<<20, 4, st.load)
	defer c.Close()
	ctx := context.Background()
	// A reader of the middle third caches those chunks first.
	third := len(f.chunks) / 3
	mid := NewReader(c, f, 0)
	midStart, midEnd := f.start(third), f.ends[2*third-1]
	p := make([]byte, midEnd-midStart)
	if _, err := mid.ReadAt(ctx, p, midStart); err != nil || !bytes.Equal(p, want[midStart:midEnd]) {
		t.Fatal("middle read", err)
	}
	if st.total.Load() != int64(third) {
		t.Fatalf("reading %d chunks without read-ahead made %d loads", third, st.total.Load())
	}
	// A sequential reader of the whole file with a large window must load
	// every other chunk exactly once and never one of the cached ones.
	rd := NewReader(c, f, 1<<20)
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
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sequential read differs")
	}
	waitIdle(t, c)
	for i, ch := range f.chunks {
		if n := st.count(ch.ID); n != 1 {
			t.Fatalf("chunk %d loaded %d times", i, n)
		}
	}
	if s := c.Stats(); s.Prefetches == 0 {
		t.Fatalf("no read-ahead happened: %+v", s)
	}
}

func TestReadAheadBoundedAndResetBySeek(t *testing.T) {
	st := newFakeStore()
	f, _ := makeFile(st, 3, 200)
	c := NewChunks(1<<30, 4, st.load)
	defer c.Close()
	ctx := context.Background()
	const ahead = 6000
	rd := NewReader(c, f, ahead)
	rd.slack = 200
	buf := make([]byte, 100)
	for off := int64(0); off < 3000; off += 100 {
		rd.ReadAt(ctx, buf, off)
	}
	waitIdle(t, c)
	// Loaded: what was read plus at most the window after it (and the
	// chunk the window's end falls in).
	var loaded int64
	for _, ch := range f.chunks {
		if st.count(ch.ID) > 0 {
			loaded += int64(ch.Size)
		}
	}
	if loaded > 3000+ahead+2*3000 {
		t.Fatalf("read 3000 bytes with a %d-byte window and loaded %d", ahead, loaded)
	}
	// Random reads far apart start no read-ahead.
	before := c.Stats().Prefetches
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 20; i++ {
		rd.ReadAt(ctx, buf, r.Int64N(f.Size()))
	}
	waitIdle(t, c)
	if after := c.Stats().Prefetches; after-before > 2 {
		t.Fatalf("random reads prefetched %d chunks", after-before)
	}
}

// waitIdle waits until no load is queued or running.
func waitIdle(t *testing.T, c *Chunks) {
	t.Helper()
	for i := 0; i < 500; i++ {
		c.mu.Lock()
		idle := len(c.inflight) == 0 && len(c.queued) == 0
		c.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("loads still running")
}

var errNotFound = errors.New("not found")
