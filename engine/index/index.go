// Package index maps every blob id of a store to the pack that holds it,
// its place there and its kind: the in-memory index a repository loads
// from the index files and grows as a backup uploads packs.
package index

import (
	"sync"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// location is a blob's place, as kept in memory.
type location struct {
	pack   uint32 // position in MasterIndex.packs
	offset uint32
	length uint32
	rawLen uint32
	kind   format.BlobKind
	comp   format.Compression
}

// MasterIndex maps every blob id of the store to its pack. It is loaded
// from all index files and grows as a backup uploads packs.
type Master struct {
	mu    sync.RWMutex
	packs []crypto.ID
	kinds []format.BlobKind
	pos   map[crypto.ID]uint32
	blobs map[crypto.ID]location
	files int // index files loaded
}

func New() *Master {
	return &Master{pos: map[crypto.ID]uint32{}, blobs: map[crypto.ID]location{}}
}

// Add records the blobs of packs.
func (x *Master) Add(packs []format.IndexPack) {
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
func (x *Master) Has(id crypto.ID) bool {
	x.mu.RLock()
	_, ok := x.blobs[id]
	x.mu.RUnlock()
	return ok
}

// Lookup returns where blob id lives and the id of its pack.
func (x *Master) Lookup(id crypto.ID) (format.BlobLoc, crypto.ID, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if !ok {
		return format.BlobLoc{}, crypto.ID{}, false
	}
	return format.BlobLoc{ID: id, Kind: l.kind, Comp: l.comp, Offset: l.offset, Length: l.length, RawLen: l.rawLen}, x.packs[l.pack], true
}

// Len returns the number of blobs.
func (x *Master) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// Each calls fn for every blob with its pack id.
func (x *Master) Each(fn func(b format.BlobLoc, pack crypto.ID)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for id, l := range x.blobs {
		fn(format.BlobLoc{ID: id, Kind: l.kind, Comp: l.comp, Offset: l.offset, Length: l.length, RawLen: l.rawLen}, x.packs[l.pack])
	}
}

// Packs returns every indexed pack with its kind.
func (x *Master) Packs() map[crypto.ID]format.BlobKind {
	x.mu.RLock()
	defer x.mu.RUnlock()
	m := make(map[crypto.ID]format.BlobKind, len(x.packs))
	for i, p := range x.packs {
		m[p] = x.kinds[i]
	}
	return m
}

// Files returns the number of index files the index was loaded from.
func (x *Master) Files() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.files
}

// SetFiles records the number of index files the index was loaded from.
func (x *Master) SetFiles(n int) {
	x.mu.Lock()
	x.files = n
	x.mu.Unlock()
}
