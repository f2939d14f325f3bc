// Package store is the bottom layer of the engine: a store is a flat set
// of immutable objects, each named by a typed Handle (a Kind and a name).
// It owns the Storage contract, its errors, the one mapping from handles
// to object names (layout.go), and the folder and in-memory
// implementations. Crypto, packs and the index live above it; retries,
// caching and fault injection are decorators that wrap a Storage.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Storage is the only thing the engine knows about where a store lives.
//
// Every method that does I/O takes a context first; a cancelled context
// makes it return the context's error, never a not-found. Names never
// change meaning: an object is written once (packs, index files and
// snapshots are named by the hash of their bytes), except the config,
// which is replaced only through PutIf.
type Storage interface {
	// Location describes the storage for messages (a path or a URI).
	Location() string

	// Features says which optional operations work. A decorator returns
	// the Features of what it wraps, so it never hides a capability.
	Features() Features

	// Put stores data under h. It returns only once the object is
	// durable; a reader never sees a partially written object. Putting
	// an existing object replaces it.
	Put(ctx context.Context, h Handle, data []byte) error

	// Get returns length bytes of h starting at offset; length < 0 means
	// to the end of the object. Fewer bytes than length is an error,
	// never a short result. The caller owns the returned slice.
	Get(ctx context.Context, h Handle, offset, length int64) ([]byte, error)

	// Stat returns h's size.
	Stat(ctx context.Context, h Handle) (ObjectInfo, error)

	// List calls fn for every object of kind k, in no particular order.
	// Objects being written (temp objects) are not listed; nor are
	// objects whose names the layout does not know.
	List(ctx context.Context, k Kind, fn func(ObjectInfo) error) error

	// Delete removes h; deleting a missing object is not an error. On a
	// storage that locks objects (Retainer), deleting one still locked
	// fails with a *LockedError (ErrLocked).
	Delete(ctx context.Context, h Handle) error

	// NewTemp starts an object whose handle is known only once it is
	// complete (a pack is named by its hash), so it can stream out
	// instead of filling a buffer. ErrNotSupported unless
	// Features().Temp.
	NewTemp(ctx context.Context) (TempObject, error)

	// GetVersion returns h's bytes and a token for the version read.
	// ErrNotSupported unless Features().Conditional.
	GetVersion(ctx context.Context, h Handle) ([]byte, Version, error)

	// PutIf writes h only if its current version is v, or, with v == "",
	// only if h does not exist; otherwise it fails with
	// ErrPreconditionFailed and changes nothing. ErrNotSupported unless
	// Features().Conditional.
	PutIf(ctx context.Context, h Handle, data []byte, v Version) error
}

// Features are a Storage's optional capabilities.
type Features struct {
	// Temp: NewTemp works.
	Temp bool
	// Conditional: GetVersion and PutIf work.
	Conditional bool
	// Uploads is how many uploads the storage wants at once (a remote
	// store hides latency with several, a local disk needs one); 0 means
	// no preference. Each upload in flight holds a pack in memory.
	Uploads int
}

// Version identifies one version of an object, for PutIf: an ETag, a
// content hash. "" means "no object".
type Version string

// TempObject is an object being written.
type TempObject interface {
	io.Writer
	// Commit makes the object durable under h; it is then as if Put.
	Commit(ctx context.Context, h Handle) error
	// Abort discards it.
	Abort()
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Handle Handle
	Size   int64
}

// RangeReader is a Storage that can also read a range into the caller's
// buffer, sparing an allocation a read: a prune repacks hundreds of MiB
// in runs of a few MiB, and a fresh buffer for each made its collector
// hold several at once. A decorator implements it only to pass it on.
type RangeReader interface {
	// GetInto fills buf with the len(buf) bytes of h at offset; fewer
	// is an error, as for Get.
	GetInto(ctx context.Context, h Handle, offset int64, buf []byte) error
}

// GetInto fills buf with the len(buf) bytes of h at offset: through st's
// GetInto if st is a RangeReader, else through Get and a copy.
func GetInto(ctx context.Context, st Storage, h Handle, offset int64, buf []byte) error {
	if rr, ok := st.(RangeReader); ok {
		return rr.GetInto(ctx, h, offset, buf)
	}
	data, err := st.Get(ctx, h, offset, int64(len(buf)))
	if err != nil {
		return err
	}
	if len(data) != len(buf) {
		return fmt.Errorf("get %s [%d,+%d): %d bytes", h, offset, len(buf), len(data))
	}
	copy(buf, data)
	return nil
}

// Invalidator is implemented by caching decorators: the engine calls it
// (through Invalidate) when bytes it got fail authentication, so a
// damaged cached copy is dropped and the next Get reads the store again.
type Invalidator interface {
	Invalidate(h Handle, offset, length int64)
}

// Wrapper is implemented by decorators: Unwrap returns what they wrap.
type Wrapper interface {
	Unwrap() Storage
}

// Invalidate tells every caching layer of st that the bytes it returned
// for h at offset/length are damaged.
func Invalidate(st Storage, h Handle, offset, length int64) {
	for st != nil {
		if inv, ok := st.(Invalidator); ok {
			inv.Invalidate(h, offset, length)
		}
		w, ok := st.(Wrapper)
		if !ok {
			return
		}
		st = w.Unwrap()
	}
}

// Caches reports whether some layer of st caches what it reads, so a
// failed authentication is worth a second Get.
func Caches(st Storage) bool {
	for st != nil {
		if _, ok := st.(Invalidator); ok {
			return true
		}
		w, ok := st.(Wrapper)
		if !ok {
			return false
		}
		st = w.Unwrap()
	}
	return false
}

// DefaultUploads is the upload parallelism for storages with no preference.
const DefaultUploads = 4

// Uploads returns how many uploads to run at once on st.
func Uploads(st Storage) int {
	if n := st.Features().Uploads; n > 0 {
		return n
	}
	return DefaultUploads
}

var (
	// ErrNotFound is wrapped by errors for objects that do not exist.
	ErrNotFound = errors.New("not found")
	// ErrPreconditionFailed is wrapped by PutIf errors when the object
	// changed (or appeared) since the version given was read.
	ErrPreconditionFailed = errors.New("precondition failed: the object changed since it was read")
	// ErrNotSupported is returned by an optional operation the storage
	// does not have (see Features).
	ErrNotSupported = errors.New("not supported by this storage")
)

// PermanentError marks a storage error that retrying cannot fix (access
// denied, bad credentials, a missing bucket).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsNotFound reports whether err says an object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsPermanent reports whether retrying err is pointless.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p) || IsNotFound(err) || errors.Is(err, ErrPreconditionFailed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, ErrNotSupported) || errors.Is(err, ErrLocked)
}
