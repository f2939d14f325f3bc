// Package object reads a file's content as an ordered list of pieces,
// each loaded by a key: a blob id for a snapshot's file, a byte range for
// an object of a live bucket. A Layout places the pieces; a Reader serves
// random reads through a byte-bounded cache.LRU, with read-ahead on
// sequential access (the mount); WriteTo streams the pieces in order,
// fetching a few ahead (cat, restore to a stream).
//
// It knows neither the store format nor where pieces come from: callers
// turn their chunk lists or ranges into pieces and hand over a loader.
package object

import "sort"

// Piece is one piece of a file's content: the key it is loaded by and its
// length in bytes (not negative).
type Piece[K comparable] struct {
	Key  K
	Size int64
}

// Layout is a file's content as its pieces in order, with the offset
// where each piece ends computed once, so that a read finds its first
// piece by binary search.
type Layout[K comparable] struct {
	pieces []Piece[K]
	ends   []int64 // ends[i] is the offset just past piece i
}

// NewLayout places pieces one after the other. It keeps pieces: do not
// change them afterwards.
func NewLayout[K comparable](pieces []Piece[K]) *Layout[K] {
	l := &Layout[K]{pieces: pieces, ends: make([]int64, len(pieces))}
	var off int64
	for i, p := range pieces {
		off += p.Size
		l.ends[i] = off
	}
	return l
}

// Len is the number of pieces.
func (l *Layout[K]) Len() int { return len(l.pieces) }

// Piece returns piece i.
func (l *Layout[K]) Piece(i int) Piece[K] { return l.pieces[i] }

// Size is the file's length.
func (l *Layout[K]) Size() int64 {
	if len(l.ends) == 0 {
		return 0
	}
	return l.ends[len(l.ends)-1]
}

// PieceAt returns the index of the piece holding byte off, or Len() if
// off is at or past the end.
func (l *Layout[K]) PieceAt(off int64) int {
	return sort.Search(len(l.ends), func(i int) bool { return l.ends[i] > off })
}

// Start is the offset of piece i's first byte.
func (l *Layout[K]) Start(i int) int64 {
	if i == 0 {
		return 0
	}
	return l.ends[i-1]
}

// End is the offset just past piece i.
func (l *Layout[K]) End(i int) int64 { return l.ends[i] }
