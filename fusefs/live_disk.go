package fusefs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/coffer-backup/coffer/cache"
	"github.com/coffer-backup/coffer/engine/object"
)

// A live mount keeps the blocks it reads in two tiers: memory (the
// byte-bounded LRU, --cache-size) and, under it, a file on local disk
// (cache.Disk, --disk-cache-size, in the user's cache folder, removed
// from the folder as soon as it is made). Every block fetched is
// written to the disk tier too (by the tier's own goroutine, so that no
// reader waits for the disk; dropped if it falls behind), so what
// memory lets go is read from the disk instead of the bucket. A block on disk is keyed as in memory:
// object, ETag and version, so it is never served for another version.
//
// A file read at random (fillAfterSeeks seeks on one open handle) and
// small enough for the disk tier (at most three quarters of it) is
// copied whole to disk in the background, in ranged GETs of up to
// fillRun bytes (less with a small memory budget, which counts them),
// opt.Parallel at once for the whole mount (a block held in memory is
// written from there): a random reader soon reads from local disk
// instead of one GET a read. The copy stops when the handle is
// released, the mount ends, the disk tier turns off (a full disk), or a
// request fails (the object changed: the reads say so).

const (
	fillAfterSeeks = 4
	fillRun        = 8 << 20
	// fillMin is the smallest object filled: a smaller one costs a few
	// requests anyway.
	fillMin = 8 << 20
)

var errDiskOff = errors.New("the disk cache is off")

// openDisk makes the disk tier, if the options ask for one; if it
// cannot be made, the mount goes on in memory and says so.
func (f *LiveFS) openDisk() {
	if f.opt.DiskDir == "" {
		return
	}
	if f.opt.DiskSize <= 0 {
		f.opt.DiskSize = 1 << 30
	}
	// The tier says why it turned off; what to do is the mount's.
	logf := func(format string, args ...any) {
		f.opt.Log.Printf(format+"; reads go to the bucket (free space in %s, or mount with a smaller --disk-cache-size or --no-disk-cache)",
			append(args, f.opt.DiskDir)...)
	}
	d, err := cache.NewDisk[liveBlock](f.opt.DiskDir, f.opt.DiskSize, LiveBlock, logf)
	if err != nil {
		f.opt.Log.Printf("no disk cache of file blocks in %s (%v): keeping them in memory only (--no-disk-cache says so quietly)", f.opt.DiskDir, err)
		return
	}
	f.disk = d
	f.fills = make(chan struct{}, f.opt.Parallel)
}

// loadBlock is the memory tier's loader: the disk tier, else one ranged
// GET (kept on disk too).
func (f *LiveFS) loadBlock(ctx context.Context, b liveBlock) ([]byte, error) {
	if f.disk != nil {
		if data, ok := f.disk.Get(b); ok {
			return data, nil
		}
	}
	data, err := f.t.ReadRange(ctx, b.o, b.off, b.n)
	if err == nil && f.disk != nil {
		f.disk.PutLater(b, data)
	}
	return data, err
}

// runLoader is the read-ahead loader of an object of size bytes:
// loadRun, which keeps the blocks on disk too, unless the object is
// larger than the disk tier. Such a stream would only push out what the
// tier holds, and be pushed out itself before a second pass could find
// it (a least-recently-used cache keeps nothing of a scan larger than
// itself); not writing it also spares the stream the checksums and the
// writes. Its blocks read at random (loadBlock) are still kept.
func (f *LiveFS) runLoader(size int64) cache.RunLoader[liveBlock, []byte] {
	keep := f.disk != nil && size <= f.opt.DiskSize
	return func(ctx context.Context, blocks []liveBlock, put func(i int, b []byte)) error {
		return f.loadRun(ctx, blocks, put, keep)
	}
}

// loadRun loads consecutive blocks of one object: those at its start
// that the disk tier holds from there, the rest with one ranged read,
// each block kept in memory (and on disk if keep) as it comes; their
// bytes are counted against the memory budget until they are in it.
func (f *LiveFS) loadRun(ctx context.Context, blocks []liveBlock, put func(i int, b []byte), keep bool) error {
	first := 0
	if f.disk != nil {
		for ; first < len(blocks); first++ {
			data, ok := f.disk.Get(blocks[first])
			if !ok {
				break
			}
			put(first, data)
		}
	}
	rest := blocks[first:]
	if len(rest) == 0 {
		return nil
	}
	sizes := blockSizes(rest)
	releases := make([]func(), len(rest))
	for i, b := range rest {
		releases[i] = f.blocks.Reserve(b.n)
	}
	defer func() {
		for _, release := range releases {
			release()
		}
	}()
	return object.ReadRanges(ctx, f.t, rest[0].o, rest[0].off, sizes, func(i int, b []byte) {
		if keep {
			f.disk.PutLater(rest[i], b)
		}
		releases[i]()
		put(first+i, b)
	})
}

// fillWhenRandom has the object of handle h (laid out in pieces) copied
// whole to disk once h is read at random, if the disk tier can hold it.
func (f *LiveFS) fillWhenRandom(h *liveHandle, pieces []object.Piece[liveBlock]) {
	if f.disk == nil || f.opt.ReadAhead <= 0 || len(pieces) == 0 {
		return
	}
	size := h.r.Size()
	if size < fillMin || size > f.opt.DiskSize/4*3 {
		return
	}
	blocks := make([]liveBlock, len(pieces))
	for i, pc := range pieces {
		blocks[i] = pc.Key
	}
	h.r.WhenRandom(fillAfterSeeks, func() {
		h.mu.Lock()
		if h.released {
			h.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(f.ctx)
		h.stopFill = cancel
		h.mu.Unlock()
		defer cancel()
		if err := f.fill(ctx, blocks); err != nil && ctx.Err() == nil {
			f.log.print(f.opt.Log, fmt.Sprintf("copying %s to the disk cache stopped: %v", blocks[0].o.Key, err))
		}
	})
}

// fill copies the blocks of an object to the disk tier: those in memory
// from there, the others fetched in stretches of up to fillRun bytes, as
// many at once as f.fills allows.
func (f *LiveFS) fill(ctx context.Context, blocks []liveBlock) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The stretches in flight are counted in the memory budget: at most
	// half of it.
	stretch := min(fillRun, max(LiveBlock, f.opt.CacheSize/2/int64(cap(f.fills))))
	// A block on disk is skipped; one in memory is written from there.
	held := func(b liveBlock) bool {
		if f.disk.Contains(b) {
			return true
		}
		if data, ok := f.blocks.Peek(b); ok {
			f.disk.Put(b, data)
			return true
		}
		return false
	}
	var wg sync.WaitGroup
	for i := 0; i < len(blocks) && ctx.Err() == nil; {
		if held(blocks[i]) {
			i++
			continue
		}
		j, n := i, int64(0)
		for j < len(blocks) && n+blocks[j].n <= stretch && (j == i || !held(blocks[j])) {
			n += blocks[j].n
			j++
		}
		run := blocks[i:j]
		i = j
		select {
		case f.fills <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		if ctx.Err() != nil { // (both were ready: select picks either)
			<-f.fills
			continue
		}
		if f.disk.Off() {
			<-f.fills
			cancel(errDiskOff) // (the disk tier said why)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-f.fills; wg.Done() }()
			release := f.blocks.Reserve(n) // in memory until written
			defer release()
			err := object.ReadRanges(ctx, f.t, run[0].o, run[0].off, blockSizes(run), func(k int, b []byte) {
				f.disk.Put(run[k], b)
			})
			if err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && err != errDiskOff {
		return err
	}
	return nil
}

// blockSizes returns the length of each block, as ReadRanges takes them.
func blockSizes(blocks []liveBlock) []int64 {
	sizes := make([]int64, len(blocks))
	for i, b := range blocks {
		sizes[i] = b.n
	}
	return sizes
}
