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
package diskcache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

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

	hits, misses, writeErrs atomic.Int64
}

var (
	_ store.Storage     = (*Storage)(nil)
	_ store.Invalidator = (*Storage)(nil)
	_ store.Wrapper     = (*Storage)(nil)
)

// New wraps st, disabled until Enable.
func New(st store.Storage) *Storage { return &Storage{inner: st} }

// DefaultDir is where the metadata of the store with id storeID is cached:
// the user's cache folder (XDG_CACHE_HOME, else ~/.cache), coffer, the id.
func DefaultDir(storeID string) (string, error) {
	if storeID == "" || strings.ContainsAny(storeID, `/\.`) {
		return "", fmt.Errorf("disk cache: invalid store id %q", storeID)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("disk cache: %w", err)
	}
	return filepath.Join(base, "coffer", storeID), nil
}

// Enable starts caching under dir, creating it with mode 0700.
func (d *Storage) Enable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	d.mu.Lock()
	d.dir = dir
	d.mu.Unlock()
	return nil
}

// Stats count what the disk cache did.
type Stats struct {
	Hits, Misses, WriteErrors int64
}

// Stats returns the counters.
func (d *Storage) Stats() Stats {
	return Stats{Hits: d.hits.Load(), Misses: d.misses.Load(), WriteErrors: d.writeErrs.Load()}
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
	name := d.objectPath(h)
	if name == "" {
		return "", false
	}
	switch h.Kind {
	case store.KindIndex, store.KindSnapshot:
		if off == 0 && length < 0 {
			return name, true
		}
	case store.KindTreePack:
		if off >= 0 && length > 0 {
			return fmt.Sprintf("%s.%d.%d", name, off, length), false
		}
	}
	return "", false
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
		return data, nil
	}
	d.misses.Add(1)
	data, err := d.inner.Get(ctx, h, off, length)
	if err != nil {
		return nil, err
	}
	if valid(h, data, whole, length) {
		if err := writeAtomic(p, data); err != nil {
			d.writeErrs.Add(1)
		}
	}
	return data, nil
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
	}
	if name := d.objectPath(h); name != "" && h.Kind == store.KindTreePack {
		ranges, _ := filepath.Glob(name + ".*.*") // hex names hold no pattern characters
		for _, r := range ranges {
			os.Remove(r)
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
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
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
