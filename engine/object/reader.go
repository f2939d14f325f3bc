package object

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/coffer-backup/coffer/cache"
)

// Read-ahead window bounds: it opens at minAhead on the first sequential
// read, doubles with each next one up to the reader's maximum, and closes
// on a seek.
const (
	minAhead = 2 << 20
	// seqSlack is how far from where the previous read ended a read may
	// start and still count as sequential: the kernel sends a stream's
	// reads concurrently and they may arrive slightly out of order.
	seqSlack = 1 << 20
)

// Reader reads one open file through an LRU of pieces that many readers
// share. A read fetches the pieces it covers, in parallel, and waits only
// for those; when it continues a sequential run, the pieces after it, up
// to the read-ahead window, are queued for prefetch, except those that
// are cached or already coming (the window is widened, then clipped to
// what is not cached). Safe for concurrent use.
type Reader[K comparable] struct {
	c        *cache.LRU[K, []byte]
	l        *Layout[K]
	maxAhead int64
	slack    int64 // seqSlack, smaller in tests

	mu     sync.Mutex
	next   int64 // offset just past the previous read
	window int64 // read-ahead bytes; 0 after a seek
}

// NewReader returns a reader of the file l lays out, loading its pieces
// through c (whose loader fetches a piece by its key), that reads ahead
// at most maxAhead bytes (0: no read-ahead).
func NewReader[K comparable](c *cache.LRU[K, []byte], l *Layout[K], maxAhead int64) *Reader[K] {
	return &Reader[K]{c: c, l: l, maxAhead: maxAhead, slack: seqSlack}
}

// Size is the file's length.
func (r *Reader[K]) Size() int64 { return r.l.Size() }

// ReadAt reads len(p) bytes at off, fewer only at the end of the file
// (then with io.EOF). A piece whose length is not the size the layout
// gives it is an error.
func (r *Reader[K]) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	size := r.l.Size()
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= size || len(p) == 0 {
		if off >= size {
			return 0, io.EOF
		}
		return 0, nil
	}
	end := min(off+int64(len(p)), size)
	first, last := r.l.PieceAt(off), r.l.PieceAt(end-1)
	r.readAhead(off, end)

	var wg sync.WaitGroup
	errs := make([]error, last-first+1)
	for i := first; i <= last; i++ {
		copyPiece := func() {
			pc := r.l.pieces[i]
			data, err := r.c.Get(ctx, pc.Key)
			if err == nil {
				err = checkSize(i, pc, data)
			}
			if err != nil {
				errs[i-first] = err
				return
			}
			ps := r.l.Start(i)
			lo, hi := max(off, ps), min(end, r.l.ends[i])
			copy(p[lo-off:hi-off], data[lo-ps:hi-ps])
		}
		if i == last {
			copyPiece() // the last (usually only) one on this goroutine
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); copyPiece() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	n := int(end - off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readAhead updates the sequential state with a read of [off, end) and
// queues the pieces of the window after it.
func (r *Reader[K]) readAhead(off, end int64) {
	if r.maxAhead <= 0 {
		return
	}
	r.mu.Lock()
	if off >= r.next-r.slack && off <= r.next+r.slack {
		r.window = min(max(2*r.window, minAhead), r.maxAhead)
		r.next = max(end, r.next)
	} else {
		r.window, r.next = 0, end // a seek
	}
	window := r.window
	r.mu.Unlock()
	size := r.l.Size()
	if window == 0 || end >= size {
		return
	}
	from, to := r.l.PieceAt(end), r.l.PieceAt(min(end+window, size)-1)
	keys := make([]K, 0, to-from+1)
	for i := from; i <= to; i++ {
		keys = append(keys, r.l.pieces[i].Key)
	}
	r.c.Prefetch(keys)
}

// checkSize reports a piece whose loaded length is not its size.
func checkSize[K comparable](i int, pc Piece[K], data []byte) error {
	if int64(len(data)) == pc.Size {
		return nil
	}
	return fmt.Errorf("piece %d (%v): %d bytes, the file says %d", i, pc.Key, len(data), pc.Size)
}
