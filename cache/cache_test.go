package cache

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/cache/cachetest"
)

// blobID stands for the engine's blob ids, which the cache does not know.
type blobID [32]byte

func idOf(i int) blobID {
	var id blobID
	id[0], id[1], id[2] = byte(i), byte(i>>8), 0xcc
	return id
}

func TestLRUByteBound(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	for i := 0; i < 100; i++ {
		st.Blobs[idOf(i)] = make([]byte, 1000+i)
	}
	c := NewBytes(10_000, 4, st.Load)
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
	st.Blobs[idOf(1000)] = make([]byte, 20_000)
	if b, err := c.Get(ctx, idOf(1000)); err != nil || len(b) != 20_000 || c.Contains(idOf(1000)) {
		t.Fatalf("oversized blob: %d bytes, %v, kept %v", len(b), err, c.Contains(idOf(1000)))
	}
	if s := c.Stats(); s.Bytes > 10_000 {
		t.Fatalf("holds %d bytes after an oversized blob", s.Bytes)
	}
}

func TestLRUMergesConcurrentLoads(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	st.Delay = 50 * time.Millisecond
	st.Blobs[idOf(1)] = []byte("one")
	st.Blobs[idOf(2)] = []byte("two")
	c := NewBytes(1<<20, 4, st.Load)
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
	if n1, n2 := st.Count(idOf(1)), st.Count(idOf(2)); n1 != 1 || n2 != 1 {
		t.Fatalf("loader calls: %d and %d, want 1 each", n1, n2)
	}
	// A failed load is not cached: the next Get tries again.
	if _, err := c.Get(context.Background(), idOf(3)); !errors.Is(err, cachetest.ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	c.Get(context.Background(), idOf(3))
	if n := st.Count(idOf(3)); n != 2 {
		t.Fatalf("a failed load was cached: %d calls", n)
	}
}

// TestLRUGetWith: an LRU without a loader of its own, fed by the loads
// its callers hand over (as engine.TreeCache does), merges concurrent
// loads of one id, keeps the result, and does not keep a failure.
func TestLRUGetWith(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	st.Delay = 50 * time.Millisecond
	st.Blobs[idOf(1)] = []byte("one")
	c := New[blobID](1<<20, func(b []byte) int64 { return int64(len(b)) }, 4, nil)
	defer c.Close()
	get := func(id blobID) ([]byte, error) {
		return c.GetWith(context.Background(), id, func(ctx context.Context) ([]byte, error) { return st.Load(ctx, id) })
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
	if b, err := get(idOf(1)); err != nil || string(b) != "one" || st.Count(idOf(1)) != 1 {
		t.Fatalf("after the merged load: %q %v, %d loads", b, err, st.Count(idOf(1)))
	}
	if s := c.Stats(); s.Loads != 1 || s.Hits != 1 || s.Misses != 20 {
		t.Fatalf("stats %+v", s)
	}
	get(idOf(2))
	if _, err := get(idOf(2)); !errors.Is(err, cachetest.ErrNotFound) || st.Count(idOf(2)) != 2 {
		t.Fatalf("a failed load: %v, %d loads", err, st.Count(idOf(2)))
	}
}

func TestLRUWaiterGivesUp(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	st.Delay = 200 * time.Millisecond
	st.Blobs[idOf(1)] = []byte("x")
	c := NewBytes(1<<20, 4, st.Load)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, idOf(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled get: %v", err)
	}
	// The load went on and another caller gets its result.
	if b, err := c.Get(context.Background(), idOf(1)); err != nil || string(b) != "x" || st.Count(idOf(1)) != 1 {
		t.Fatalf("after a waiter gave up: %q %v, %d loads", b, err, st.Count(idOf(1)))
	}
}

// TestLRUPrefetch: Prefetch queues what is neither cached nor coming,
// runs at most the parallel bound of loads at once, and checks a queued
// key again when its turn comes. Keys here are ints: the LRU takes any
// comparable key.
func TestLRUPrefetch(t *testing.T) {
	var running, peak atomic.Int32
	var mu sync.Mutex
	loads := map[int]int{}
	release := make(chan struct{})
	load := func(ctx context.Context, k int) ([]byte, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		mu.Lock()
		loads[k]++
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []byte{byte(k)}, nil
	}
	c := NewBytes(1<<20, 2, load)
	defer c.Close()
	ctx := context.Background()
	c.Add(0, []byte{0})
	if n := c.Prefetch([]int{0, 1, 2, 3, 4, 5}); n != 5 {
		t.Fatalf("queued %d of 5 keys not cached", n)
	}
	if n := c.Prefetch([]int{1, 2, 3, 4, 5}); n != 0 {
		t.Fatalf("queued %d keys already coming", n)
	}
	if s := c.Stats(); s.Pending != 5 {
		t.Fatalf("pending %d, want 5", s.Pending)
	}
	// A reader takes a queued key itself while the background slots
	// are busy: its turn then finds it cached and loads nothing.
	waitFor(t, func() bool { return running.Load() == 2 })
	mu.Lock()
	var waiting int
	for k := 1; k <= 5; k++ {
		if loads[k] == 0 {
			waiting = k
			break
		}
	}
	mu.Unlock()
	got := make(chan error, 1)
	go func() { _, err := c.Get(ctx, waiting); got <- err }()
	waitFor(t, func() bool { return running.Load() == 3 })
	close(release)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	mu.Lock()
	defer mu.Unlock()
	for k := 1; k <= 5; k++ {
		if loads[k] != 1 || !c.Contains(k) {
			t.Fatalf("key %d loaded %d times, cached %v", k, loads[k], c.Contains(k))
		}
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("%d loads at once, want 2 in the background and 1 for Get", p)
	}
	if s := c.Stats(); s.Prefetches != 4 || s.Loads != 5 {
		t.Fatalf("stats %+v", s)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("timed out")
}

// TestLRUReserve: bytes reserved for loads in flight are inside the
// budget: reserving evicts, what is held and reserved never exceeds it,
// and a release gives the room back once however often it is called.
func TestLRUReserve(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	for i := 0; i < 20; i++ {
		st.Blobs[idOf(i)] = make([]byte, 1000)
	}
	c := NewBytes(10_000, 4, st.Load)
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := c.Get(ctx, idOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.Bytes != 10_000 {
		t.Fatalf("holds %d bytes, want a full 10000", s.Bytes)
	}
	release := c.Reserve(3_500)
	if s := c.Stats(); s.Bytes+s.Reserved > 10_000 || s.Reserved != 3_500 || s.Entries != 6 {
		t.Fatalf("after reserving 3500: %+v", s)
	}
	if c.Contains(idOf(0)) || !c.Contains(idOf(9)) {
		t.Fatal("reserving did not evict the least recently used")
	}
	// A load that arrives while room is reserved evicts to stay inside.
	if _, err := c.Get(ctx, idOf(10)); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Bytes+s.Reserved > 10_000 {
		t.Fatalf("holds %d and reserves %d over a 10000 budget", s.Bytes, s.Reserved)
	}
	release()
	release()
	if s := c.Stats(); s.Reserved != 0 {
		t.Fatalf("%d bytes still reserved after release", s.Reserved)
	}
	for i := 11; i < 15; i++ {
		c.Get(ctx, idOf(i))
	}
	if s := c.Stats(); s.Bytes != 10_000 {
		t.Fatalf("the room did not come back: holds %d", s.Bytes)
	}
	// A reservation larger than the budget empties the cache.
	release = c.Reserve(50_000)
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 {
		t.Fatalf("an oversized reservation left %+v", s)
	}
	release()
	if c.Reserve(0) == nil || c.Reserve(-1) == nil {
		t.Fatal("an empty reservation has no release")
	}
}

func TestLRURemoveAndCapacity(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	// A slice counts by its capacity, the memory it keeps.
	st.Blobs[idOf(1)] = make([]byte, 10, 4000)
	st.Blobs[idOf(2)] = make([]byte, 100)
	c := NewBytes(10_000, 1, st.Load)
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, idOf(1))
	c.Get(ctx, idOf(2))
	if s := c.Stats(); s.Bytes != 4100 {
		t.Fatalf("holds %d bytes, want 4100 (by capacity)", s.Bytes)
	}
	c.Remove(idOf(1))
	c.Remove(idOf(7)) // not there: nothing happens
	if s := c.Stats(); s.Bytes != 100 || s.Entries != 1 || c.Contains(idOf(1)) {
		t.Fatalf("after a remove: %+v", s)
	}
	if _, err := c.Get(ctx, idOf(1)); err != nil || st.Count(idOf(1)) != 2 {
		t.Fatalf("a removed value is not loaded again: %d loads, %v", st.Count(idOf(1)), err)
	}
}

// TestLRUGetHere: GetHere loads in the caller's goroutine, merges with
// Gets of the same key running meanwhile (one load), keeps the value, and
// does not keep a failure.
func TestLRUGetHere(t *testing.T) {
	st := cachetest.NewStore[blobID]()
	st.Delay = 50 * time.Millisecond
	st.Blobs[idOf(1)] = []byte("one")
	st.Blobs[idOf(2)] = []byte("two")
	var inline atomic.Bool
	c := NewBytes(1<<20, 4, func(ctx context.Context, id blobID) ([]byte, error) {
		buf := make([]byte, 16<<10)
		if strings.Contains(string(buf[:runtime.Stack(buf, false)]), "TestLRUGetHere(") {
			inline.Store(true)
		}
		return st.Load(ctx, id)
	})
	defer c.Close()
	if b, err := c.GetHere(idOf(1)); err != nil || string(b) != "one" || !inline.Load() || !c.Contains(idOf(1)) {
		t.Fatalf("GetHere: %q %v, in the caller's goroutine %v, kept %v", b, err, inline.Load(), c.Contains(idOf(1)))
	}
	if b, err := c.GetHere(idOf(1)); err != nil || string(b) != "one" || st.Count(idOf(1)) != 1 {
		t.Fatalf("GetHere of a kept value: %q %v, %d loads", b, err, st.Count(idOf(1)))
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b []byte
			var err error
			if i%2 == 0 {
				b, err = c.GetHere(idOf(2))
			} else {
				b, err = c.Get(context.Background(), idOf(2))
			}
			if err != nil || string(b) != "two" {
				t.Errorf("get: %q %v", b, err)
			}
		}()
	}
	wg.Wait()
	if n := st.Count(idOf(2)); n != 1 {
		t.Fatalf("%d loads of one key by concurrent GetHere and Get", n)
	}
	if _, err := c.GetHere(idOf(3)); !errors.Is(err, cachetest.ErrNotFound) || c.Contains(idOf(3)) {
		t.Fatalf("missing blob: %v", err)
	}
}

// TestLRUGetStartsQueuedRun: a Get of a key whose run is still queued
// (every background slot busy) starts that whole run at once, with the
// run's loader, instead of loading the key alone and leaving the run
// split around it.
func TestLRUGetStartsQueuedRun(t *testing.T) {
	var mu sync.Mutex
	var calls [][]int
	busy := make(chan struct{})
	load := func(ctx context.Context, keys []int, put func(int, []byte)) error {
		if keys[0] == 100 {
			<-busy // holds the only background slot
		}
		mu.Lock()
		calls = append(calls, append([]int(nil), keys...))
		mu.Unlock()
		for i, k := range keys {
			put(i, []byte{byte(k)})
		}
		return nil
	}
	var singles atomic.Int64
	single := func(ctx context.Context, k int) ([]byte, error) {
		singles.Add(1)
		return []byte{byte(k)}, nil
	}
	c := NewBytes(1<<20, 1, single)
	defer c.Close()
	defer close(busy)
	c.PrefetchRun([]int{100}, load)
	waitFor(t, func() bool { return c.Stats().Loads == 1 }) // in the slot
	if n := c.PrefetchRun([]int{1, 2, 3, 4}, load); n != 4 {
		t.Fatalf("queued %d of 4", n)
	}
	v, err := c.Get(context.Background(), 3)
	if err != nil || len(v) != 1 || v[0] != 3 {
		t.Fatalf("Get 3: %v, %v", v, err)
	}
	if n := singles.Load(); n != 0 {
		t.Fatalf("Get 3 loaded its key alone (%d loads), not with its queued run", n)
	}
	waitFor(t, func() bool { return c.Contains(1) && c.Contains(4) })
	mu.Lock()
	defer mu.Unlock()
	if singles.Load() != 0 || len(calls) != 1 || !slices.Equal(calls[0], []int{1, 2, 3, 4}) {
		t.Fatalf("%d loads of one key, run loads %v; want one run load [1 2 3 4]", singles.Load(), calls)
	}
}

// TestLRUBackgroundLoadsInOrder: background loads start in the order
// they were queued, so a reader's near stretches load before its far
// ones; with one slot busy, runs queued one call at a time and keys
// queued in one call load first queued first.
func TestLRUBackgroundLoadsInOrder(t *testing.T) {
	var mu sync.Mutex
	var order []int
	busy := make(chan struct{})
	note := func(k int) {
		mu.Lock()
		order = append(order, k)
		mu.Unlock()
	}
	runLoad := func(ctx context.Context, keys []int, put func(int, []byte)) error {
		if keys[0] == 100 {
			<-busy // holds the only background slot
		}
		note(keys[0])
		for i, k := range keys {
			put(i, []byte{byte(k)})
		}
		return nil
	}
	c := NewBytes(1<<20, 1, func(ctx context.Context, k int) ([]byte, error) {
		note(k)
		return []byte{byte(k)}, nil
	})
	defer c.Close()
	c.PrefetchRun([]int{100}, runLoad)
	waitFor(t, func() bool { return c.Stats().Loads == 1 }) // in the slot
	var want []int
	for k := 0; k < 40; k += 4 {
		c.PrefetchRun([]int{k, k + 1, k + 2, k + 3}, runLoad)
		want = append(want, k)
	}
	c.Prefetch([]int{50, 51, 52, 53, 54, 55, 56, 57})
	want = append(want, 50, 51, 52, 53, 54, 55, 56, 57)
	close(busy)
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, append([]int{100}, want...)) {
		t.Fatalf("loads started in the order %v; want 100 then %v", order, want)
	}
}

// TestLRUPrefetchRun: the keys of a run not held are loaded by one call
// per stretch (a held key splits the run), each value usable as soon as
// it is put; a Get of a key in the run waits for the run; a key the run
// does not give fails with the run's error and is not kept.
func TestLRUPrefetchRun(t *testing.T) {
	var mu sync.Mutex
	var calls [][]int
	gate := make(chan struct{})
	errShort := errors.New("short")
	load := func(ctx context.Context, keys []int, put func(int, []byte)) error {
		mu.Lock()
		calls = append(calls, append([]int(nil), keys...))
		mu.Unlock()
		for i, k := range keys {
			if k == 9 {
				return errShort
			}
			put(i, []byte{byte(k)})
			if i == 0 {
				<-gate // the first value is in while the rest is coming
			}
		}
		return nil
	}
	single := func(ctx context.Context, k int) ([]byte, error) { return []byte{byte(k)}, nil }
	c := NewBytes(1<<20, 4, single)
	defer c.Close()
	c.Add(3, []byte{3})
	if n := c.PrefetchRun([]int{1, 2, 3, 4, 5}, load); n != 4 {
		t.Fatalf("queued %d of 4 keys not held", n)
	}
	if n := c.PrefetchRun([]int{1, 2}, load); n != 0 {
		t.Fatalf("queued %d keys already coming", n)
	}
	waitFor(t, func() bool { return c.Contains(1) && c.Contains(4) })
	got := make(chan []byte, 1)
	go func() { v, _ := c.Get(context.Background(), 2); got <- v }()
	select {
	case <-got:
		t.Fatal("a Get of a key of a run in flight did not wait for it")
	case <-time.After(20 * time.Millisecond):
	}
	close(gate)
	if v := <-got; len(v) != 1 || v[0] != 2 {
		t.Fatalf("got %v for key 2", v)
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	mu.Lock()
	if len(calls) != 2 || len(calls[0])+len(calls[1]) != 4 {
		t.Fatalf("loads %v, want [1 2] and [4 5]", calls)
	}
	mu.Unlock()
	if s := c.Stats(); s.Loads != 2 || s.Prefetches != 4 || s.Entries != 5 {
		t.Fatalf("stats %+v", s)
	}
	// A run that ends early: the keys not given fail and are asked again.
	c.PrefetchRun([]int{8, 9, 10}, load)
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	if !c.Contains(8) || c.Contains(9) || c.Contains(10) {
		t.Fatal("a failed run kept the keys it did not give, or lost the one it gave")
	}
	if v, err := c.Get(context.Background(), 10); err != nil || v[0] != 10 {
		t.Fatalf("key 10 after a failed run: %v %v", v, err)
	}
}
