package object

import (
	"context"
	"errors"
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
	// ReadRange returns exactly n bytes at off of the object key, read
	// only while the object's ETag is etag: an error wrapping ErrChanged
	// if it has changed since.
	ReadRange(ctx context.Context, key, etag string, off, n int64) ([]byte, error)
}

// ErrChanged says a live object no longer has the ETag a read was pinned
// to: it was rewritten (or deleted and written again) since it was listed.
var ErrChanged = errors.New("the object changed since it was listed")
