package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Storage is the only thing the engine knows about where a store lives: a
// flat namespace of immutable named objects. Names are slash-separated
// (e.g. "packs/d/ab/ab12…"). Crypto, packs and the index live above it;
// retries, rate limits and fault injection are wrappers around it.
type Storage interface {
	// Put stores data under name. It returns only once the object is
	// durable; a reader never sees a partially written object.
	Put(ctx context.Context, name string, data []byte) error
	// Get returns length bytes of name starting at offset; length < 0
	// means to the end of the object. The caller owns the returned slice
	// (the engine decrypts blobs in place in it).
	Get(ctx context.Context, name string, offset, length int64) ([]byte, error)
	// List calls fn for every object whose name starts with prefix.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Stat returns the size of name.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// Delete removes name; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// Location describes the storage for messages (a path or a URI).
	Location() string
}

// ParallelStorage is implemented by storages that want a given number of
// concurrent uploads (a remote store hides latency with several; a local
// disk needs one). Each upload in flight holds a pack in memory.
type ParallelStorage interface {
	UploadParallelism() int
}

// StreamStorage is implemented by storages that can take an object whose
// name is known only once it is complete (a pack is named by its hash):
// packs then stream to it instead of filling a buffer in memory.
type StreamStorage interface {
	Storage
	NewTemp(ctx context.Context) (TempObject, error)
}

// TempObject is an object being written.
type TempObject interface {
	io.Writer
	// Commit makes the object durable under name; it is then as if Put.
	Commit(ctx context.Context, name string) error
	// Abort discards it.
	Abort()
}

// Invalidator is implemented by caching storages: the engine calls it
// when bytes it got fail authentication, so a damaged cached copy is
// dropped and the next Get reads the store again.
type Invalidator interface {
	Invalidate(name string, offset, length int64)
}

// defaultUploads is the parallelism for storages that do not say.
const defaultUploads = 4

func uploadParallelism(st Storage) int {
	if p, ok := st.(ParallelStorage); ok && p.UploadParallelism() > 0 {
		return p.UploadParallelism()
	}
	return defaultUploads
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Name string
	Size int64
}

// ErrNotFound is wrapped by Storage errors for objects that do not exist.
var ErrNotFound = errors.New("not found")

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
	return errors.As(err, &p) || IsNotFound(err) || errors.Is(err, context.Canceled)
}

// readAll is a helper for Get implementations built on readers.
func readAll(r io.Reader, sizeHint int64) ([]byte, error) {
	if sizeHint > 0 && sizeHint < 1<<31 {
		buf := make([]byte, sizeHint)
		n, err := io.ReadFull(r, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
		// There may be more than the hint.
		rest, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		return append(buf, rest...), nil
	}
	return io.ReadAll(r)
}

func notFound(op, name string) error {
	return fmt.Errorf("%s %s: %w", op, name, ErrNotFound)
}
