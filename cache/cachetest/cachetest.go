// Package cachetest is a fake backing store for tests of code that loads
// through a cache.LRU: it serves values by key, counts loads, and can be
// made slow.
package cachetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is what Load returns for a key it does not hold.
var ErrNotFound = errors.New("not found")

// Store serves Blobs by key and counts loads per key. Set Blobs and Delay
// before loads start.
type Store[K comparable] struct {
	Blobs map[K][]byte
	Delay time.Duration // each load waits this long (or until its ctx ends)
	Total atomic.Int64  // loads of any key

	mu    sync.Mutex
	loads map[K]int
}

// NewStore returns an empty store.
func NewStore[K comparable]() *Store[K] {
	return &Store[K]{Blobs: map[K][]byte{}, loads: map[K]int{}}
}

// Load is a cache.Loader.
func (s *Store[K]) Load(ctx context.Context, k K) ([]byte, error) {
	s.Total.Add(1)
	s.mu.Lock()
	s.loads[k]++
	b, ok := s.Blobs[k]
	s.mu.Unlock()
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, ErrNotFound
	}
	return b, nil
}

// Count is how many loads of k there were.
func (s *Store[K]) Count(k K) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[k]
}
