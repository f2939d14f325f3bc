package object

import (
	"context"
	"fmt"

	"github.com/coffer-backup/coffer/cache"
)

// Window is one aligned range of an object that Windows fetches and
// keeps: Len bytes at Off (the window's size, less at the object's end).
type Window[O comparable] struct {
	Obj O
	Off int64
	Len int64
}

// Windows serves small ranges of large objects (the sealed blobs of a
// pack, the bytes of a bucket's object) through aligned windows of a
// fixed size kept in a byte-bounded LRU: reading a few bytes fetches the
// window around them in one ranged read, so that reads of their
// neighbours cost none. When a read needs a window and the one before it
// is held (the reads walk the object forwards), the window after it is
// fetched in the background. Safe for concurrent use.
type Windows[O comparable] struct {
	c    *cache.LRU[Window[O], []byte]
	size int64
}

// NewWindows returns windows of size bytes over objects read with fetch
// (n bytes at off of obj, exactly), holding at most maxBytes of them and
// fetching at most parallel in the background at once.
func NewWindows[O comparable](maxBytes, size int64, parallel int, fetch func(ctx context.Context, obj O, off, n int64) ([]byte, error)) *Windows[O] {
	if size < 1 {
		size = 1
	}
	load := func(ctx context.Context, w Window[O]) ([]byte, error) {
		return fetch(ctx, w.Obj, w.Off, w.Len)
	}
	return &Windows[O]{c: cache.NewBytes(maxBytes, parallel, load), size: size}
}

// window returns window i of an object of objSize bytes.
func (w *Windows[O]) window(obj O, objSize, i int64) Window[O] {
	off := i * w.size
	return Window[O]{Obj: obj, Off: off, Len: min(w.size, objSize-off)}
}

// Read returns a copy of the n bytes at off of obj, an object of objSize
// bytes, from the windows that hold them (fetched if they are not held).
// The copy is the caller's to change.
func (w *Windows[O]) Read(ctx context.Context, obj O, objSize, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > objSize {
		return nil, fmt.Errorf("range [%d, %d) outside an object of %d bytes", off, off+n, objSize)
	}
	out := make([]byte, n)
	if n == 0 {
		return out, nil
	}
	first, last := off/w.size, (off+n-1)/w.size
	if first > 0 && last+1 < (objSize+w.size-1)/w.size && w.c.Contains(w.window(obj, objSize, first-1)) {
		w.c.Prefetch([]Window[O]{w.window(obj, objSize, last+1)})
	}
	for i := first; i <= last; i++ {
		win := w.window(obj, objSize, i)
		data, err := w.c.Get(ctx, win)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != win.Len {
			w.c.Remove(win)
			return nil, fmt.Errorf("window [%d, %d) of %v: %d bytes", win.Off, win.Off+win.Len, obj, len(data))
		}
		lo, hi := max(off, win.Off), min(off+n, win.Off+win.Len)
		copy(out[lo-off:hi-off], data[lo-win.Off:hi-win.Off])
	}
	return out, nil
}

// Prefetch queues the windows holding the n bytes at off of obj that are
// neither held nor coming, and returns how many it queued.
func (w *Windows[O]) Prefetch(obj O, objSize, off, n int64) int {
	if off < 0 || n <= 0 || off+n > objSize {
		return 0
	}
	var wins []Window[O]
	for i := off / w.size; i <= (off+n-1)/w.size; i++ {
		wins = append(wins, w.window(obj, objSize, i))
	}
	return w.c.Prefetch(wins)
}

// Forget drops the windows holding the n bytes at off of obj, say
// because a blob read from them did not authenticate.
func (w *Windows[O]) Forget(obj O, objSize, off, n int64) {
	if off < 0 || n <= 0 || off+n > objSize {
		return
	}
	for i := off / w.size; i <= (off+n-1)/w.size; i++ {
		w.c.Remove(w.window(obj, objSize, i))
	}
}

// Stats are the window cache's counters.
func (w *Windows[O]) Stats() cache.Stats { return w.c.Stats() }

// Close cancels the fetches in flight.
func (w *Windows[O]) Close() { w.c.Close() }
