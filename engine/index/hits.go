package index

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// hitSlots is the size of the hit cache: 4,096 entries of 56 bytes
// (230 KiB), whatever the number of blobs.
const (
	hitSlots  = 4096
	hitShards = 16
)

// hitCache remembers where ids found in a run are, so that asking again
// for a recent one (a blob shared by many files, a file read twice through
// a mount, Has then Lookup of one blob) costs no block read and
// decryption. It is direct-mapped: an id has one slot, and a newer hit
// there replaces the older. Only answers from runs are kept: a run's
// record never changes (merges keep the first location), so an entry
// stays true until the index is emptied or fails (clear). The full id is
// compared: a slot never answers for another id.
type hitCache struct {
	mu [hitShards]sync.Mutex
	e  atomic.Pointer[[hitSlots]hitEntry] // allocated at the first put
}

type hitEntry struct {
	id   crypto.ID
	l    location
	used bool
}

// slot picks an entry by id bytes the run prefixes do not use, so ids
// sharing a prefix (the index's collision tests) spread too.
func hitSlot(id *crypto.ID) uint32 {
	return binary.LittleEndian.Uint32(id[24:28]) & (hitSlots - 1)
}

func (c *hitCache) get(id *crypto.ID) (location, bool) {
	a := c.e.Load()
	if a == nil {
		return location{}, false
	}
	i := hitSlot(id)
	m := &c.mu[i%hitShards]
	m.Lock()
	e := a[i]
	m.Unlock()
	if !e.used || e.id != *id {
		return location{}, false
	}
	return e.l, true
}

func (c *hitCache) put(id *crypto.ID, l location) {
	a := c.e.Load()
	if a == nil {
		a = new([hitSlots]hitEntry)
		if !c.e.CompareAndSwap(nil, a) {
			a = c.e.Load()
		}
	}
	i := hitSlot(id)
	m := &c.mu[i%hitShards]
	m.Lock()
	a[i] = hitEntry{id: *id, l: l, used: true}
	m.Unlock()
}

// clear forgets every entry. The caller holds the index's write lock, so
// no get or put runs at the same time.
func (c *hitCache) clear() { c.e.Store(nil) }
