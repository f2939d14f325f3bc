package engine

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
)

// Repo is an open, unlocked store.
type Repo struct {
	st     store.Storage
	Params Params
	keys   *crypto.Keys
	Index  *index.Master

	// Compression is how hard new blobs and metadata objects are
	// compressed (a writer's setting: readers decode any level). The
	// zero value is format.LevelDefault.
	Compression format.Level

	master []byte // for adding key slots
	slotID string // the key slot that opened the store
	trees  tree.Cache
	// treeBlobs reads the blobs of trees (SetTreeCache); nil: LoadBlob.
	treeBlobs func(ctx context.Context, id crypto.ID) ([]byte, error)

	snapMu sync.Mutex
	snaps  map[crypto.ID]*Snapshot // loaded snapshot objects, by id

	indexOnce sync.Once
	indexErr  error
	indexed   indexFiles // the index files read into Index
	indexDir  string     // where the index is kept between runs ("" nowhere)
	indexNote string     // why the kept index was not used
}

func newRepo(st store.Storage, p Params, master []byte) (*Repo, error) {
	k, err := crypto.DeriveKeys(master)
	if err != nil {
		return nil, err
	}
	return &Repo{st: st, Params: p, keys: k, Index: index.New(), master: master}, nil
}

// UseIndexCache makes r keep its index in dir between runs (a folder of
// its own: see index.Options.Dir): LoadIndex then reads only the index files the kept
// index does not cover. Call it before LoadIndex. A kept index that is
// unreadable, damaged or another store's is dropped and rebuilt, and a
// folder that cannot be used leaves the index in temporary files
// (IndexCacheNote says why in both cases).
func (r *Repo) UseIndexCache(dir string) { r.indexDir = dir }

// IndexCacheNote says why LoadIndex did not use the index kept between
// runs, or "" if it did (or none was asked for).
func (r *Repo) IndexCacheNote() string { return r.indexNote }

// ctxIndexCache derives the key of the local index cache from the master
// key (BLAKE3 derive_key, like the working keys in engine/crypto).
const ctxIndexCache = "coffer 2026-11 local index cache"

// openIndexCache replaces the empty r.Index by the one kept in r.indexDir.
func (r *Repo) openIndexCache() {
	if len(r.Index.Packs()) > 0 {
		return // something was added already: keep it
	}
	var key [32]byte
	blake3.DeriveKey(ctxIndexCache, r.master, key[:])
	x, err := index.Open(index.Options{Dir: r.indexDir, Key: key[:], StoreID: r.Params.StoreID})
	if err != nil {
		r.indexNote = err.Error()
		return
	}
	r.indexNote = x.Note()
	old := r.Index
	r.Index = x
	old.Close()
}

// Storage returns the storage the store lives in.
func (r *Repo) Storage() store.Storage { return r.st }

// Keys returns the store's working keys.
func (r *Repo) Keys() *crypto.Keys { return r.keys }

// maxObjectSize bounds what an object header may announce.
const maxObjectSize = 1 << 30

// sealObject frames payload as a metadata object (index file, snapshot):
// nonce || seal(comp || rawLen || stored payload).
func (r *Repo) sealObject(payload, aad []byte) []byte {
	stored, comp := format.CompressObject(payload, r.Compression)
	body := format.Encoder{B: make([]byte, 0, len(stored)+16)}
	body.Byte(byte(comp))
	body.Uvarint(uint64(len(payload)))
	body.B = append(body.B, stored...)
	return r.keys.Seal(make([]byte, 0, len(body.B)+crypto.SealOverhead), body.B, aad)
}

func (r *Repo) openObject(sealed, aad []byte) ([]byte, error) {
	plain, err := r.keys.Open(nil, sealed, aad)
	if err != nil {
		return nil, err
	}
	d := format.Decoder{B: plain}
	comp := format.Compression(d.Byte())
	n := d.Uvarint()
	if d.Err != nil || n > maxObjectSize {
		return nil, fmt.Errorf("%w: object header", format.ErrCorrupt)
	}
	return format.Decompress(nil, d.B, comp, int(n))
}

// SaveObject writes a sealed metadata object of kind k, named by the hash
// of its bytes, and returns that id once it is durable.
func (r *Repo) SaveObject(ctx context.Context, k store.Kind, payload, aad []byte) (crypto.ID, error) {
	data := r.sealObject(payload, aad)
	id := crypto.Hash(data)
	if err := r.st.Put(ctx, store.Handle{Kind: k, Name: id.String()}, data); err != nil {
		return crypto.ID{}, err
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
	got := crypto.Hash(data).String()
	if got != name.Name && store.Caches(r.st) {
		// Perhaps only a cached copy is damaged: drop it, read again.
		store.Invalidate(r.st, name, 0, -1)
		if data, err = r.st.Get(ctx, name, 0, -1); err != nil {
			return nil, err
		}
		got = crypto.Hash(data).String()
	}
	if got != name.Name {
		return nil, fmt.Errorf("%s: %w: content hash is %s", name, crypto.ErrAuth, got[:16])
	}
	p, err := r.openObject(data, aad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// packKind is the store kind of packs of blobs of kind k.
func packKind(k format.BlobKind) store.Kind {
	if k == format.BlobData {
		return store.KindDataPack
	}
	return store.KindTreePack
}

// PackHandle is the store handle of a pack.
func PackHandle(k format.BlobKind, id crypto.ID) store.Handle {
	return store.Handle{Kind: packKind(k), Name: id.String()}
}

// BlobError is a blob that could not be loaded, with where it was looked for.
type BlobError struct {
	ID   crypto.ID
	Pack crypto.ID
	Err  error
}

func (e *BlobError) Error() string {
	if e.Pack.IsZero() {
		return fmt.Sprintf("blob %s: %v", e.ID.Short(), e.Err)
	}
	return fmt.Sprintf("blob %s in pack %s: %v", e.ID.Short(), e.Pack.Short(), e.Err)
}
func (e *BlobError) Unwrap() error { return e.Err }

// ErrMissingBlob says the index does not know a blob a tree refers to.
var ErrMissingBlob = fmt.Errorf("not in any index: %w", store.ErrNotFound)

// LoadBlob reads, authenticates, decrypts and decompresses one blob, and
// checks that its plaintext hashes to id.
func (r *Repo) LoadBlob(ctx context.Context, id crypto.ID) ([]byte, error) {
	loc, pack, ok := r.Index.Lookup(id)
	if !ok {
		if err := r.Index.Err(); err != nil {
			return nil, &BlobError{ID: id, Err: err}
		}
		return nil, &BlobError{ID: id, Err: ErrMissingBlob}
	}
	name, off, n := PackHandle(loc.Kind, pack), int64(loc.Offset), int64(loc.Length)
	sealed, err := r.st.Get(ctx, name, off, n)
	if err != nil {
		return nil, &BlobError{ID: id, Pack: pack, Err: err}
	}
	// Decrypt in place: a raw blob's plaintext is then the fetched buffer
	// itself, with no second allocation or copy.
	plain, _, err := r.OpenBlobInPlace(sealed, loc, pack, nil)
	if errors.Is(err, crypto.ErrAuth) && store.Caches(r.st) {
		// Perhaps only a cached copy is damaged: drop it, read again.
		store.Invalidate(r.st, name, off, n)
		if sealed, err = r.st.Get(ctx, name, off, n); err != nil {
			return nil, &BlobError{ID: id, Pack: pack, Err: err}
		}
		plain, _, err = r.OpenBlobInPlace(sealed, loc, pack, nil)
	}
	return plain, err
}

// OpenBlob turns a sealed blob into its verified plaintext, appended to dst.
func (r *Repo) OpenBlob(dst, sealed []byte, loc format.BlobLoc, pack crypto.ID) ([]byte, error) {
	if len(sealed) != int(loc.Length) {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: short read", format.ErrCorrupt)}
	}
	stored, err := r.keys.Open(nil, sealed, loc.ID[:])
	if err != nil {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: err}
	}
	start := len(dst)
	out, err := format.Decompress(dst, stored, loc.Comp, int(loc.RawLen))
	if err != nil {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: err}
	}
	if r.keys.BlobID(out[start:]) != loc.ID {
		return nil, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: plaintext does not hash to the blob id", crypto.ErrAuth)}
	}
	return out, nil
}

// OpenBlobInPlace is openBlob for a buffer the caller owns: it decrypts
// sealed in place and, for compressed blobs, decompresses into scratch
// (grown as needed and returned for reuse). plain aliases sealed or
// scratch.
func (r *Repo) OpenBlobInPlace(sealed []byte, loc format.BlobLoc, pack crypto.ID, scratch []byte) (plain, _ []byte, err error) {
	plain, _, scratch, err = r.openSealed(sealed[crypto.NonceSize:crypto.NonceSize], sealed, loc, pack, scratch)
	return plain, scratch, err
}

// openSealed authenticates the sealed bytes of a blob of pack against
// loc: the seal, the compression, the plaintext hashing to the id. It
// decrypts into dst (sealed's own bytes, for in place) and, for a
// compressed blob, decompresses into scratch; it returns the plaintext,
// the decrypted bytes and scratch (grown as needed, for reuse).
func (r *Repo) openSealed(dst, sealed []byte, loc format.BlobLoc, pack crypto.ID, scratch []byte) (plain, stored, _ []byte, err error) {
	if len(sealed) != int(loc.Length) {
		return nil, nil, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: short read", format.ErrCorrupt)}
	}
	stored, err = r.keys.Open(dst, sealed, loc.ID[:])
	if err != nil {
		return nil, nil, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: err}
	}
	plain = stored
	if loc.Comp != format.CompNone || len(stored) != int(loc.RawLen) {
		if plain, err = format.Decompress(scratch[:0], stored, loc.Comp, int(loc.RawLen)); err != nil {
			return nil, stored, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: err}
		}
		scratch = plain
	}
	if r.keys.BlobID(plain) != loc.ID {
		return nil, stored, scratch, &BlobError{ID: loc.ID, Pack: pack, Err: fmt.Errorf("%w: plaintext does not hash to the blob id", crypto.ErrAuth)}
	}
	return plain, stored, scratch, nil
}

// LoadPackRange reads n sealed bytes at off of a pack of blobs of kind
// k: a run of adjacent blobs, which OpenBlobInPlace then opens one by one.
func (r *Repo) LoadPackRange(ctx context.Context, k format.BlobKind, pack crypto.ID, off, n int64) ([]byte, error) {
	return r.st.Get(ctx, PackHandle(k, pack), off, n)
}

// LoadPackRangeInto is LoadPackRange into buf, which it fills with the
// len(buf) bytes at off: a loop over runs reuses one buffer.
func (r *Repo) LoadPackRangeInto(ctx context.Context, k format.BlobKind, pack crypto.ID, off int64, buf []byte) error {
	return store.GetInto(ctx, r.st, PackHandle(k, pack), off, buf)
}

// BlobScratch holds VerifyBlob's buffers between calls.
type BlobScratch struct{ opened, plain []byte }

// VerifyBlob authenticates the sealed bytes of a blob of pack against
// loc as OpenBlobInPlace does, but decrypts into a buffer of its own and
// leaves sealed as it is, so that they can be copied to another pack
// (Saver.SaveSealed).
func (r *Repo) VerifyBlob(sealed []byte, loc format.BlobLoc, pack crypto.ID, bufs *BlobScratch) error {
	_, stored, scratch, err := r.openSealed(bufs.opened[:0], sealed, loc, pack, bufs.plain)
	if stored != nil {
		bufs.opened = stored
	}
	bufs.plain = scratch
	return err
}

// ReadTrailer loads and authenticates the trailer of a stored pack.
func (r *Repo) ReadTrailer(ctx context.Context, kind format.BlobKind, pack crypto.ID) ([]format.BlobLoc, error) {
	name := PackHandle(kind, pack)
	info, err := r.st.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if info.Size < 4+crypto.SealOverhead {
		return nil, fmt.Errorf("%s: %w: %d bytes is too short for a pack", name, format.ErrCorrupt, info.Size)
	}
	tail, err := r.st.Get(ctx, name, info.Size-4, 4)
	if err != nil {
		return nil, err
	}
	tl := int64(binary.LittleEndian.Uint32(tail))
	start := info.Size - 4 - tl
	if tl < crypto.SealOverhead || start < 0 {
		return nil, fmt.Errorf("%s: %w: trailer length %d", name, format.ErrCorrupt, tl)
	}
	sealed, err := r.st.Get(ctx, name, start, tl)
	if err != nil {
		return nil, err
	}
	return r.OpenTrailer(sealed, start)
}

// OpenTrailer authenticates and decodes the sealed trailer of a pack
// whose trailer starts at start.
func (r *Repo) OpenTrailer(sealed []byte, start int64) ([]format.BlobLoc, error) {
	p, err := r.keys.Open(nil, sealed, format.AADTrailer)
	if err != nil {
		return nil, fmt.Errorf("pack trailer: %w", err)
	}
	return format.DecodeTrailer(p, start)
}

// WithIndex returns a view of r that finds blobs through idx (already
// loaded) and reads trees without r's tree cache, leaving r untouched.
func (r *Repo) WithIndex(idx *index.Master) *Repo {
	v := &Repo{st: r.st, Params: r.Params, keys: r.keys, Index: idx, Compression: r.Compression, master: r.master, slotID: r.slotID}
	v.indexOnce.Do(func() {}) // LoadIndex on v must not read into idx again
	return v
}

// IndexFiles lists the store's index files.
func (r *Repo) IndexFiles(ctx context.Context) ([]store.Handle, error) {
	var names []store.Handle
	err := r.st.List(ctx, store.KindIndex, func(o store.ObjectInfo) error {
		names = append(names, o.Handle)
		return nil
	})
	return names, err
}

// ListPacks calls fn for every stored pack of blobs of kind k, indexed or
// not; objects whose names are not pack ids are skipped.
func (r *Repo) ListPacks(ctx context.Context, k format.BlobKind, fn func(id crypto.ID, size int64) error) error {
	return r.st.List(ctx, packKind(k), func(o store.ObjectInfo) error {
		id, err := crypto.ParseID(o.Handle.Name)
		if err != nil {
			return nil
		}
		return fn(id, o.Size)
	})
}
