package engine

import (
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Repo is an open, unlocked store.
type Repo struct {
	st     store.Storage
	Params Params
	keys   *Keys
	Index  *MasterIndex

	master []byte // for adding key slots
	slotID string // the key slot that opened the store
	trees  TreeCache

	snapMu sync.Mutex
	snaps  map[ID]*Snapshot // loaded snapshot objects, by id

	indexOnce sync.Once
	indexErr  error
}

func newRepo(st store.Storage, p Params, master []byte) (*Repo, error) {
	k, err := deriveKeys(master)
	if err != nil {
		return nil, err
	}
	return &Repo{st: st, Params: p, keys: k, Index: newMasterIndex(), master: master}, nil
}

// Storage returns the storage the store lives in.
func (r *Repo) Storage() store.Storage { return r.st }

// Keys returns the store's working keys.
func (r *Repo) Keys() *Keys { return r.keys }

// maxObjectSize bounds what an object header may announce.
const maxObjectSize = 1 << 30

// sealObject frames payload as a metadata object (index file, snapshot):
// nonce || seal(comp || rawLen || stored payload).
func (r *Repo) sealObject(payload, aad []byte) []byte {
	stored, comp, _ := compress(nil, payload)
	body := encoder{b: make([]byte, 0, len(stored)+16)}
	body.byte(byte(comp))
	body.uvarint(uint64(len(payload)))
	body.b = append(body.b, stored...)
	return r.keys.Seal(make([]byte, 0, len(body.b)+sealOverhead), body.b, aad)
}

func (r *Repo) openObject(sealed, aad []byte) ([]byte, error) {
	plain, err := r.keys.Open(nil, sealed, aad)
	if err != nil {
		return nil, err
	}
	d := decoder{b: plain}
	comp := Compression(d.byte())
	n := d.uvarint()
	if d.err != nil || n > maxObjectSize {
		return nil, fmt.Errorf("%w: object header", errCorrupt)
	}
	return decompress(nil, d.b, comp, int(n))
}

// saveObject writes a sealed metadata object of kind k, named by the hash
// of its bytes, and returns that id once it is durable.
func (r *Repo) saveObject(ctx context.Context, k store.Kind, payload, aad []byte) (ID, error) {
	data := r.sealObject(payload, aad)
	id := hashID(data)
	if err := r.st.Put(ctx, store.Handle{Kind: k, Name: id.String()}, data); err != nil {
		return ID{}, err
	}
	return id, nil
}

// loadObject reads a sealed metadata object and checks that its bytes
// match its name before decrypting it.
func (r *Repo) loadObject(ctx context.Context, name store.Handle, aad []byte) ([]byte, error) {
	data, err := r.st.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	base := name.Name
	if store.Caches(r.st) && hashID(data).String() != base {
		store.Invalidate(r.st, name, 0, -1)
		if data, err = r.st.Get(ctx, name, 0, -1); err != nil {
			return nil, err
		}
	}
	if want := hashID(data).String(); base != want {
		return nil, fmt.Errorf("%s: %w: content hash is %s", name, ErrAuth, want[:16])
	}
	p, err := r.openObject(data, aad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// BlobError is a blob that could not be loaded, with where it was looked for.
type BlobError struct {
	ID   ID
	Pack ID
	Err  error
}

func (e *BlobError) Error() string {
	if e.Pack.IsZero() {
		return fmt.Sprintf("blob %s: %v", e.ID.Short(), e.Err)
	}
	return fmt.Sprintf("blob %s in pack %s: %v", e.ID.Short(), e.Pack.Short(), e.Err)
}
func (e *BlobError) Unwrap() error { return e.Err }

// errMissingBlob says the index does not know a blob a tree refers to.
var errMissingBlob = fmt.Errorf("not in any index: %w", store.ErrNotFound)

// LoadBlob reads, authenticates, decrypts and decompresses one blob, and
// checks that its plaintext hashes to id.
func (r *Repo) LoadBlob(ctx context.Context, id ID) ([]byte, error) {
	loc, pack, ok := r.Index.Lookup(id)
	if !ok {
		return nil, &BlobError{ID: id, Err: errMissingBlob}
	}
	name, off, n := packHandle(loc.Kind, pack), int64(loc.Offset), int64(loc.Length)
	sealed, err := r.st.Get(ctx, name, off, n)
	if err != nil {
		return nil, &BlobError{ID: id, Pack: pack, Err: err}
	}
	// Decrypt in place: a raw blob's plaintext is then the fetched buffer
	// itself, with no second allocation or copy.
	plain, _, err := r.openBlobInPlace(sealed, loc, pack, nil)
	if store.Caches(r.st) && errors.Is(err, ErrAuth) {
		// Perhaps only a cached copy is damaged: drop it, read again.
		store.Invalidate(r.st, name, off, n)
		if sealed, err = r.st.Get(ctx, name, off, n); err != nil {
			return nil, &BlobError{ID: id, Pack: pack, Err: err}
		}
		plain, _, err = r.openBlobInPlace(sealed, loc, pack, nil)
	}
	return plain, err
}

// openBlob turns a sealed blob into its verified plaintext, appended to dst.
func (r *Repo) openBlob(dst, sealed []byte, loc BlobLoc, pack ID) ([]byte, error) {
	if len(sealed) != int(loc.Length) {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: short read", errCorrupt)}
	}
	stored, err := r.keys.Open(nil, sealed, loc.ID[:])
	if err != nil {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: err}
	}
	start := len(dst)
	out, err := decompress(dst, stored, loc.Comp, int(loc.RawLen))
	if err != nil {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: err}
	}
	if r.keys.BlobID(out[start:]) != loc.ID {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: plaintext does not hash to the blob id", ErrAuth)}
	}
	return out, nil
}

// openBlobInPlace is openBlob for a buffer the caller owns: it decrypts
// sealed in place and, for compressed blobs, decompresses into scratch
// (grown as needed and returned for reuse). plain aliases sealed or
// scratch.
func (r *Repo) openBlobInPlace(sealed []byte, loc BlobLoc, pack ID, scratch []byte) (plain, _ []byte, err error) {
	if len(sealed) != int(loc.Length) {
		return nil, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: short read", errCorrupt)}
	}
	stored, err := r.keys.Open(sealed[nonceSize:nonceSize], sealed, loc.ID[:])
	if err != nil {
		return nil, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: err}
	}
	plain = stored
	if loc.Comp != CompNone || len(stored) != int(loc.RawLen) {
		if plain, err = decompress(scratch[:0], stored, loc.Comp, int(loc.RawLen)); err != nil {
			return nil, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: err}
		}
		scratch = plain
	}
	if r.keys.BlobID(plain) != loc.ID {
		return nil, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: plaintext does not hash to the blob id", ErrAuth)}
	}
	return plain, scratch, nil
}

// readTrailer loads and authenticates the trailer of a stored pack.
func (r *Repo) readTrailer(ctx context.Context, kind BlobKind, pack ID) ([]BlobLoc, error) {
	name := packHandle(kind, pack)
	info, err := r.st.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if info.Size < 4+sealOverhead {
		return nil, fmt.Errorf("%s: %w: %d bytes is too short for a pack", name, errCorrupt, info.Size)
	}
	tail, err := r.st.Get(ctx, name, info.Size-4, 4)
	if err != nil {
		return nil, err
	}
	tl := int64(binary.LittleEndian.Uint32(tail))
	start := info.Size - 4 - tl
	if tl < sealOverhead || start < 0 {
		return nil, fmt.Errorf("%s: %w: trailer length %d", name, errCorrupt, tl)
	}
	sealed, err := r.st.Get(ctx, name, start, tl)
	if err != nil {
		return nil, err
	}
	return r.decodeSealedTrailer(sealed, start)
}

func (r *Repo) decodeSealedTrailer(sealed []byte, start int64) ([]BlobLoc, error) {
	p, err := r.keys.Open(nil, sealed, aadTrailer)
	if err != nil {
		return nil, fmt.Errorf("pack trailer: %w", err)
	}
	return decodeTrailer(p, start)
}
