package cache

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/coffer-backup/coffer/engine"
)

// Chunks is the LRU of decrypted file chunks that every open file shares.
type Chunks = LRU[engine.ID, []byte]

// NewChunks returns an LRU of at most maxBytes of chunks, loaded with load
// (in coffer, engine.Repo.LoadBlob), running at most parallel read-ahead
// loads at once.
func NewChunks(maxBytes int64, parallel int, load Loader[engine.ID, []byte]) *Chunks {
	return NewBytes(maxBytes, parallel, load)
}

// File is a file's content as a list of chunks, with the offset where
// each chunk ends computed once, so that a read finds its first chunk by
// binary search.
type File struct {
	chunks []engine.Chunk
	ends   []int64 // ends[i] is the offset just past chunk i
}

// NewFile indexes chunks.
func NewFile(chunks []engine.Chunk) *File {
	f := &File{chunks: chunks, ends: make([]int64, len(chunks))}
	var off int64
	for i, c := range chunks {
		off += int64(c.Size)
		f.ends[i] = off
	}
	return f
}

// Size is the file's length.
func (f *File) Size() int64 {
	if len(f.ends) == 0 {
		return 0
	}
	return f.ends[len(f.ends)-1]
}

// chunkAt returns the index of the chunk holding byte off (< Size).
func (f *File) chunkAt(off int64) int {
	return sort.Search(len(f.ends), func(i int) bool { return f.ends[i] > off })
}

func (f *File) start(i int) int64 {
	if i == 0 {
		return 0
	}
	return f.ends[i-1]
}

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

// Reader reads one open file through the shared chunk LRU. A read fetches
// the chunks it covers, in parallel, and waits only for those; when it
// continues a sequential run, the chunks after it, up to the read-ahead
// window, are queued for prefetch, except those that are cached or
// already coming (the window is widened, then clipped to what is not
// cached). Safe for concurrent use.
type Reader struct {
	c        *Chunks
	f        *File
	maxAhead int64
	slack    int64 // seqSlack, smaller in tests

	mu     sync.Mutex
	next   int64 // offset just past the previous read
	window int64 // read-ahead bytes; 0 after a seek
}

// NewReader returns a reader of f that reads ahead at most maxAhead
// bytes (0: no read-ahead).
func NewReader(c *Chunks, f *File, maxAhead int64) *Reader {
	return &Reader{c: c, f: f, maxAhead: maxAhead, slack: seqSlack}
}

// ReadAt reads len(p) bytes at off, fewer only at the end of the file
// (then with io.EOF).
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	size := r.f.Size()
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
	first, last := r.f.chunkAt(off), r.f.chunkAt(end-1)
	r.readAhead(off, end)

	var wg sync.WaitGroup
	errs := make([]error, last-first+1)
	for i := first; i <= last; i++ {
		copyChunk := func() {
			data, err := r.c.Get(ctx, r.f.chunks[i].ID)
			if err == nil && int64(len(data)) != int64(r.f.chunks[i].Size) {
				err = fmt.Errorf("chunk %s: %d bytes, the file says %d", r.f.chunks[i].ID.Short(), len(data), r.f.chunks[i].Size)
			}
			if err != nil {
				errs[i-first] = err
				return
			}
			cs := r.f.start(i)
			lo, hi := max(off, cs), min(end, r.f.ends[i])
			copy(p[lo-off:hi-off], data[lo-cs:hi-cs])
		}
		if i == last {
			copyChunk() // the last (usually only) one on this goroutine
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); copyChunk() }()
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
// queues the chunks of the window after it.
func (r *Reader) readAhead(off, end int64) {
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
	if window == 0 || end >= r.f.Size() {
		return
	}
	from, to := r.f.chunkAt(end), r.f.chunkAt(min(end+window, r.f.Size())-1)
	ids := make([]engine.ID, 0, to-from+1)
	for i := from; i <= to; i++ {
		ids = append(ids, r.f.chunks[i].ID)
	}
	r.c.Prefetch(ids)
}
