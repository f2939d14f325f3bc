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
	// seekRun is how long a run that does not start at the file's
	// beginning must be before the window opens: the kernel splits one
	// large read (a random 1 MiB pread) into 128 KiB reads that look
	// sequential, and a window opened on them fetches what nobody reads.
	seekRun = 4 << 20
	// maxRun bounds one load of consecutive pieces (NewRunReader).
	maxRun = 8 << 20
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
	run      int64 // seekRun, smaller in tests
	loadRun  cache.RunLoader[K, []byte]
	maxRun   int64

	direct func(key K, p []byte, off int64) bool // ReadBeside's

	randomAfter int    // WhenRandom's number of seeks
	onRandom    func() // WhenRandom's function; nil once called

	mu     sync.Mutex
	seeks  int   // reads that were not part of a sequential run
	next   int64 // offset just past the previous read
	from   int64 // where the current run started
	window int64 // read-ahead bytes; 0 after a seek
	queued int64 // with loadRun: the run's pieces up to here are queued
}

// NewReader returns a reader of the file l lays out, loading its pieces
// through c (whose loader fetches a piece by its key), that reads ahead
// at most maxAhead bytes (0: no read-ahead).
func NewReader[K comparable](c *cache.LRU[K, []byte], l *Layout[K], maxAhead int64) *Reader[K] {
	return &Reader[K]{c: c, l: l, maxAhead: maxAhead, slack: seqSlack, run: seekRun}
}

// NewRunReader is NewReader for pieces that load cheaper together
// (consecutive byte ranges of one object, fetched with one request):
// the read-ahead loads the pieces of the window in stretches of up to a
// quarter of the window (at least 2 MiB, at most 8 MiB) with load, and
// refills the window once less than half of it is left, so that a long
// sequential run is read in large requests, while a read outside such a
// run fetches only the pieces it covers. A piece a read inside a run
// needs before its stretch has started loading is loaded with load too,
// as a run of one: load decides for every piece of a run (the live mount
// keeps a stream larger than its disk tier off it), the LRU's own loader
// for the pieces read at random.
func NewRunReader[K comparable](c *cache.LRU[K, []byte], l *Layout[K], maxAhead int64, load cache.RunLoader[K, []byte]) *Reader[K] {
	r := NewReader(c, l, maxAhead)
	r.loadRun, r.maxRun = load, maxRun
	return r
}

// WhenRandom has fn called once, on a goroutine of its own, when the
// reader has seen n seeks: reads outside a sequential run, a file read
// at random (the live mount then copies the whole object to disk, as a
// random reader will want most of it). Call it before the first read.
func (r *Reader[K]) WhenRandom(n int, fn func()) {
	r.randomAfter, r.onRandom = n, fn
}

// ReadBeside has the reader ask fn for the bytes of a piece that is not
// in memory before loading it: fn fills p with the len(p) bytes at off
// of the piece key and returns true, or returns false (then p is filled
// by loading the piece). The live mount reads its disk cache so, a
// small read costing the bytes it asks for instead of the whole piece.
// Call it before the first read.
func (r *Reader[K]) ReadBeside(fn func(key K, p []byte, off int64) bool) {
	r.direct = fn
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
	inRun := r.readAhead(off, end) && r.loadRun != nil

	var wg sync.WaitGroup
	errs := make([]error, last-first+1)
	for i := first; i <= last; i++ {
		copyPiece := func() {
			pc := r.l.pieces[i]
			ps := r.l.Start(i)
			lo, hi := max(off, ps), min(end, r.l.ends[i])
			if r.direct != nil && !r.c.Contains(pc.Key) && r.direct(pc.Key, p[lo-off:hi-off], lo-ps) {
				return
			}
			var data []byte
			var err error
			if inRun {
				data, err = r.c.GetWith(ctx, pc.Key, r.loadOne(pc.Key))
			} else {
				data, err = r.c.Get(ctx, pc.Key)
			}
			if err == nil {
				err = checkSize(i, pc, data)
			}
			if err != nil {
				errs[i-first] = err
				return
			}
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

// loadOne is a load of key alone with the run loader.
func (r *Reader[K]) loadOne(key K) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		var data []byte
		put := func(_ int, b []byte) { data = b }
		if err := r.loadRun(ctx, []K{key}, put); err != nil {
			return nil, err
		}
		if data == nil {
			return nil, fmt.Errorf("piece %v: its load returned without it", key)
		}
		return data, nil
	}
}

// readAhead updates the sequential state with a read of [off, end),
// queues the pieces of the window after it, and reports whether the read
// is part of a run with its window open. A run opens the window at once
// if it started at the file's beginning (cat, grep), else only once it
// is seekRun long.
func (r *Reader[K]) readAhead(off, end int64) bool {
	if r.maxAhead <= 0 {
		return false
	}
	r.mu.Lock()
	if off >= r.next-r.slack && off <= r.next+r.slack {
		r.from = min(r.from, off)
		r.next = max(end, r.next)
		if r.from == 0 || r.next-r.from >= r.run {
			r.window = min(max(2*r.window, minAhead), r.maxAhead)
		}
	} else {
		r.window, r.next, r.from, r.queued = 0, end, off, 0 // a seek
		if r.seeks++; r.onRandom != nil && r.seeks >= r.randomAfter {
			go r.onRandom()
			r.onRandom = nil
		}
	}
	window := r.window
	size := r.l.Size()
	if window == 0 || end >= size {
		r.mu.Unlock()
		return window > 0
	}
	if r.loadRun != nil {
		r.queueRunsLocked(off, end, window)
		r.mu.Unlock()
		return true
	}
	r.mu.Unlock()
	from, to := r.l.PieceAt(end), r.l.PieceAt(min(end+window, size)-1)
	keys := make([]K, 0, to-from+1)
	for i := from; i <= to; i++ {
		keys = append(keys, r.l.pieces[i].Key)
	}
	r.c.Prefetch(keys)
	return true
}

// queueRunsLocked queues the pieces of the window after end that are not
// queued yet, in stretches, once less than half the window is queued
// ahead of end. When the window opens at this read [off, end) (nothing
// queued from it on), the first stretch starts at off's piece and is
// loaded now: the read's own pieces come with the first request of the
// window instead of one of their own (a small file read from its start,
// as grep does, costs one GET, not two). Stretches end at multiples of
// their size from the file's start, and the window's end is rounded
// down to one: requests are whole stretches, not a stretch and a piece
// to reach exactly end+window (a 16 MiB file read in order took 8
// requests, two of them of one 256 KiB piece, and none aligned; now 6,
// aligned, as stores keep objects in aligned blocks). r.mu must be held.
func (r *Reader[K]) queueRunsLocked(off, end, window int64) {
	opening := r.queued <= off
	if !opening && r.queued-end >= window/2 {
		return
	}
	size := r.l.Size()
	// One request for a small window (the rest of a small file), four
	// at once for a large one.
	step := min(max(window/4, minAhead), r.maxRun)
	lo := max(end, r.queued)
	if opening {
		lo = r.l.Start(r.l.PieceAt(off))
	}
	hi := (end + window) / step * step // window >= step: past end
	if hi <= lo {
		hi = (lo/step + 1) * step
	}
	hi = min(hi, size)
	if lo >= hi {
		return
	}
	from, to := r.l.PieceAt(lo), r.l.PieceAt(hi-1)
	r.queued = r.l.ends[to]
	for i := from; i <= to; {
		var keys []K
		// The stretch ends before the first piece that starts at or
		// past the next multiple of step.
		limit := (r.l.Start(i)/step + 1) * step
		for ; i <= to && (len(keys) == 0 || r.l.Start(i) < limit); i++ {
			keys = append(keys, r.l.pieces[i].Key)
		}
		if opening {
			r.c.LoadRun(keys, r.loadRun)
			opening = false
			continue
		}
		r.c.PrefetchRun(keys, r.loadRun)
	}
}

// checkSize reports a piece whose loaded length is not its size.
func checkSize[K comparable](i int, pc Piece[K], data []byte) error {
	if int64(len(data)) == pc.Size {
		return nil
	}
	return fmt.Errorf("piece %d (%v): %d bytes, the file says %d", i, pc.Key, len(data), pc.Size)
}
