// Package diskcache is a store.Storage decorator that keeps copies of a
// store's immutable metadata on local disk, exactly as fetched: index
// files, snapshot objects, and the ranges of tree packs that the engine
// reads (directories, tree pages, chunk lists). Data packs, the config,
// locks and listings always go to the store. It chooses what to keep by
// the handle's kind, never by parsing object names.
//
// What it keeps is sealed: the bytes are the store's ciphertext, so the
// cache reveals no more than the store itself (names, sizes and content
// stay encrypted) and every byte read from it is authenticated by the
// engine as if it came from the store. Object names are content hashes,
// so a cached copy can never go stale. Index and snapshot copies are
// re-hashed when read; a pack range must have the length asked for.
// Folders are created 0700 and files 0600 all the same.
//
// The copies are bounded in bytes (SetLimit; DefaultLimit): the sizes of
// the files in the folder are read at Enable, and a copy that would take
// the total over the limit first removes the least recently used ones.
// Recency is kept in memory, starting from the files' mtimes, which a
// hit sets to the time of use so that the next process starts from it.
// Each process counts what it found at Enable and what it wrote since;
// copies another process adds at the same time are counted when this
// one reads them.
package diskcache

import (
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/engine/store"
)

// Storage is the caching decorator. It passes everything through until
// Enable names its folder, which lets the caller open the store (and
// learn its id) through it first.
type Storage struct {
	inner store.Storage

	mu  sync.RWMutex
	dir string

	// The copies by recency, most recent first, and their total size.
	lmu   sync.Mutex
	limit int64
	total int64
	lru   *list.List               // of *copyFile
	files map[string]*list.Element // by path

	hits, misses, writeErrs, evicted atomic.Int64
}

// copyFile is a copy in the folder, as counted against the limit.
type copyFile struct {
	path string
	size int64 // rounded up to whole blocks: about what it takes on disk
}

// DefaultLimit bounds the copies kept when SetLimit is not called.
const DefaultLimit = 1 << 30

// blockSize is what a copy's size is rounded up to when counted.
const blockSize = 4096

func diskSize(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

var (
	_ store.Storage     = (*Storage)(nil)
	_ store.Invalidator = (*Storage)(nil)
	_ store.Wrapper     = (*Storage)(nil)
)

// New wraps st, disabled until Enable, with a limit of DefaultLimit.
func New(st store.Storage) *Storage {
	return &Storage{inner: st, limit: DefaultLimit, lru: list.New(), files: map[string]*list.Element{}}
}

// SetLimit bounds the bytes of the copies kept (each counted in whole 4
// KiB blocks), removing the least recently used at once if they are over
// it. A copy larger than the limit is not kept.
func (d *Storage) SetLimit(n int64) {
	d.lmu.Lock()
	defer d.lmu.Unlock()
	d.limit = n
	d.evictLocked(0)
}

// Size returns the bytes of the copies counted against the limit.
func (d *Storage) Size() int64 {
	d.lmu.Lock()
	defer d.lmu.Unlock()
	return d.total
}

// Enable starts caching under dir, creating it with mode 0700.
func (d *Storage) Enable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	// Count the copies already there, oldest first.
	type found struct {
		path  string
		size  int64
		mtime time.Time
	}
	var all []found
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		if strings.HasPrefix(e.Name(), store.TempPrefix) {
			// A write another process may still be making, or one a
			// crash left behind.
			if time.Since(fi.ModTime()) > time.Hour {
				os.Remove(p)
			}
			return nil
		}
		all = append(all, found{p, fi.Size(), fi.ModTime()})
		return nil
	})
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	d.lmu.Lock()
	d.lru.Init()
	d.files, d.total = map[string]*list.Element{}, 0
	for _, f := range all {
		d.files[f.path] = d.lru.PushFront(&copyFile{path: f.path, size: diskSize(f.size)})
		d.total += diskSize(f.size)
	}
	d.lmu.Unlock()
	d.mu.Lock()
	d.dir = dir
	d.mu.Unlock()
	return nil
}

// used records a hit on the copy at p of n bytes: it becomes the most
// recently used (counted, if another process wrote it), and its mtime
// says so for the next process.
func (d *Storage) used(p string, n int) {
	d.lmu.Lock()
	if e := d.files[p]; e != nil {
		d.lru.MoveToFront(e)
	} else {
		d.files[p] = d.lru.PushFront(&copyFile{path: p, size: diskSize(int64(n))})
		d.total += diskSize(int64(n))
	}
	d.lmu.Unlock()
	now := time.Now()
	os.Chtimes(p, now, now)
}

// forget stops counting the copy at p, which is gone.
func (d *Storage) forget(p string) {
	d.lmu.Lock()
	d.forgetLocked(p)
	d.lmu.Unlock()
}

func (d *Storage) forgetLocked(p string) {
	if e := d.files[p]; e != nil {
		d.total -= e.Value.(*copyFile).size
		d.lru.Remove(e)
		delete(d.files, p)
	}
}

// evictLocked removes the least recently used copies until n more bytes
// fit under the limit, and reports whether they do.
func (d *Storage) evictLocked(n int64) bool {
	if n > d.limit {
		return false
	}
	for d.total+n > d.limit {
		e := d.lru.Back()
		if e == nil {
			break
		}
		c := e.Value.(*copyFile)
		os.Remove(c.path)
		d.forgetLocked(c.path)
		d.evicted.Add(1)
	}
	return d.total+n <= d.limit
}

// keep writes a copy of data at p, making room for it first.
func (d *Storage) keep(p string, data []byte) error {
	size := diskSize(int64(len(data)))
	d.lmu.Lock()
	d.forgetLocked(p) // a copy being replaced
	if !d.evictLocked(size) {
		d.lmu.Unlock()
		return nil // larger than the limit: not kept
	}
	d.files[p] = d.lru.PushFront(&copyFile{path: p, size: size})
	d.total += size
	d.lmu.Unlock()
	if err := writeAtomic(p, data); err != nil {
		d.forget(p)
		return err
	}
	return nil
}

// Stats count what the disk cache did.
type Stats struct {
	Hits, Misses, WriteErrors int64
	Evicted                   int64 // copies removed to stay under the limit
}

// Stats returns the counters.
func (d *Storage) Stats() Stats {
	return Stats{Hits: d.hits.Load(), Misses: d.misses.Load(), WriteErrors: d.writeErrs.Load(), Evicted: d.evicted.Load()}
}

// objectPath is where copies of h sit: where the store keeps the
// object, under the cache folder; a range gets its offset and length
// appended to the name. "" when caching is off or h is invalid.
func (d *Storage) objectPath(h store.Handle) string {
	d.mu.RLock()
	dir := d.dir
	d.mu.RUnlock()
	if dir == "" || h.Valid() != nil {
		return ""
	}
	return filepath.Join(dir, filepath.FromSlash(store.ObjectName(h)))
}

// cachePath returns where a Get of h at off/length is kept, and whether
// the whole object is; "" when it is not cached.
func (d *Storage) cachePath(h store.Handle, off, length int64) (string, bool) {
	// Decide by kind first: data packs, the busiest reads, pass through
	// without a lock or a path.
	whole := (h.Kind == store.KindIndex || h.Kind == store.KindSnapshot) && off == 0 && length < 0
	rng := h.Kind == store.KindTreePack && off >= 0 && length > 0
	if !whole && !rng {
		return "", false
	}
	name := d.objectPath(h)
	switch {
	case name == "":
		return "", false
	case rng:
		return fmt.Sprintf("%s.%d.%d", name, off, length), false
	}
	return name, true
}

func (d *Storage) Location() string         { return d.inner.Location() }
func (d *Storage) Features() store.Features { return d.inner.Features() }
func (d *Storage) Unwrap() store.Storage    { return d.inner }

// Get serves cached metadata from disk and keeps what it fetches.
func (d *Storage) Get(ctx context.Context, h store.Handle, off, length int64) ([]byte, error) {
	p, whole := d.cachePath(h, off, length)
	if p == "" {
		return d.inner.Get(ctx, h, off, length)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(p); err == nil && valid(h, data, whole, length) {
		d.hits.Add(1)
		d.used(p, len(data))
		return data, nil
	}
	d.misses.Add(1)
	data, err := d.inner.Get(ctx, h, off, length)
	if err != nil {
		return nil, err
	}
	if valid(h, data, whole, length) {
		if err := d.keep(p, data); err != nil {
			d.writeErrs.Add(1)
		}
	}
	return data, nil
}

// GetInto passes a read of what is not kept here on to the storage
// below; a kept range is read as Get reads it (RangeReader).
func (d *Storage) GetInto(ctx context.Context, h store.Handle, off int64, buf []byte) error {
	if p, _ := d.cachePath(h, off, int64(len(buf))); p == "" {
		return store.GetInto(ctx, d.inner, h, off, buf)
	}
	data, err := d.Get(ctx, h, off, int64(len(buf)))
	if err != nil {
		return err
	}
	copy(buf, data) // Get gave exactly len(buf) bytes, or an error
	return nil
}

// valid checks a copy: a whole object hashes to its name, a range has
// the length asked for.
func valid(h store.Handle, data []byte, whole bool, length int64) bool {
	if !whole {
		return int64(len(data)) == length
	}
	sum := blake3.Sum256(data)
	return hex.EncodeToString(sum[:]) == h.Name
}

// Invalidate drops the cached copy of a Get whose bytes failed
// authentication, so the next Get fetches them.
func (d *Storage) Invalidate(h store.Handle, off, length int64) {
	if p, _ := d.cachePath(h, off, length); p != "" {
		os.Remove(p)
		d.forget(p)
	}
}

func (d *Storage) Put(ctx context.Context, h store.Handle, data []byte) error {
	return d.inner.Put(ctx, h, data)
}

func (d *Storage) Stat(ctx context.Context, h store.Handle) (store.ObjectInfo, error) {
	return d.inner.Stat(ctx, h)
}

func (d *Storage) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	return d.inner.List(ctx, k, fn)
}

// Delete removes h from the store and every copy of it: the whole
// object, and each range kept of a tree pack. The copies go after the
// store's Delete, even a failed one (it may have happened all the
// same), so a Get racing the Delete is less likely to leave one behind.
func (d *Storage) Delete(ctx context.Context, h store.Handle) error {
	err := d.inner.Delete(ctx, h)
	if p, whole := d.cachePath(h, 0, -1); p != "" && whole {
		os.Remove(p)
		d.forget(p)
	}
	if name := d.objectPath(h); name != "" && h.Kind == store.KindTreePack {
		ranges, _ := filepath.Glob(name + ".*.*") // hex names hold no pattern characters
		for _, r := range ranges {
			os.Remove(r)
			d.forget(r)
		}
	}
	return err
}

func (d *Storage) NewTemp(ctx context.Context) (store.TempObject, error) {
	return d.inner.NewTemp(ctx)
}

func (d *Storage) GetVersion(ctx context.Context, h store.Handle) ([]byte, store.Version, error) {
	return d.inner.GetVersion(ctx, h)
}

func (d *Storage) PutIf(ctx context.Context, h store.Handle, data []byte, v store.Version) error {
	return d.inner.PutIf(ctx, h, data, v)
}

func writeAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), store.TempPrefix+"*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}
