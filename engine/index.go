package engine

import (
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

const indexVersion = 1

// IndexPack is one pack's share of an index file.
type IndexPack struct {
	ID    ID
	Kind  BlobKind
	Blobs []BlobLoc
}

// encodeIndex is the plaintext of an index file.
func encodeIndex(packs []IndexPack) []byte {
	e := encoder{}
	e.byte(indexVersion)
	e.uvarint(uint64(len(packs)))
	for _, p := range packs {
		e.id(p.ID)
		e.byte(byte(p.Kind))
		e.uvarint(uint64(len(p.Blobs)))
		for i := range p.Blobs {
			encodeBlobLoc(&e, &p.Blobs[i])
		}
	}
	return e.b
}

func decodeIndex(p []byte) ([]IndexPack, error) {
	d := decoder{b: p}
	if v := d.byte(); d.err == nil && v != indexVersion {
		return nil, fmt.Errorf("index: unknown version %d", v)
	}
	n := d.count(32 + 2)
	packs := make([]IndexPack, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var ip IndexPack
		ip.ID = d.id()
		ip.Kind = BlobKind(d.byte())
		if d.err == nil && ip.Kind != BlobData && ip.Kind != BlobTree {
			d.fail("pack kind")
		}
		m := d.count(minBlobLocSize)
		ip.Blobs = make([]BlobLoc, 0, m)
		for j := 0; j < m && d.err == nil; j++ {
			b := decodeBlobLoc(&d)
			if d.err == nil && b.Kind != ip.Kind {
				d.fail("blob kind (differs from its pack's)")
			}
			ip.Blobs = append(ip.Blobs, b)
		}
		packs = append(packs, ip)
	}
	if err := d.done("index"); err != nil {
		return nil, err
	}
	return packs, nil
}

// location is a blob's place, as kept in memory.
type location struct {
	pack   uint32 // position in MasterIndex.packs
	offset uint32
	length uint32
	rawLen uint32
	kind   BlobKind
	comp   Compression
}

// MasterIndex maps every blob id of the store to its pack. It is loaded
// from all index files and grows as a backup uploads packs.
type MasterIndex struct {
	mu    sync.RWMutex
	packs []ID
	kinds []BlobKind
	pos   map[ID]uint32
	blobs map[ID]location
	files int
}

func newMasterIndex() *MasterIndex {
	return &MasterIndex{pos: map[ID]uint32{}, blobs: map[ID]location{}}
}

// Add records the blobs of packs.
func (x *MasterIndex) Add(packs []IndexPack) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range packs {
		pi, ok := x.pos[p.ID]
		if !ok {
			pi = uint32(len(x.packs))
			x.packs = append(x.packs, p.ID)
			x.kinds = append(x.kinds, p.Kind)
			x.pos[p.ID] = pi
		}
		for _, b := range p.Blobs {
			if _, dup := x.blobs[b.ID]; dup {
				continue // the same blob in two packs: either copy will do
			}
			x.blobs[b.ID] = location{pack: pi, offset: b.Offset, length: b.Length, rawLen: b.RawLen, kind: b.Kind, comp: b.Comp}
		}
	}
}

// Has reports whether the store holds blob id.
func (x *MasterIndex) Has(id ID) bool {
	x.mu.RLock()
	_, ok := x.blobs[id]
	x.mu.RUnlock()
	return ok
}

// Lookup returns where blob id lives and the id of its pack.
func (x *MasterIndex) Lookup(id ID) (BlobLoc, ID, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if !ok {
		return BlobLoc{}, ID{}, false
	}
	return BlobLoc{ID: id, Kind: l.kind, Comp: l.comp, Offset: l.offset, Length: l.length, RawLen: l.rawLen}, x.packs[l.pack], true
}

// Len returns the number of blobs.
func (x *MasterIndex) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// Each calls fn for every blob with its pack id.
func (x *MasterIndex) Each(fn func(b BlobLoc, pack ID)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for id, l := range x.blobs {
		fn(BlobLoc{ID: id, Kind: l.kind, Comp: l.comp, Offset: l.offset, Length: l.length, RawLen: l.rawLen}, x.packs[l.pack])
	}
}

// Packs returns every indexed pack with its kind.
func (x *MasterIndex) Packs() map[ID]BlobKind {
	x.mu.RLock()
	defer x.mu.RUnlock()
	m := make(map[ID]BlobKind, len(x.packs))
	for i, p := range x.packs {
		m[p] = x.kinds[i]
	}
	return m
}

// LoadIndex reads every index file of the store into r.Index. It is done
// once; later calls return at once.
func (r *Repo) LoadIndex(ctx context.Context) error {
	r.indexOnce.Do(func() { r.indexErr = r.loadIndex(ctx) })
	return r.indexErr
}

func (r *Repo) loadIndex(ctx context.Context) error {
	var names []store.Handle
	if err := r.st.List(ctx, store.KindIndex, func(o store.ObjectInfo) error {
		names = append(names, o.Handle)
		return nil
	}); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, name := range names {
		g.Go(func() error {
			packs, err := r.readIndexFile(gctx, name)
			if err != nil {
				return err
			}
			r.Index.Add(packs)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.Index.mu.Lock()
	r.Index.files = len(names)
	r.Index.mu.Unlock()
	return nil
}

func (r *Repo) readIndexFile(ctx context.Context, name store.Handle) ([]IndexPack, error) {
	p, err := r.loadObject(ctx, name, aadIndex)
	if err != nil {
		return nil, err
	}
	packs, err := decodeIndex(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return packs, nil
}
