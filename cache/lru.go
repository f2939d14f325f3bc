// Package cache is a byte-bounded LRU (golang-lru/v2) in which
// concurrent loads of one key are merged and prefetches never fetch what
// is cached or already coming. It knows bytes, not formats: keys and
// values are its callers' (decrypted chunks by blob id, byte ranges of an
// object, decoded directory pages), and it imports nothing of coffer.
// Reading a file through it with read-ahead is engine/object's job.
package cache

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Loader fetches the value of one key (a decrypted chunk by its blob id,
// a byte range of an object, a decoded directory page).
type Loader[K comparable, V any] func(ctx context.Context, key K) (V, error)

// load is one load of one key, as GetWith is given it.
type load[V any] func(ctx context.Context) (V, error)

// LRU holds values by key up to a byte budget, evicting the least
// recently used. Get merges concurrent loads of one key into one call of
// the loader; Prefetch loads in the background what is neither cached
// nor being loaded. It is safe for concurrent use.
type LRU[K comparable, V any] struct {
	load Loader[K, V]
	size func(V) int64
	max  int64

	mu       sync.Mutex
	lru      *simplelru.LRU[K, V]
	bytes    int64
	reserved int64 // bytes of loads in flight (Reserve), inside max
	inflight map[K]*call[V]
	// waiting for a background slot: with the run it waits in (one
	// PrefetchRun queued), or nil (Prefetch)
	queued map[K]*queuedRun[K, V]

	// Loads run under base, not under the context of whichever caller
	// came first, so one caller giving up does not fail the others.
	base   context.Context
	cancel context.CancelFunc
	// Background loads wait in waiting, first queued first started, and
	// at most parallel workers run them (a goroutine each waiting for a
	// slot would start them newest first: Go runs the goroutine made
	// last first, so a window's far stretches would load before its
	// near ones).
	parallel int
	waiting  []func()
	workers  int

	hits, misses, loads, prefetches atomic.Int64
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// Stats count what an LRU did.
type Stats struct {
	Hits       int64 // Gets answered from memory
	Misses     int64 // Gets that waited for a load (their own or a merged one)
	Loads      int64 // calls of the loader
	Prefetches int64 // loads run for Prefetch
	Bytes      int64 // bytes held now
	Reserved   int64 // bytes reserved for loads in flight now
	Entries    int
	Pending    int // loads running or queued now
}

// New returns an LRU that holds at most maxBytes as measured by size and
// runs at most parallel background loads at once. load may be nil for an
// LRU used only through GetWith; Get and Prefetch need it.
func New[K comparable, V any](maxBytes int64, size func(V) int64, parallel int, load Loader[K, V]) *LRU[K, V] {
	if parallel < 1 {
		parallel = 1
	}
	l, _ := simplelru.NewLRU[K, V](math.MaxInt32, nil)
	ctx, cancel := context.WithCancel(context.Background())
	return &LRU[K, V]{
		load: load, size: size, max: maxBytes, lru: l,
		inflight: map[K]*call[V]{}, queued: map[K]*queuedRun[K, V]{},
		base: ctx, cancel: cancel, parallel: parallel,
	}
}

// NewBytes returns an LRU of byte slices (decrypted chunks, ranges of an
// object) that holds at most maxBytes of them, loaded with load, running
// at most parallel background loads at once. A slice counts by its
// capacity: that is the memory it keeps.
func NewBytes[K comparable](maxBytes int64, parallel int, load Loader[K, []byte]) *LRU[K, []byte] {
	return New(maxBytes, func(b []byte) int64 { return int64(cap(b)) }, parallel, load)
}

// Close cancels the loads in flight; later loads fail.
func (c *LRU[K, V]) Close() { c.cancel() }

// Get returns the value of key from memory, or loads it (merged with any
// load of key already running) and keeps it. If ctx ends first, Get
// returns ctx's error; the load goes on for the others waiting on it.
func (c *LRU[K, V]) Get(ctx context.Context, key K) (V, error) {
	return c.GetWith(ctx, key, func(ctx context.Context) (V, error) { return c.load(ctx, key) })
}

// GetWith is Get with the load of key given by the caller, for values
// whose loader only the asker knows (the mount's tree cache is handed
// one by the engine with each request). A load of key already running is
// waited for instead.
func (c *LRU[K, V]) GetWith(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, error) {
	if v, ok := c.lockedMiss(key); ok {
		return v, nil
	}
	if qr := c.queued[key]; qr != nil && c.inflight[key] == nil {
		// The reader caught up with a run still waiting for a slot:
		// start the whole run now, as LoadRun would, rather than load
		// the key alone and leave the run split around it (one request
		// of one piece, and one of the rest not aligned).
		runs, calls := c.registerRunsLocked(qr.keys)
		for i, run := range runs {
			go c.loadRun(run, calls[i], qr.load)
		}
	}
	cl := c.startLocked(key, fn)
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// lockedMiss returns key's value if it is in memory, counting a hit;
// otherwise it counts a miss and returns with c.mu held.
func (c *LRU[K, V]) lockedMiss(key K) (V, bool) {
	c.mu.Lock()
	if v, ok := c.lru.Get(key); ok {
		c.mu.Unlock()
		c.hits.Add(1)
		return v, true
	}
	c.misses.Add(1)
	return *new(V), false
}

// GetHere is Get for a caller that would only wait: the load, if key is
// neither in memory nor coming, runs in the caller's goroutine (merged
// with Gets of key meanwhile, and kept), which saves a goroutine and its
// stack per load. It waits until the load ends or the LRU is closed.
func (c *LRU[K, V]) GetHere(key K) (V, error) {
	if v, ok := c.lockedMiss(key); ok {
		return v, nil
	}
	if cl := c.inflight[key]; cl != nil {
		c.mu.Unlock()
		<-cl.done
		return cl.val, cl.err
	}
	cl := &call[V]{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()
	c.run(cl, func(ctx context.Context) (V, error) { return c.load(ctx, key) }, key)
	return cl.val, cl.err
}

// Peek returns key's value if it is in memory, without loading it or
// making it recent, and without counting a hit or a miss.
func (c *LRU[K, V]) Peek(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Peek(key)
}

// Contains reports whether key is in memory.
func (c *LRU[K, V]) Contains(key K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Contains(key)
}

// Prefetch queues background loads of those keys that are neither in
// memory, nor being loaded, nor queued, and returns without waiting. At
// most the LRU's parallel bound of them run at once; a queued key is
// checked again when its turn comes, so a value that a reader fetched in
// the meantime is not fetched twice. It returns how many it queued.
func (c *LRU[K, V]) Prefetch(keys []K) int {
	queued := 0
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, key := range keys {
		if _, q := c.queued[key]; q || c.lru.Contains(key) || c.inflight[key] != nil {
			continue
		}
		c.queued[key] = nil
		queued++
		c.queueLocked(func() { c.background(key) })
	}
	return queued
}

// queueLocked queues a background load, starting a worker if fewer than
// parallel run. c.mu must be held.
func (c *LRU[K, V]) queueLocked(job func()) {
	c.waiting = append(c.waiting, job)
	if c.workers < c.parallel {
		c.workers++
		go c.work()
	}
}

// work runs queued background loads in the order they were queued until
// none is left.
func (c *LRU[K, V]) work() {
	c.mu.Lock()
	for len(c.waiting) > 0 {
		job := c.waiting[0]
		c.waiting[0] = nil
		c.waiting = c.waiting[1:]
		c.mu.Unlock()
		job()
		c.mu.Lock()
	}
	c.waiting = nil
	c.workers--
	c.mu.Unlock()
}

func (c *LRU[K, V]) background(key K) {
	c.mu.Lock()
	delete(c.queued, key)
	if c.base.Err() != nil || c.lru.Contains(key) || c.inflight[key] != nil {
		c.mu.Unlock()
		return
	}
	cl := &call[V]{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()
	c.prefetches.Add(1)
	c.run(cl, func(ctx context.Context) (V, error) { return c.load(ctx, key) }, key)
}

// queuedRun is a stretch of keys PrefetchRun queued, with its loader.
type queuedRun[K comparable, V any] struct {
	keys []K
	load RunLoader[K, V]
}

// RunLoader loads the values of keys that one request fetches together
// (consecutive byte ranges of one object), giving each with put as it
// comes (put(i, v) for keys[i]; at most once each). A key it has not put
// when it returns fails with its error.
type RunLoader[K comparable, V any] func(ctx context.Context, keys []K, put func(i int, v V)) error

// PrefetchRun is Prefetch for keys loaded together by load: those of
// keys (consecutive, in order) that are neither in memory, nor being
// loaded, nor queued are queued, each stretch of them as one background
// load; when its turn comes, the keys of it still missing are loaded by
// one call of load per stretch of them; a Get of a key still queued
// starts its whole stretch at once. It returns how many keys it queued.
func (c *LRU[K, V]) PrefetchRun(keys []K, load RunLoader[K, V]) int {
	queued := 0
	c.mu.Lock()
	defer c.mu.Unlock()
	var run []K
	flush := func() {
		if len(run) > 0 {
			qr := &queuedRun[K, V]{keys: run, load: load}
			for _, key := range run {
				c.queued[key] = qr
			}
			c.queueLocked(func() { c.backgroundRun(qr.keys, load) })
			run = nil
		}
	}
	for _, key := range keys {
		if _, q := c.queued[key]; q || c.lru.Contains(key) || c.inflight[key] != nil {
			flush()
			continue
		}
		c.queued[key] = nil // its run, once flush makes it
		queued++
		run = append(run, key)
	}
	flush()
	return queued
}

func (c *LRU[K, V]) backgroundRun(keys []K, load RunLoader[K, V]) {
	c.mu.Lock()
	if c.base.Err() != nil {
		for _, key := range keys {
			delete(c.queued, key)
		}
		c.mu.Unlock()
		return
	}
	runs, calls := c.registerRunsLocked(keys)
	c.mu.Unlock()
	for i, run := range runs {
		c.loadRun(run, calls[i], load)
	}
}

// LoadRun is PrefetchRun for keys a reader is about to Get: those of
// keys (consecutive, in order) neither in memory nor being loaded are
// registered as loading at once, so that a Get of one of them waits for
// this load instead of starting its own, and each stretch of them is
// loaded now by one call of load, without waiting for the background
// bound. It returns how many keys it loads.
func (c *LRU[K, V]) LoadRun(keys []K, load RunLoader[K, V]) int {
	c.mu.Lock()
	runs, calls := c.registerRunsLocked(keys)
	c.mu.Unlock()
	n := 0
	for i, run := range runs {
		n += len(run)
		go c.loadRun(run, calls[i], load)
	}
	return n
}

// registerRunsLocked registers a load of each of keys neither in memory
// nor being loaded (no longer queued), and returns them in stretches of
// consecutive ones, with their calls. c.mu must be held.
func (c *LRU[K, V]) registerRunsLocked(keys []K) ([][]K, [][]*call[V]) {
	var runs [][]K
	var calls [][]*call[V]
	start := true
	for _, key := range keys {
		delete(c.queued, key)
		if c.lru.Contains(key) || c.inflight[key] != nil {
			start = true
			continue
		}
		if start {
			runs, calls = append(runs, nil), append(calls, nil)
			start = false
		}
		cl := &call[V]{done: make(chan struct{})}
		c.inflight[key] = cl
		runs[len(runs)-1] = append(runs[len(runs)-1], key)
		calls[len(calls)-1] = append(calls[len(calls)-1], cl)
	}
	return runs, calls
}

func (c *LRU[K, V]) loadRun(run []K, cls []*call[V], load RunLoader[K, V]) {
	c.loads.Add(1)
	c.prefetches.Add(int64(len(run)))
	var mu sync.Mutex
	done := make([]bool, len(run))
	finish := func(i int, v V, err error) {
		mu.Lock()
		if done[i] {
			mu.Unlock()
			return
		}
		done[i] = true
		mu.Unlock()
		cl := cls[i]
		cl.val, cl.err = v, err
		c.mu.Lock()
		delete(c.inflight, run[i])
		if err == nil {
			c.addLocked(run[i], v)
		}
		c.mu.Unlock()
		close(cl.done)
	}
	err := load(c.base, run, func(i int, v V) {
		if i >= 0 && i < len(run) {
			finish(i, v, nil)
		}
	})
	if err == nil {
		err = errors.New("cache: a run load returned without a value")
	}
	var zero V
	for i := range run {
		finish(i, zero, err)
	}
}

// startLocked returns the load of key in flight, starting one with fn if
// there is none. c.mu must be held.
func (c *LRU[K, V]) startLocked(key K, fn load[V]) *call[V] {
	if cl := c.inflight[key]; cl != nil {
		return cl
	}
	cl := &call[V]{done: make(chan struct{})}
	c.inflight[key] = cl
	go c.run(cl, fn, key)
	return cl
}

func (c *LRU[K, V]) run(cl *call[V], fn load[V], key K) {
	c.loads.Add(1)
	v, err := fn(c.base)
	cl.val, cl.err = v, err
	c.mu.Lock()
	delete(c.inflight, key)
	if err == nil {
		c.addLocked(key, v)
	}
	c.mu.Unlock()
	close(cl.done)
}

// Reserve counts n bytes against the budget until release is called,
// evicting the least recently used values to make room: a loader calls
// it with what its load will hold (the fetched and the decoded bytes)
// once it knows, and releases before it returns, so that loads in flight
// and read-ahead are inside maxBytes instead of on top of it. A
// reservation larger than the budget empties the cache and is kept
// whole; release may be called more than once.
func (c *LRU[K, V]) Reserve(n int64) (release func()) {
	if n <= 0 {
		return func() {}
	}
	c.mu.Lock()
	c.reserved += n
	c.evictLocked()
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.reserved -= n
			c.mu.Unlock()
		})
	}
}

// Remove drops key from memory (a value found to be bad), if it is there.
func (c *LRU[K, V]) Remove(key K) {
	c.mu.Lock()
	if v, ok := c.lru.Peek(key); ok {
		c.lru.Remove(key)
		c.bytes -= c.size(v)
	}
	c.mu.Unlock()
}

// Add puts a value into the cache, as if it had been loaded.
func (c *LRU[K, V]) Add(key K, v V) {
	c.mu.Lock()
	c.addLocked(key, v)
	c.mu.Unlock()
}

func (c *LRU[K, V]) addLocked(key K, v V) {
	n := c.size(v)
	if n > c.max || c.lru.Contains(key) {
		return // larger than the whole budget: served, not kept
	}
	c.lru.Add(key, v)
	c.bytes += n
	c.evictLocked()
}

// evictLocked removes the least recently used values until what is held
// and reserved fits the budget (or nothing is left). c.mu must be held.
func (c *LRU[K, V]) evictLocked() {
	for c.bytes+c.reserved > c.max {
		_, old, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.bytes -= c.size(old)
	}
}

// Stats returns the counters and the bytes held.
func (c *LRU[K, V]) Stats() Stats {
	c.mu.Lock()
	b, r, n, p := c.bytes, c.reserved, c.lru.Len(), len(c.inflight)+len(c.queued)
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Loads: c.loads.Load(),
		Prefetches: c.prefetches.Load(), Bytes: b, Reserved: r, Entries: n, Pending: p}
}
