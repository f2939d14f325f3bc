package object

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// A live tree is a store of objects seen as it is now, one level at a
// time: a bucket under a prefix, whose keys are split on "/" the way a
// snapshot's are (so the same key→path mapping, engine/keymap, names
// them). The mount of a live bucket (fusefs) reads through this seam;
// s3io implements it. Nothing here knows S3 or FUSE.

// LiveEntry is one entry of a level of a live tree: an object, or a
// folder (a key prefix that holds objects).
type LiveEntry struct {
	// Name is the key segment below the level listed: the object's key,
	// or the folder's prefix without its "/", with the level's prefix
	// cut off. It may be "" (keys like "a//b" or "a/").
	Name  string
	Dir   bool
	Size  int64     // an object's length in bytes
	MTime time.Time // an object's last-modified time
	// ETag pins an object's content: reads of it are refused once the
	// object has another (ErrChanged).
	ETag string
	// Class is the storage class the listing gives ("" if none).
	Class string
	// VersionID is the version to read, in a tree of versions (a point
	// in time, or every version); "" reads the current object.
	VersionID string
	// Versions are, in a tree that shows them, every version of the
	// object newest first, delete markers among them (Deleted).
	Versions []LiveEntry
	// Deleted says the object has no current version (its latest is a
	// delete marker): the entry is there for its Versions alone. Among
	// Versions, it says the version is a delete marker.
	Deleted bool
}

// Object returns what reads of entry e, at key, are pinned to.
func (e *LiveEntry) Object(key string) LiveObject {
	return LiveObject{Key: key, VersionID: e.VersionID, ETag: e.ETag, Class: e.Class}
}

// LiveObject names one object (or one version of it) to read: its key
// below the tree's prefix, its version ("" the current one), the ETag
// reads are pinned to and the storage class its listing gave.
type LiveObject struct {
	Key, VersionID, ETag, Class string
}

// LiveAttr is one attribute of an object (an S3 header, user metadata,
// a tag), keyed as the nodes of a snapshot key them.
type LiveAttr struct {
	Key   string
	Value []byte
}

// LivePage is one page of a level's listing.
type LivePage struct {
	// Entries are in key order; a folder is listed once.
	Entries []LiveEntry
	// Next is the token of the next page; "" on the last one.
	Next string
}

// LiveTree is a tree of objects read as it is now.
type LiveTree interface {
	// List returns one page of the level under prefix ("" for the top,
	// else a key prefix ending in "/"), starting at token ("" for the
	// first page).
	List(ctx context.Context, prefix, token string) (LivePage, error)
	// Stat looks up one name of the level under prefix without listing
	// the level: the object prefix+name if there is one (else nil), and
	// whether the folder prefix+name+"/" holds anything.
	Stat(ctx context.Context, prefix, name string) (obj *LiveEntry, dir bool, err error)
	// ReadRange returns exactly n bytes at off of object o, read only
	// while it has o's ETag: an error wrapping ErrChanged if it has
	// changed since, ErrNotRestored if it is archived.
	ReadRange(ctx context.Context, o LiveObject, off, n int64) ([]byte, error)
	// Attrs returns the attributes of object o, sorted by key, as a
	// backup of it records them.
	Attrs(ctx context.Context, o LiveObject) ([]LiveAttr, error)
}

// LiveRanges is a LiveTree that reads consecutive ranges of an object
// with one request: ReadRanges gives the sizes[i] bytes after the ranges
// before it, from off, with put(i, bytes) as each comes in (each once),
// pinned to o's ETag as ReadRange is.
type LiveRanges interface {
	ReadRanges(ctx context.Context, o LiveObject, off int64, sizes []int64, put func(i int, b []byte)) error
}

// ReadRanges reads consecutive ranges of o from off, sizes[i] bytes
// each, giving each with put as it comes: with one request if t is a
// LiveRanges, else with one ReadRange of them all.
func ReadRanges(ctx context.Context, t LiveTree, o LiveObject, off int64, sizes []int64, put func(i int, b []byte)) error {
	if rt, ok := t.(LiveRanges); ok {
		return rt.ReadRanges(ctx, o, off, sizes, put)
	}
	var n int64
	for _, s := range sizes {
		n += s
	}
	data, err := t.ReadRange(ctx, o, off, n)
	if err != nil {
		return err
	}
	if int64(len(data)) != n {
		return fmt.Errorf("read %d bytes at %d of %s: got %d", n, off, o.Key, len(data))
	}
	for i, s := range sizes {
		put(i, data[:s:s])
		data = data[s:]
	}
	return nil
}

// ErrChanged says a live object no longer has the ETag a read was pinned
// to: it was rewritten (or deleted and written again) since it was listed.
var ErrChanged = errors.New("the object changed since it was listed")

// ErrNotRestored says an object is in an archive storage class (S3
// Glacier Flexible Retrieval, Deep Archive) and has no restored copy to
// read.
var ErrNotRestored = errors.New("the object is archived and not restored")

// FlatLive is a live tree served from one listing of every object below
// the prefix (no delimiter), taken again once it is older than its TTL:
// the --list-all, --at and --versions trees of the live mount. The
// listing is kept in memory, or (NewFlatLiveOnDisk) in a listing file
// that outlives the mount. A level is a walk of the sorted keys that
// skips over each folder's keys (a binary search), a lookup a binary
// search; reads and attributes go to the tree that made the listing.
type FlatLive struct {
	list  func(ctx context.Context) ([]LiveEntry, error)
	pages PagesFunc // with path: the listing written to disk
	path  string
	logf  func(format string, args ...any)
	base  LiveTree
	ttl   time.Duration

	mu  sync.Mutex
	cur flatEntries // sorted by Name: the whole key below the prefix
	at  time.Time
}

// PagesFunc lists every object below a prefix, giving them to fn page
// by page in the server's order (S3's: by key, bytewise), Name the whole
// key below the prefix. An error of fn is returned as it is.
type PagesFunc func(ctx context.Context, fn func(page []LiveEntry) error) error

// flatEntries is a sorted listing: in memory, or a listing file.
type flatEntries interface {
	Len() int
	Name(i int) (string, error)
	// Entries returns entries i to j (j excluded).
	Entries(i, j int) ([]LiveEntry, error)
}

type memEntries []LiveEntry

func (m memEntries) Len() int                              { return len(m) }
func (m memEntries) Name(i int) (string, error)            { return m[i].Name, nil }
func (m memEntries) Entries(i, j int) ([]LiveEntry, error) { return m[i:j:j], nil }

// NewFlatLive returns the tree of the entries list returns (Name the
// whole key below the prefix, one entry a key), listed again after ttl
// (negative: never); base reads the objects.
func NewFlatLive(list func(ctx context.Context) ([]LiveEntry, error), base LiveTree, ttl time.Duration) *FlatLive {
	return &FlatLive{list: list, base: base, ttl: ttl}
}

// NewFlatLiveOnDisk returns the tree of the objects pages lists, kept in
// the listing file at path (README "Mounting a live bucket"): a listing
// file there younger than ttl (not negative: forever is until unmount)
// is used without listing, whichever mount wrote it; a listing
// is written there whole, then renamed into place. Memory holds 8 bytes
// a key. If the file cannot be written (a full disk, say) or the server
// lists out of key order, the listing is kept in memory instead, and
// logf says why.
func NewFlatLiveOnDisk(pages PagesFunc, path string, base LiveTree, ttl time.Duration, logf func(format string, args ...any)) *FlatLive {
	return &FlatLive{list: pages.All, pages: pages, path: path, logf: logf, base: base, ttl: ttl}
}

// All lists every object at once, the pages gathered in memory.
func (pages PagesFunc) All(ctx context.Context) ([]LiveEntry, error) {
	var ents []LiveEntry
	err := pages(ctx, func(page []LiveEntry) error {
		ents = append(ents, page...)
		return nil
	})
	return ents, err
}

var _ LiveTree = (*FlatLive)(nil)

// fresh says whether a listing taken at t may still be used.
func (f *FlatLive) fresh(t time.Time) bool {
	age := time.Since(t)
	return f.ttl < 0 || age >= 0 && age < f.ttl
}

// Load takes the listing, again if it is stale. The lock is held while
// listing: readers wait for one listing instead of starting their own.
func (f *FlatLive) Load(ctx context.Context) error {
	_, err := f.load(ctx)
	return err
}

func (f *FlatLive) load(ctx context.Context) (flatEntries, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil && f.fresh(f.at) {
		return f.cur, nil
	}
	if f.path != "" {
		lf, err := f.onDisk(ctx)
		if err == nil {
			// The file replaced is not closed: a reader may still be
			// reading it (the collector closes it).
			f.cur, f.at = lf, lf.listedAt
			return lf, nil
		}
		var de diskError
		switch {
		case errors.As(err, &de):
			f.logf("could not keep the listing in %s (%v): keeping it in memory", f.path, de.err)
		case errors.Is(err, errUnsorted):
			f.logf("the server listed keys out of order (%v): keeping the listing in memory", err)
		default:
			return nil, err
		}
	}
	ents, err := f.list(ctx)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	f.cur, f.at = memEntries(ents), time.Now()
	return f.cur, nil
}

// diskError is an error of the listing file, not of the listing.
type diskError struct{ err error }

func (e diskError) Error() string { return e.err.Error() }

// onDisk opens the listing file if it is fresh, else lists into a new
// one and opens that.
func (f *FlatLive) onDisk(ctx context.Context) (*listFile, error) {
	lf, err := openListFile(f.path)
	switch {
	case err == nil && f.ttl >= 0 && f.fresh(lf.listedAt):
		// (A TTL of forever keeps a listing until unmount: a new mount
		// lists again.)
		now := time.Now()
		os.Chtimes(f.path, now, now) // used: kept by removeOldListFiles
		return lf, nil
	case err == nil:
		lf.f.Close()
	default:
		if _, serr := os.Stat(f.path); serr == nil { // there, not usable
			f.logf("not using %v; listing again", err)
		}
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, diskError{err}
	}
	removeOldListFiles(dir, ListFileMaxAge)
	tmp := fmt.Sprintf("%s.%d-%d.tmp", f.path, os.Getpid(), time.Now().UnixNano())
	w, err := newListWriter(tmp)
	if err != nil {
		return nil, diskError{err}
	}
	at := time.Now()
	var werr error
	err = f.pages(ctx, func(page []LiveEntry) error {
		for i := range page {
			if werr = w.add(&page[i]); werr != nil {
				return werr
			}
		}
		return nil
	})
	if werr == nil && err == nil {
		if werr = w.finish(at); werr == nil {
			werr = os.Rename(tmp, f.path)
		}
	}
	if werr != nil || err != nil {
		w.abort()
	}
	switch {
	case errors.Is(werr, errUnsorted):
		return nil, werr
	case werr != nil:
		return nil, diskError{werr}
	case err != nil:
		return nil, err
	}
	if lf, err = openListFile(f.path); err != nil {
		return nil, diskError{err}
	}
	return lf, nil
}

// ListFileMaxAge is how long a listing file no mount has used is kept.
const ListFileMaxAge = 30 * 24 * time.Hour

// search returns the first entry of es at or after from whose name is
// not below key.
func search(es flatEntries, from int, key string) (int, error) {
	var err error
	i := from + sort.Search(es.Len()-from, func(k int) bool {
		if err != nil {
			return true
		}
		n, e := es.Name(from + k)
		if e != nil {
			err = e
			return true
		}
		return n >= key
	})
	return i, err
}

// flatBatch is how many entries a walk of a level reads at once.
const flatBatch = 256

// List returns the whole level as one page.
func (f *FlatLive) List(ctx context.Context, prefix, token string) (LivePage, error) {
	es, err := f.load(ctx)
	if err != nil {
		return LivePage{}, err
	}
	var pg LivePage
	i, err := search(es, 0, prefix)
	var batch []LiveEntry // entries from bi on
	bi := 0
	for err == nil && i < es.Len() {
		if i < bi || i >= bi+len(batch) {
			bi = i
			if batch, err = es.Entries(i, min(i+flatBatch, es.Len())); err != nil {
				break
			}
		}
		e := batch[i-bi]
		if !strings.HasPrefix(e.Name, prefix) {
			break
		}
		rest := e.Name[len(prefix):]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			pg.Entries = append(pg.Entries, LiveEntry{Name: rest[:j], Dir: true})
			// '0' follows '/': past every key of that folder.
			i, err = search(es, i, prefix+rest[:j]+"0")
			continue
		}
		e.Name = rest
		pg.Entries = append(pg.Entries, e)
		i++
	}
	if err != nil {
		return LivePage{}, err
	}
	return pg, nil
}

// Stat looks prefix+name up in the listing.
func (f *FlatLive) Stat(ctx context.Context, prefix, name string) (*LiveEntry, bool, error) {
	es, err := f.load(ctx)
	if err != nil {
		return nil, false, err
	}
	key := prefix + name
	i, err := search(es, 0, key)
	if err != nil {
		return nil, false, err
	}
	var obj *LiveEntry
	if i < es.Len() {
		got, err := es.Entries(i, i+1)
		if err != nil {
			return nil, false, err
		}
		if e := got[0]; e.Name == key {
			e.Name = name
			obj = &e
			i++
		}
	}
	j, err := search(es, i, key+"/")
	if err != nil || j >= es.Len() {
		return obj, false, err
	}
	n, err := es.Name(j)
	return obj, err == nil && strings.HasPrefix(n, key+"/"), err
}

func (f *FlatLive) ReadRange(ctx context.Context, o LiveObject, off, n int64) ([]byte, error) {
	return f.base.ReadRange(ctx, o, off, n)
}

func (f *FlatLive) ReadRanges(ctx context.Context, o LiveObject, off int64, sizes []int64, put func(i int, b []byte)) error {
	return ReadRanges(ctx, f.base, o, off, sizes, put)
}

func (f *FlatLive) Attrs(ctx context.Context, o LiveObject) ([]LiveAttr, error) {
	return f.base.Attrs(ctx, o)
}
