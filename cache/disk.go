package cache

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

	"github.com/coffer-backup/coffer/engine"
)

// DiskStorage is an engine.Storage decorator that keeps copies of a
// store's immutable metadata objects on local disk, exactly as fetched:
// index files, snapshot objects, and the ranges of tree packs (packs/m/)
// that the engine reads, which hold directories, tree pages and chunk
// lists. Data packs, the config and listings always go to the store.
//
// What it keeps is sealed: the bytes are the store's ciphertext, so the
// cache reveals no more than the store itself (names, sizes and content
// stay encrypted) and every byte read from it is authenticated by the
// engine as if it came from the store. Object names are content hashes,
// so a cached copy can never go stale. Index and snapshot copies are
// re-hashed when read; a pack range must have the length asked for.
// Folders are created 0700 and files 0600 all the same.
//
// It passes everything through until Enable names its folder, which lets
// the caller open the store (and learn its id) through it first.
type DiskStorage struct {
	engine.Storage

	mu  sync.RWMutex
	dir string

	hits, misses, writeErrs atomic.Int64
}

// NewDiskStorage wraps st, disabled until Enable.
func NewDiskStorage(st engine.Storage) *DiskStorage { return &DiskStorage{Storage: st} }

// DefaultDir is where the metadata of the store with id storeID is cached:
// the user's cache folder (XDG_CACHE_HOME, else ~/.cache), coffer, the id.
func DefaultDir(storeID string) (string, error) {
	if storeID == "" || strings.ContainsAny(storeID, `/\.`) {
		return "", fmt.Errorf("cache: invalid store id %q", storeID)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return filepath.Join(base, "coffer", storeID), nil
}

// Enable starts caching under dir, creating it with mode 0700.
func (d *DiskStorage) Enable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	d.mu.Lock()
	d.dir = dir
	d.mu.Unlock()
	return nil
}

// DiskStats count what the disk cache did.
type DiskStats struct {
	Hits, Misses, WriteErrors int64
}

// Stats returns the counters.
func (d *DiskStorage) Stats() DiskStats {
	return DiskStats{Hits: d.hits.Load(), Misses: d.misses.Load(), WriteErrors: d.writeErrs.Load()}
}

// cachePath returns where a Get of name at off/length is kept, and
// whether the whole object is; "" when it is not cached.
func (d *DiskStorage) cachePath(name string, off, length int64) (string, bool) {
	d.mu.RLock()
	dir := d.dir
	d.mu.RUnlock()
	if dir == "" {
		return "", false
	}
	seg := strings.Split(name, "/")
	switch {
	case len(seg) == 2 && (seg[0] == "index" || seg[0] == "snapshots") && isHexID(seg[1]) && off == 0 && length < 0:
		return filepath.Join(dir, seg[0], seg[1]), true
	case len(seg) == 4 && seg[0] == "packs" && seg[1] == "m" && isHexID(seg[3]) && seg[2] == seg[3][:2] && off >= 0 && length > 0:
		return filepath.Join(dir, "packs", "m", seg[2], fmt.Sprintf("%s.%d.%d", seg[3], off, length)), false
	}
	return "", false
}

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Get serves cached metadata from disk and keeps what it fetches.
func (d *DiskStorage) Get(ctx context.Context, name string, off, length int64) ([]byte, error) {
	p, whole := d.cachePath(name, off, length)
	if p == "" {
		return d.Storage.Get(ctx, name, off, length)
	}
	if data, err := os.ReadFile(p); err == nil && valid(name, data, whole, length) {
		d.hits.Add(1)
		return data, nil
	}
	d.misses.Add(1)
	data, err := d.Storage.Get(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	if valid(name, data, whole, length) {
		if err := writeAtomic(p, data); err != nil {
			d.writeErrs.Add(1)
		}
	}
	return data, nil
}

// valid checks a copy: a whole object hashes to its name, a range has
// the length asked for.
func valid(name string, data []byte, whole bool, length int64) bool {
	if !whole {
		return int64(len(data)) == length
	}
	sum := blake3.Sum256(data)
	return hex.EncodeToString(sum[:]) == name[strings.LastIndex(name, "/")+1:]
}

// Invalidate drops the cached copy of a Get whose bytes failed
// authentication (engine.Invalidator), so the next Get fetches them.
func (d *DiskStorage) Invalidate(name string, off, length int64) {
	if p, _ := d.cachePath(name, off, length); p != "" {
		os.Remove(p)
	}
}

var _ engine.Invalidator = (*DiskStorage)(nil)

// Delete removes name from the store and any whole copy of it.
func (d *DiskStorage) Delete(ctx context.Context, name string) error {
	if p, whole := d.cachePath(name, 0, -1); p != "" && whole {
		os.Remove(p)
	}
	return d.Storage.Delete(ctx, name)
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
