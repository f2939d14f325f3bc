package engine

import (
	"github.com/coffer-backup/coffer/engine/store"

	"encoding/binary"
	"fmt"
)

// BlobKind tells data chunks from metadata blobs; each kind goes to its own
// packs so that metadata can stay hot while data goes cold.
type BlobKind uint8

const (
	BlobData BlobKind = 1 // a chunk of file content
	BlobTree BlobKind = 2 // a directory, a tree page or a chunk list
)

func (k BlobKind) String() string {
	switch k {
	case BlobData:
		return "data"
	case BlobTree:
		return "tree"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// packKind is the store kind of packs of blobs of kind k.
func packKind(k BlobKind) store.Kind {
	if k == BlobData {
		return store.KindDataPack
	}
	return store.KindTreePack
}

// packHandle is the store handle of a pack.
func packHandle(k BlobKind, id ID) store.Handle {
	return store.Handle{Kind: packKind(k), Name: id.String()}
}

// BlobLoc says where a blob lives: the record of a pack trailer and of an
// index file.
type BlobLoc struct {
	ID     ID
	Kind   BlobKind
	Comp   Compression
	Offset uint32 // of the sealed blob within its pack
	Length uint32 // of the sealed blob: nonce || ciphertext || tag
	RawLen uint32 // of the plaintext
}

const trailerVersion = 1

// Associated data for sealed objects: an index cannot pose as a snapshot.
var (
	aadTrailer  = []byte("coffer pack trailer v1")
	aadIndex    = []byte("coffer index v1")
	aadSnapshot = []byte("coffer snapshot v1")
)

func encodeBlobLoc(e *encoder, b *BlobLoc) {
	e.id(b.ID)
	e.byte(byte(b.Kind))
	e.byte(byte(b.Comp))
	e.uvarint(uint64(b.Offset))
	e.uvarint(uint64(b.Length))
	e.uvarint(uint64(b.RawLen))
}

func decodeBlobLoc(d *decoder) BlobLoc {
	var b BlobLoc
	b.ID = d.id()
	b.Kind = BlobKind(d.byte())
	b.Comp = Compression(d.byte())
	b.Offset = uint32v(d, d.uvarint())
	b.Length = uint32v(d, d.uvarint())
	b.RawLen = uint32v(d, d.uvarint())
	if d.err == nil {
		if b.Kind != BlobData && b.Kind != BlobTree {
			d.fail("blob kind")
		}
		if b.Comp != CompNone && b.Comp != CompZstd {
			d.fail("compression")
		}
		if b.Length < sealOverhead {
			d.fail("blob length")
		}
	}
	return b
}

func uint32v(d *decoder, v uint64) uint32 {
	if v > 1<<32-1 {
		d.fail("32-bit value")
		return 0
	}
	return uint32(v)
}

// minBlobLocSize is the smallest encoding of a BlobLoc.
const minBlobLocSize = 32 + 2 + 3

// encodeTrailer is the plaintext of a pack trailer.
func encodeTrailer(blobs []BlobLoc) []byte {
	e := encoder{b: make([]byte, 0, 16+len(blobs)*48)}
	e.byte(trailerVersion)
	e.uvarint(uint64(len(blobs)))
	for i := range blobs {
		encodeBlobLoc(&e, &blobs[i])
	}
	return e.b
}

// decodeTrailer parses a trailer's plaintext. Blobs must tile the pack
// from offset 0 up to end (the start of the sealed trailer) in order.
func decodeTrailer(p []byte, end int64) ([]BlobLoc, error) {
	d := decoder{b: p}
	if v := d.byte(); d.err == nil && v != trailerVersion {
		return nil, fmt.Errorf("pack trailer: unknown version %d", v)
	}
	n := d.count(minBlobLocSize)
	blobs := make([]BlobLoc, 0, n)
	var off int64
	for i := 0; i < n && d.err == nil; i++ {
		b := decodeBlobLoc(&d)
		if d.err == nil && int64(b.Offset) != off {
			return nil, fmt.Errorf("pack trailer: %w: blob %d at offset %d, want %d", errCorrupt, i, b.Offset, off)
		}
		off += int64(b.Length)
		blobs = append(blobs, b)
	}
	if err := d.done("pack trailer"); err != nil {
		return nil, err
	}
	if off != end {
		return nil, fmt.Errorf("pack trailer: %w: blobs end at %d, trailer starts at %d", errCorrupt, off, end)
	}
	return blobs, nil
}

// splitPack returns the sealed trailer of a whole pack and where it starts.
func splitPack(pack []byte) (sealed []byte, start int64, err error) {
	if len(pack) < 4 {
		return nil, 0, fmt.Errorf("pack: %w: %d bytes is too short", errCorrupt, len(pack))
	}
	tl := int64(binary.LittleEndian.Uint32(pack[len(pack)-4:]))
	start = int64(len(pack)) - 4 - tl
	if tl < sealOverhead || start < 0 {
		return nil, 0, fmt.Errorf("pack: %w: trailer length %d does not fit a %d-byte pack", errCorrupt, tl, len(pack))
	}
	return pack[start : len(pack)-4], start, nil
}
