package format

import (
	"encoding/binary"
	"fmt"

	"github.com/coffer-backup/coffer/engine/crypto"
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

// BlobLoc says where a blob lives: the record of a pack trailer and of an
// index file.
type BlobLoc struct {
	ID     crypto.ID
	Kind   BlobKind
	Comp   Compression
	Offset uint32 // of the sealed blob within its pack
	Length uint32 // of the sealed blob: nonce || ciphertext || tag
	RawLen uint32 // of the plaintext
}

const trailerVersion = 1

// Associated data for sealed objects: an index cannot pose as a snapshot.
var (
	AADTrailer  = []byte("coffer pack trailer v1")
	AADIndex    = []byte("coffer index v1")
	AADSnapshot = []byte("coffer snapshot v1")
)

func EncodeBlobLoc(e *Encoder, b *BlobLoc) {
	e.ID(b.ID)
	e.Byte(byte(b.Kind))
	e.Byte(byte(b.Comp))
	e.Uvarint(uint64(b.Offset))
	e.Uvarint(uint64(b.Length))
	e.Uvarint(uint64(b.RawLen))
}

func DecodeBlobLoc(d *Decoder) BlobLoc {
	var b BlobLoc
	b.ID = d.ID()
	b.Kind = BlobKind(d.Byte())
	b.Comp = Compression(d.Byte())
	b.Offset = Uint32v(d, d.Uvarint())
	b.Length = Uint32v(d, d.Uvarint())
	b.RawLen = Uint32v(d, d.Uvarint())
	if d.Err == nil {
		if b.Kind != BlobData && b.Kind != BlobTree {
			d.Fail("blob kind")
		}
		if b.Comp != CompNone && b.Comp != CompZstd {
			d.Fail("compression")
		}
		if b.Length < crypto.SealOverhead {
			d.Fail("blob length")
		}
	}
	return b
}

func Uint32v(d *Decoder, v uint64) uint32 {
	if v > 1<<32-1 {
		d.Fail("32-bit value")
		return 0
	}
	return uint32(v)
}

// minBlobLocSize is the smallest encoding of a BlobLoc.
const MinBlobLocSize = 32 + 2 + 3

// encodeTrailer is the plaintext of a pack trailer.
func EncodeTrailer(blobs []BlobLoc) []byte {
	e := Encoder{B: make([]byte, 0, 16+len(blobs)*48)}
	e.Byte(trailerVersion)
	e.Uvarint(uint64(len(blobs)))
	for i := range blobs {
		EncodeBlobLoc(&e, &blobs[i])
	}
	return e.B
}

// decodeTrailer parses a trailer's plaintext. Blobs must tile the pack
// from offset 0 up to end (the start of the sealed trailer) in order.
func DecodeTrailer(p []byte, end int64) ([]BlobLoc, error) {
	d := Decoder{B: p}
	if v := d.Byte(); d.Err == nil && v != trailerVersion {
		return nil, fmt.Errorf("pack trailer: unknown version %d", v)
	}
	n := d.Count(MinBlobLocSize)
	blobs := make([]BlobLoc, 0, n)
	var off int64
	for i := 0; i < n && d.Err == nil; i++ {
		b := DecodeBlobLoc(&d)
		if d.Err == nil && int64(b.Offset) != off {
			return nil, fmt.Errorf("pack trailer: %w: blob %d at offset %d, want %d", ErrCorrupt, i, b.Offset, off)
		}
		off += int64(b.Length)
		blobs = append(blobs, b)
	}
	if err := d.Done("pack trailer"); err != nil {
		return nil, err
	}
	if off != end {
		return nil, fmt.Errorf("pack trailer: %w: blobs end at %d, trailer starts at %d", ErrCorrupt, off, end)
	}
	return blobs, nil
}

// splitPack returns the sealed trailer of a whole pack and where it starts.
func SplitPack(pack []byte) (sealed []byte, start int64, err error) {
	if len(pack) < 4 {
		return nil, 0, fmt.Errorf("pack: %w: %d bytes is too short", ErrCorrupt, len(pack))
	}
	tl := int64(binary.LittleEndian.Uint32(pack[len(pack)-4:]))
	start = int64(len(pack)) - 4 - tl
	if tl < crypto.SealOverhead || start < 0 {
		return nil, 0, fmt.Errorf("pack: %w: trailer length %d does not fit a %d-byte pack", ErrCorrupt, tl, len(pack))
	}
	return pack[start : len(pack)-4], start, nil
}
