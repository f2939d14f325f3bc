package format

import (
	"fmt"

	"github.com/coffer-backup/coffer/engine/crypto"
)

const indexVersion = 1

// IndexPack is one pack's share of an index file.
type IndexPack struct {
	ID    crypto.ID
	Kind  BlobKind
	Blobs []BlobLoc
}

// encodeIndex is the plaintext of an index file.
func EncodeIndex(packs []IndexPack) []byte {
	e := Encoder{}
	e.Byte(indexVersion)
	e.Uvarint(uint64(len(packs)))
	for _, p := range packs {
		e.ID(p.ID)
		e.Byte(byte(p.Kind))
		e.Uvarint(uint64(len(p.Blobs)))
		for i := range p.Blobs {
			EncodeBlobLoc(&e, &p.Blobs[i])
		}
	}
	return e.B
}

func DecodeIndex(p []byte) ([]IndexPack, error) {
	d := Decoder{B: p}
	if v := d.Byte(); d.Err == nil && v != indexVersion {
		return nil, fmt.Errorf("index: unknown version %d", v)
	}
	n := d.Count(32 + 2)
	packs := make([]IndexPack, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		var ip IndexPack
		ip.ID = d.ID()
		ip.Kind = BlobKind(d.Byte())
		if d.Err == nil && ip.Kind != BlobData && ip.Kind != BlobTree {
			d.Fail("pack kind")
		}
		m := d.Count(MinBlobLocSize)
		ip.Blobs = make([]BlobLoc, 0, m)
		for j := 0; j < m && d.Err == nil; j++ {
			b := DecodeBlobLoc(&d)
			if d.Err == nil && b.Kind != ip.Kind {
				d.Fail("blob kind (differs from its pack's)")
			}
			ip.Blobs = append(ip.Blobs, b)
		}
		packs = append(packs, ip)
	}
	if err := d.Done("index"); err != nil {
		return nil, err
	}
	return packs, nil
}
