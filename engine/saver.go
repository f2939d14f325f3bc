package engine

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/bufpool"

	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
)

// maxPackBlobs closes a pack of many tiny blobs before pack_size: a
// backup of 200k small files would otherwise hold them all in one open
// pack's blob list, and write a 10 MB trailer. What a pack holds per blob
// until it is indexed (its location, a claimed id, its trailer entry,
// sealed) is ~180 bytes, for the open pack and those being uploaded: at
// 16,384 a backup of a million files of ~500 bytes (packs closed by this
// count) held ~3 MB more than one of 100,000 files of ~5 KiB (packs closed
// by pack_size, ~3,300 blobs); 4,096 is above what a 16 MiB pack of 4 KiB
// blobs holds (docs/PERFORMANCE.md, session 5).
const maxPackBlobs = 4096

// IndexFlushBlobs is how many new blobs a backup collects before it writes
// an index file, so an interrupted backup of a huge source leaves most of
// its uploaded work indexed and reusable. It also bounds the index file
// being built and sealed (~100 bytes a blob, held twice while sealed):
// at 50,000, a backup of a million tiny files peaked ~5 MB higher than
// one of 100,000 larger files (docs/PERFORMANCE.md).
const IndexFlushBlobs = 16_384

// Saver adds blobs to the store: it dedups against the index and against
// what it already took, compresses and encrypts in the caller's goroutine,
// fills one open pack per kind, and uploads full packs in the background.
// A blob becomes part of the index only after its pack is durable.
type Saver struct {
	r    *Repo
	ctx  context.Context
	size int

	mu      sync.Mutex
	claimed map[crypto.ID]struct{}
	// claimedMax is the most ids claimed has held since it was made: a
	// Go map does not shrink, so it is made again when it holds far fewer.
	claimedMax int
	open       map[format.BlobKind]*openPack

	uploads chan *openPack
	wg      sync.WaitGroup
	// bufs holds the data pack buffers: uploaders+1 of them, recycled, so
	// that packs filling, queued and uploading take bounded memory.
	bufs chan []byte

	errMu sync.Mutex
	err   error

	idxMu   sync.Mutex
	written []format.IndexPack
	nblobs  int

	// Stats.
	NewBlobs     atomic.Int64
	NewRawBytes  atomic.Int64 // plaintext bytes of new blobs
	StoredBytes  atomic.Int64 // bytes of packs uploaded
	PacksWritten atomic.Int64
	IndexFiles   atomic.Int64
}

// openPack is a pack being filled: in a memory buffer, or streamed to a
// temp object of a storage with Features().Temp while its hash is computed.
type openPack struct {
	kind  format.BlobKind
	blobs []format.BlobLoc
	size  int

	buf []byte // buffered

	tmp  store.TempObject // streamed
	hash *blake3.Hasher
	werr error
	done bool // committed or aborted
}

func (p *openPack) write(b []byte) {
	p.size += len(b)
	if p.tmp == nil {
		p.buf = append(p.buf, b...)
		return
	}
	p.hash.Write(b)
	if p.werr == nil {
		_, p.werr = p.tmp.Write(b)
	}
}

// NewSaver starts a saver with uploaders parallel uploads.
func (r *Repo) NewSaver(ctx context.Context, uploaders int) *Saver {
	if uploaders < 1 {
		uploaders = 1
	}
	s := &Saver{
		r: r, ctx: ctx, size: r.Params.PackSize,
		claimed: map[crypto.ID]struct{}{}, open: map[format.BlobKind]*openPack{},
		uploads: make(chan *openPack),
		bufs:    make(chan []byte, uploaders+1),
	}
	for i := 0; i < uploaders+1; i++ {
		s.bufs <- nil // allocated on first use
	}
	for i := 0; i < uploaders; i++ {
		s.wg.Add(1)
		go s.uploader()
	}
	return s
}

// Fail records err as the saver's error, unless it has one already: Err,
// and so Finish, return the first.
func (s *Saver) Fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
}

// Err returns the first upload error.
func (s *Saver) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Has reports whether blob id is stored or being stored.
func (s *Saver) Has(id crypto.ID) bool {
	if s.r.Index.Has(id) {
		return true
	}
	s.mu.Lock()
	_, ok := s.claimed[id]
	s.mu.Unlock()
	return ok
}

// Save stores plaintext as blob id of kind unless the store has it
// already, and reports whether it was new.
func (s *Saver) Save(kind format.BlobKind, id crypto.ID, plaintext []byte) (bool, error) {
	if claimed, err := s.claim(id); !claimed {
		return false, err
	}
	// Buffers sized to the blob (zstd's worst case, and the seal's
	// overhead): a tiny blob does not hold a 1 MiB buffer.
	room := len(plaintext) + len(plaintext)/128 + 256
	cp := bufpool.Get(room)
	stored, comp, scratch := format.Compress(*cp, plaintext, s.r.Compression)
	sp := bufpool.Get(room)
	sealed := s.r.keys.Seal((*sp)[:0], stored, id[:])
	err := s.append(format.BlobLoc{ID: id, Kind: kind, Comp: comp, RawLen: uint32(len(plaintext))}, sealed)
	*cp, *sp = scratch[:0], sealed[:0]
	bufpool.Put(cp)
	bufpool.Put(sp)
	if err != nil {
		return false, err
	}
	return true, nil
}

// SaveSealed stores a blob as it was sealed in another pack of this
// store, byte for byte (a blob's seal binds only its id, not where it
// lies), unless the store has it already: a prune's repack copies live
// blobs without compressing and sealing them again. loc says the
// blob's id, kind, compression and raw length; the caller has
// authenticated sealed against it.
func (s *Saver) SaveSealed(loc format.BlobLoc, sealed []byte) (bool, error) {
	if len(sealed) != int(loc.Length) {
		return false, fmt.Errorf("blob %s: %d sealed bytes, its entry says %d", loc.ID.Short(), len(sealed), loc.Length)
	}
	if claimed, err := s.claim(loc.ID); !claimed {
		return false, err
	}
	if err := s.append(loc, sealed); err != nil {
		return false, err
	}
	return true, nil
}

// claim reports whether id is this caller's to store: not in the store's
// index, and not claimed by another Save.
func (s *Saver) claim(id crypto.ID) (bool, error) {
	if err := s.Err(); err != nil {
		return false, err
	}
	if s.r.Index.Has(id) {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.claimed[id]; ok {
		return false, nil
	}
	s.claimed[id] = struct{}{}
	s.claimedMax = max(s.claimedMax, len(s.claimed))
	return true, nil
}

// append writes a sealed blob to the open pack of its kind, and counts
// it; loc's offset and length are set here.
func (s *Saver) append(loc format.BlobLoc, sealed []byte) error {
	// Sending a full pack and waiting for a free buffer happen outside
	// the lock, then we retry.
	for {
		s.mu.Lock()
		p := s.open[loc.Kind]
		if p == nil {
			s.mu.Unlock()
			np, err := s.newPack(loc.Kind)
			if err != nil {
				return err
			}
			s.mu.Lock()
			if s.open[loc.Kind] == nil {
				s.open[loc.Kind] = np
			} else {
				s.freePack(np) // another goroutine opened one first
			}
			s.mu.Unlock()
			continue
		}
		if p.size > 0 && (p.size+len(sealed) > s.size || len(p.blobs) >= maxPackBlobs) {
			// Close the pack before it outgrows its buffer, or its blob
			// list (held in memory, with the claimed ids, until the pack
			// is written) grows with the number of tiny files.
			delete(s.open, loc.Kind)
			s.mu.Unlock()
			if err := s.send(p); err != nil {
				return err
			}
			continue
		}
		loc.Offset, loc.Length = uint32(p.size), uint32(len(sealed))
		p.blobs = append(p.blobs, loc)
		p.write(sealed)
		s.mu.Unlock()
		break
	}
	s.NewBlobs.Add(1)
	s.NewRawBytes.Add(int64(loc.RawLen))
	return nil
}

// newPack starts a pack; a data pack waits for a free buffer, which is
// what holds a backup back when uploads are slower than reading.
func (s *Saver) newPack(kind format.BlobKind) (*openPack, error) {
	p := &openPack{kind: kind}
	if s.r.st.Features().Temp {
		tmp, err := s.r.st.NewTemp(s.ctx)
		if err != nil {
			return nil, err
		}
		p.tmp, p.hash = tmp, blake3.New()
		return p, nil
	}
	if kind != format.BlobData {
		return p, nil // tree packs are small; they grow as needed
	}
	select {
	case b := <-s.bufs:
		if cap(b) < s.size {
			b = make([]byte, 0, s.size+trailerRoom)
		}
		p.buf = b[:0]
		return p, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// trailerRoom is spare capacity for a full pack's trailer (a pack of
// thousands of small blobs has a trailer of a hundred KiB or more).
const trailerRoom = 256 << 10

// freePack returns a pack's buffer to the pool.
func (s *Saver) freePack(p *openPack) {
	switch {
	case p.tmp != nil:
		if !p.done {
			p.tmp.Abort()
		}
	case p.kind == format.BlobData:
		s.bufs <- p.buf[:0]
	}
	p.buf = nil
}

func (s *Saver) send(p *openPack) error {
	select {
	case s.uploads <- p:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *Saver) uploader() {
	defer s.wg.Done()
	for p := range s.uploads {
		if s.Err() == nil {
			if err := s.upload(p); err != nil {
				s.Fail(err)
			}
		}
		s.freePack(p)
	}
}

// upload seals the trailer, writes the pack, then indexes its blobs.
func (s *Saver) upload(p *openPack) error {
	trailer := s.r.keys.Seal(nil, format.EncodeTrailer(p.blobs), format.AADTrailer)
	p.write(trailer)
	p.write(binary.LittleEndian.AppendUint32(nil, uint32(len(trailer))))
	var id crypto.ID
	if p.tmp != nil {
		p.hash.Sum(id[:0])
		if p.werr != nil {
			return fmt.Errorf("writing pack: %w", p.werr)
		}
		p.done = true
		if err := p.tmp.Commit(s.ctx, PackHandle(p.kind, id)); err != nil {
			return err
		}
	} else {
		id = crypto.Hash(p.buf)
		if err := s.r.st.Put(s.ctx, PackHandle(p.kind, id), p.buf); err != nil {
			return err
		}
	}
	s.StoredBytes.Add(int64(p.size))
	s.PacksWritten.Add(1)
	ip := format.IndexPack{ID: id, Kind: p.kind, Blobs: p.blobs}
	if err := s.r.Index.Add([]format.IndexPack{ip}); err != nil {
		return err
	}
	// The index answers for these now; keep claimed to blobs in flight.
	s.mu.Lock()
	for _, b := range p.blobs {
		delete(s.claimed, b.ID)
	}
	if len(s.claimed) < s.claimedMax/4 {
		m := make(map[crypto.ID]struct{}, len(s.claimed)) // maps.Clone keeps the size
		for id := range s.claimed {
			m[id] = struct{}{}
		}
		s.claimed, s.claimedMax = m, len(m)
	}
	s.mu.Unlock()
	s.idxMu.Lock()
	s.written = append(s.written, ip)
	s.nblobs += len(p.blobs)
	flush := s.nblobs >= IndexFlushBlobs
	s.idxMu.Unlock()
	if flush {
		return s.writeIndex(s.ctx)
	}
	return nil
}

// writeIndex writes one index file for the packs uploaded since the last.
func (s *Saver) writeIndex(ctx context.Context) error {
	s.idxMu.Lock()
	packs := s.written
	s.written, s.nblobs = nil, 0
	s.idxMu.Unlock()
	if len(packs) == 0 {
		return nil
	}
	if _, err := s.r.SaveObject(ctx, store.KindIndex, format.EncodeIndex(packs), format.AADIndex); err != nil {
		return err
	}
	s.IndexFiles.Add(1)
	return nil
}

// Finish uploads the open packs, waits for every upload, and writes the
// index file for them. When it returns nil, every blob Save accepted is
// durable and indexed.
func (s *Saver) Finish() error {
	s.mu.Lock()
	var rest []*openPack
	for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
		if p := s.open[k]; p != nil {
			rest = append(rest, p)
			delete(s.open, k)
		}
	}
	s.mu.Unlock()
	for _, p := range rest {
		if err := s.send(p); err != nil {
			s.Fail(err)
			break
		}
	}
	close(s.uploads)
	s.wg.Wait()
	if err := s.Err(); err != nil {
		return err
	}
	return s.writeIndex(s.ctx)
}

// Abort stops a failed or cancelled backup: packs not yet written are
// discarded (their temp objects removed), and the packs already durable
// are indexed, best effort, so the next backup reuses them instead of
// uploading them again (which, on a full disk, could fail again).
func (s *Saver) Abort() {
	s.Fail(context.Canceled)
	s.mu.Lock()
	for k, p := range s.open {
		s.freePack(p)
		delete(s.open, k)
	}
	s.mu.Unlock()
	close(s.uploads)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
	defer cancel()
	s.writeIndex(ctx)
}
