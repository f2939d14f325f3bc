package object

import (
	"context"
	"errors"
	"fmt"
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
// the prefix (no delimiter), kept in memory and taken again once it is
// older than its TTL: the --list-all, --at and --versions trees of the
// live mount. A level is a walk of the sorted keys that skips over each
// folder's keys (a binary search), a lookup a binary search; reads and
// attributes go to the tree that made the listing.
type FlatLive struct {
	list func(ctx context.Context) ([]LiveEntry, error)
	base LiveTree
	ttl  time.Duration

	mu   sync.Mutex
	ents []LiveEntry // Name: the whole key below the prefix; sorted
	at   time.Time
}

// NewFlatLive returns the tree of the entries list returns (Name the
// whole key below the prefix, one entry a key), listed again after ttl
// (negative: never); base reads the objects.
func NewFlatLive(list func(ctx context.Context) ([]LiveEntry, error), base LiveTree, ttl time.Duration) *FlatLive {
	return &FlatLive{list: list, base: base, ttl: ttl}
}

var _ LiveTree = (*FlatLive)(nil)

// Load returns the listing, taking it again if it is stale. The lock is
// held while listing: readers wait for one listing instead of starting
// their own.
func (f *FlatLive) Load(ctx context.Context) ([]LiveEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.at.IsZero() && (f.ttl < 0 || time.Since(f.at) < f.ttl) {
		return f.ents, nil
	}
	ents, err := f.list(ctx)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	f.ents, f.at = ents, time.Now()
	return ents, nil
}

// List returns the whole level as one page.
func (f *FlatLive) List(ctx context.Context, prefix, token string) (LivePage, error) {
	ents, err := f.Load(ctx)
	if err != nil {
		return LivePage{}, err
	}
	var pg LivePage
	i := sort.Search(len(ents), func(k int) bool { return ents[k].Name >= prefix })
	for i < len(ents) && strings.HasPrefix(ents[i].Name, prefix) {
		rest := ents[i].Name[len(prefix):]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			pg.Entries = append(pg.Entries, LiveEntry{Name: rest[:j], Dir: true})
			past := prefix + rest[:j] + "0" // '0' follows '/'
			i += sort.Search(len(ents)-i, func(k int) bool { return ents[i+k].Name >= past })
			continue
		}
		e := ents[i]
		e.Name = rest
		pg.Entries = append(pg.Entries, e)
		i++
	}
	return pg, nil
}

// Stat looks prefix+name up in the listing.
func (f *FlatLive) Stat(ctx context.Context, prefix, name string) (*LiveEntry, bool, error) {
	ents, err := f.Load(ctx)
	if err != nil {
		return nil, false, err
	}
	key := prefix + name
	i := sort.Search(len(ents), func(k int) bool { return ents[k].Name >= key })
	var obj *LiveEntry
	if i < len(ents) && ents[i].Name == key {
		e := ents[i]
		e.Name = name
		obj = &e
	}
	j := sort.Search(len(ents), func(k int) bool { return ents[k].Name >= key+"/" })
	return obj, j < len(ents) && strings.HasPrefix(ents[j].Name, key+"/"), nil
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
