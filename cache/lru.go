// Package cache owns what the mount keeps so that it does not fetch twice:
// a byte-bounded LRU of decrypted blobs (golang-lru/v2) in which
// concurrent loads of one blob are merged and read-ahead never fetches
// what is cached or already coming; a reader that serves a file's bytes
// from that LRU with read-ahead on sequential access; and an on-disk
// cache of the store's immutable metadata objects, kept sealed, so that a
// second mount of the same store starts without the network.
package cache

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/coffer-backup/coffer/engine/crypto"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Loader fetches the value of one id (a decrypted chunk, a decoded
// directory page).
type Loader[V any] func(ctx context.Context, id crypto.ID) (V, error)

// load is one load of one id, as GetWith is given it.
type load[V any] func(ctx context.Context) (V, error)

// LRU holds values by id up to a byte budget, evicting the least recently
// used. Get merges concurrent loads of one id into one call of the
// loader; Prefetch loads in the background what is neither cached nor
// being loaded. It is safe for concurrent use.
type LRU[V any] struct {
	load Loader[V]
	size func(V) int64
	max  int64

	mu       sync.Mutex
	lru      *simplelru.LRU[crypto.ID, V]
	bytes    int64
	inflight map[crypto.ID]*call[V]
	queued   map[crypto.ID]bool // waiting for a background slot

	// Loads run under base, not under the context of whichever caller
	// came first, so one caller giving up does not fail the others.
	base   context.Context
	cancel context.CancelFunc
	sem    chan struct{} // bounds background loads

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
	Entries    int
}

// New returns an LRU that holds at most maxBytes as measured by size and
// runs at most parallel background loads at once. load may be nil for an
// LRU used only through GetWith; Get and Prefetch need it.
func New[V any](maxBytes int64, size func(V) int64, parallel int, load Loader[V]) *LRU[V] {
	if parallel < 1 {
		parallel = 1
	}
	l, _ := simplelru.NewLRU[crypto.ID, V](math.MaxInt32, nil)
	ctx, cancel := context.WithCancel(context.Background())
	return &LRU[V]{
		load: load, size: size, max: maxBytes, lru: l,
		inflight: map[crypto.ID]*call[V]{}, queued: map[crypto.ID]bool{},
		base: ctx, cancel: cancel, sem: make(chan struct{}, parallel),
	}
}

// Close cancels the loads in flight; later loads fail.
func (c *LRU[V]) Close() { c.cancel() }

// Max returns the byte budget.
func (c *LRU[V]) Max() int64 { return c.max }

// Get returns the value of id from memory, or loads it (merged with any
// load of id already running) and keeps it. If ctx ends first, Get
// returns ctx's error; the load goes on for the others waiting on it.
func (c *LRU[V]) Get(ctx context.Context, id crypto.ID) (V, error) {
	return c.GetWith(ctx, id, func(ctx context.Context) (V, error) { return c.load(ctx, id) })
}

// GetWith is Get with the load of id given by the caller, for values
// whose loader only the asker knows (engine.TreeCache hands one over with
// each request). A load of id already running is waited for instead.
func (c *LRU[V]) GetWith(ctx context.Context, id crypto.ID, fn func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	if v, ok := c.lru.Get(id); ok {
		c.mu.Unlock()
		c.hits.Add(1)
		return v, nil
	}
	c.misses.Add(1)
	cl := c.startLocked(id, fn)
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// Peek returns the value of id if it is in memory, without loading it or
// changing its recency.
func (c *LRU[V]) Peek(id crypto.ID) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Peek(id)
}

// Contains reports whether id is in memory.
func (c *LRU[V]) Contains(id crypto.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Contains(id)
}

// Prefetch queues background loads of those ids that are neither in
// memory, nor being loaded, nor queued, and returns without waiting. At
// most the LRU's parallel bound of them run at once; a queued id is
// checked again when its turn comes, so a blob that a reader fetched in
// the meantime is not fetched twice. It returns how many it queued.
func (c *LRU[V]) Prefetch(ids []crypto.ID) int {
	queued := 0
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if c.lru.Contains(id) || c.inflight[id] != nil || c.queued[id] {
			continue
		}
		c.queued[id] = true
		queued++
		go c.background(id)
	}
	return queued
}

func (c *LRU[V]) background(id crypto.ID) {
	select {
	case c.sem <- struct{}{}:
	case <-c.base.Done():
		c.mu.Lock()
		delete(c.queued, id)
		c.mu.Unlock()
		return
	}
	defer func() { <-c.sem }()
	c.mu.Lock()
	delete(c.queued, id)
	if c.lru.Contains(id) || c.inflight[id] != nil {
		c.mu.Unlock()
		return
	}
	cl := &call[V]{done: make(chan struct{})}
	c.inflight[id] = cl
	c.mu.Unlock()
	c.prefetches.Add(1)
	c.run(cl, func(ctx context.Context) (V, error) { return c.load(ctx, id) }, id)
}

// startLocked returns the load of id in flight, starting one with fn if
// there is none. c.mu must be held.
func (c *LRU[V]) startLocked(id crypto.ID, fn load[V]) *call[V] {
	if cl := c.inflight[id]; cl != nil {
		return cl
	}
	cl := &call[V]{done: make(chan struct{})}
	c.inflight[id] = cl
	go c.run(cl, fn, id)
	return cl
}

func (c *LRU[V]) run(cl *call[V], fn load[V], id crypto.ID) {
	c.loads.Add(1)
	v, err := fn(c.base)
	cl.val, cl.err = v, err
	c.mu.Lock()
	delete(c.inflight, id)
	if err == nil {
		c.addLocked(id, v)
	}
	c.mu.Unlock()
	close(cl.done)
}

// Add puts a value into the cache, as if it had been loaded.
func (c *LRU[V]) Add(id crypto.ID, v V) {
	c.mu.Lock()
	c.addLocked(id, v)
	c.mu.Unlock()
}

func (c *LRU[V]) addLocked(id crypto.ID, v V) {
	n := c.size(v)
	if n > c.max || c.lru.Contains(id) {
		return // larger than the whole budget: served, not kept
	}
	c.lru.Add(id, v)
	c.bytes += n
	for c.bytes > c.max {
		_, old, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.bytes -= c.size(old)
	}
}

// Stats returns the counters and the bytes held.
func (c *LRU[V]) Stats() Stats {
	c.mu.Lock()
	b, n := c.bytes, c.lru.Len()
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Loads: c.loads.Load(),
		Prefetches: c.prefetches.Load(), Bytes: b, Entries: n}
}
