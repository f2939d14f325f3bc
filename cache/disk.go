package cache

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Disk is a second tier under an LRU in memory: blocks of bytes (ranges
// of large objects) kept in one file on local disk up to a byte budget,
// so that what memory has to let go is read again from the disk instead
// of the network. The file is removed from its folder as soon as it is
// made: nothing is left behind, not even by a killed process, and no
// other process reads it. It is cut into slots of a fixed size; a block
// takes one slot, and the least recently used block gives its slot to
// the next when the budget is full.
//
// Get and ReadAt return exactly the bytes Put gave for the key, or
// nothing: the CRC-32C of each 4 KiB page of a block is kept in memory
// and checked on every read, and a slot being read is never written. A write that fails (a full disk)
// turns the tier off, says so once through the log function, and gives
// the disk space back; reads then miss and callers go to the network.
// Safe for concurrent use.
type Disk[K comparable] struct {
	f     *os.File
	slot  int64
	slots int
	logf  func(format string, args ...any)
	locks []sync.RWMutex // one a slot: held to read it, exclusively to write it

	mu      sync.Mutex
	lru     *simplelru.LRU[K, diskBlock]
	free    []int // slots given back
	next    int   // slots from here on were never used
	pending map[K]bool
	waiting map[K]bool // in PutLater's queue
	off     error      // why the tier is off; nil while on
	gen     uint64

	hits, misses, writes, bad atomic.Int64

	lmu       sync.RWMutex      // held to send to later, exclusively to close it
	closed    bool              // later is closed; under lmu
	later     chan diskWrite[K] // PutLater's queue, to the writer
	queued    atomic.Int64      // bytes in it
	maxQueued int64
	dropped   atomic.Int64  // PutLater's blocks not kept: the queue was full
	stopped   chan struct{} // the writer has ended
}

type diskWrite[K comparable] struct {
	key  K
	data []byte
}

// diskBlock is where a block is and what it must read as: the CRC-32C
// of each of its pages.
type diskBlock struct {
	slot int
	n    int
	gen  uint64 // which Put wrote it
	crcs []uint32
}

// diskPage is the unit of the checksums: a read checks the pages it
// touches.
const diskPage = 4096

func pageCRCs(data []byte) []uint32 {
	crcs := make([]uint32, 0, (len(data)+diskPage-1)/diskPage)
	for i := 0; i < len(data); i += diskPage {
		crcs = append(crcs, crc32.Checksum(data[i:min(i+diskPage, len(data))], crcTable))
	}
	return crcs
}

// checkPages says whether buf, the bytes of a block from page first on,
// reads as the block was written.
func (b *diskBlock) checkPages(buf []byte, first int) bool {
	for i := 0; i < len(buf); i += diskPage {
		if crc32.Checksum(buf[i:min(i+diskPage, len(buf))], crcTable) != b.crcs[first+i/diskPage] {
			return false
		}
	}
	return true
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// NewDisk returns a disk tier in a new file in folder dir (made if need
// be, mode 0700), holding at most maxBytes in slots of slot bytes (a
// block larger than a slot is not kept). logf says why the tier turned
// itself off.
func NewDisk[K comparable](dir string, maxBytes, slot int64, logf func(format string, args ...any)) (*Disk[K], error) {
	if slot <= 0 || maxBytes < slot {
		return nil, fmt.Errorf("disk cache of %d bytes in slots of %d: want room for a slot at least", maxBytes, slot)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "blocks-*.tmp")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	slots := int(maxBytes / slot)
	l, _ := simplelru.NewLRU[K, diskBlock](slots+1, nil)
	d := &Disk[K]{
		f: f, slot: slot, slots: slots, logf: logf, locks: make([]sync.RWMutex, slots),
		lru: l, pending: map[K]bool{}, waiting: map[K]bool{},
		later: make(chan diskWrite[K], 1024), maxQueued: max(8<<20, 4*slot), stopped: make(chan struct{}),
	}
	go d.writer()
	return d, nil
}

// PutLater is Put done by the tier's own goroutine, so that the caller
// (a reader waiting for the block) does not wait for the disk: the block
// is queued, or dropped if more than a few MiB are queued already. A
// block the tier holds, or is writing, or has queued is not queued
// again: a block loaded twice (the memory tier let it go before its
// reader came) would otherwise take the queue's room twice and push out
// one never kept. The caller must not change data afterwards.
func (d *Disk[K]) PutLater(key K, data []byte) {
	n := int64(len(data))
	d.lmu.RLock()
	defer d.lmu.RUnlock()
	if d.closed || n > d.slot {
		return
	}
	d.mu.Lock()
	if d.off != nil || d.lru.Contains(key) || d.pending[key] || d.waiting[key] {
		d.mu.Unlock()
		return
	}
	d.waiting[key] = true
	d.mu.Unlock()
	if d.queued.Add(n) > d.maxQueued {
		d.queued.Add(-n)
		d.dropped.Add(1)
		d.unwait(key)
		return
	}
	select {
	case d.later <- diskWrite[K]{key, data}:
	default:
		d.queued.Add(-n)
		d.dropped.Add(1)
		d.unwait(key)
	}
}

// unwait notes that key has left PutLater's queue.
func (d *Disk[K]) unwait(key K) {
	d.mu.Lock()
	delete(d.waiting, key)
	d.mu.Unlock()
}

// writer writes what PutLater queued, until Close.
func (d *Disk[K]) writer() {
	defer close(d.stopped)
	for w := range d.later {
		d.Put(w.key, w.data)
		d.unwait(w.key)
		d.queued.Add(-int64(len(w.data)))
	}
}

// Flush waits until what PutLater queued so far is written (or
// dropped).
func (d *Disk[K]) Flush() {
	for d.queued.Load() > 0 {
		select {
		case <-d.stopped:
			return
		default:
			time.Sleep(time.Millisecond)
		}
	}
}

// Close gives the disk space back. Gets and Puts after it miss, and
// PutLaters keep nothing.
func (d *Disk[K]) Close() {
	d.mu.Lock()
	if d.off == nil {
		d.off = errors.New("closed")
	}
	d.mu.Unlock()
	d.lmu.Lock()
	if !d.closed {
		d.closed = true
		close(d.later)
	}
	d.lmu.Unlock()
	<-d.stopped
	d.f.Close()
}

// Contains says whether key's block is kept, without making it recent.
func (d *Disk[K]) Contains(key K) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.off == nil && (d.lru.Contains(key) || d.pending[key])
}

// Get returns a copy of the block of key, if it is kept and reads back
// as it was written.
func (d *Disk[K]) Get(key K) ([]byte, bool) {
	d.mu.Lock()
	b, ok := d.lru.Peek(key)
	d.mu.Unlock()
	if !ok {
		d.misses.Add(1)
		return nil, false
	}
	buf := make([]byte, b.n)
	if !d.ReadAt(key, buf, 0) {
		return nil, false
	}
	return buf, true
}

// ReadAt reads len(p) bytes at off of the block of key into p, if it is
// kept and those bytes read back as they were written (the pages they
// touch are read and checked). On false, p holds anything.
func (d *Disk[K]) ReadAt(key K, p []byte, off int64) bool {
	d.mu.Lock()
	b, ok := d.lru.Get(key)
	end := off + int64(len(p))
	if !ok || d.off != nil || off < 0 || end > int64(b.n) {
		d.mu.Unlock()
		d.misses.Add(1)
		return false
	}
	lk := &d.locks[b.slot]
	lk.RLock() // before unlocking d.mu: the slot cannot be given away first
	d.mu.Unlock()
	lo, hi := off/diskPage*diskPage, min((end+diskPage-1)/diskPage*diskPage, int64(b.n))
	buf := p // a read of whole pages lands in p
	if lo != off || hi != end {
		buf = make([]byte, hi-lo)
	}
	n, err := d.f.ReadAt(buf, int64(b.slot)*d.slot+lo)
	lk.RUnlock()
	if err != nil || n != len(buf) || !b.checkPages(buf, int(lo/diskPage)) {
		d.bad.Add(1)
		d.mu.Lock()
		if cur, ok := d.lru.Peek(key); ok && cur.gen == b.gen {
			d.lru.Remove(key)
			d.free = append(d.free, b.slot)
		}
		d.mu.Unlock()
		d.misses.Add(1)
		return false
	}
	if len(buf) != len(p) {
		copy(p, buf[off-lo:])
	}
	d.hits.Add(1)
	return true
}

// Put keeps a copy of data as key's block, unless it is kept already,
// being written, or larger than a slot.
func (d *Disk[K]) Put(key K, data []byte) {
	if int64(len(data)) > d.slot {
		return
	}
	d.mu.Lock()
	if d.off != nil || d.lru.Contains(key) || d.pending[key] {
		d.mu.Unlock()
		return
	}
	slot, ok := d.takeLocked()
	if !ok {
		d.mu.Unlock()
		return
	}
	d.pending[key] = true
	d.mu.Unlock()

	crcs := pageCRCs(data)
	lk := &d.locks[slot]
	lk.Lock() // readers of the block that had the slot finish first
	_, err := d.f.WriteAt(data, int64(slot)*d.slot)
	lk.Unlock()

	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, key)
	if err != nil {
		d.free = append(d.free, slot)
		d.turnOffLocked(err)
		return
	}
	if d.off != nil {
		return
	}
	d.writes.Add(1)
	d.gen++
	d.lru.Add(key, diskBlock{slot: slot, n: len(data), gen: d.gen, crcs: crcs})
}

// takeLocked returns a free slot: one given back, one never used, or
// the least recently used block's; none if every slot is being written.
// d.mu must be held.
func (d *Disk[K]) takeLocked() (int, bool) {
	if n := len(d.free); n > 0 {
		s := d.free[n-1]
		d.free = d.free[:n-1]
		return s, true
	}
	if d.next < d.slots {
		d.next++
		return d.next - 1, true
	}
	_, b, ok := d.lru.RemoveOldest()
	return b.slot, ok
}

// turnOffLocked stops the tier after a write error, and gives its disk
// space back. d.mu must be held.
func (d *Disk[K]) turnOffLocked(err error) {
	if d.off != nil {
		return
	}
	d.off = err
	d.lru.Purge()
	// A reader holding a slot gets a short read, which is a miss.
	d.f.Truncate(0)
	if d.logf != nil {
		d.logf("the disk cache is off for the rest of this mount: %v", err)
	}
}

// Off says whether the tier has turned off (a write error, Close).
func (d *Disk[K]) Off() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.off != nil
}

// DiskStats count what a Disk did.
type DiskStats struct {
	Hits, Misses, Writes int64
	Bad                  int64 // blocks that did not read back as written
	Dropped              int64 // PutLater's blocks not kept: the queue was full
	Blocks               int
	Off                  error
}

// Stats returns the counters.
func (d *Disk[K]) Stats() DiskStats {
	d.mu.Lock()
	n, off := d.lru.Len(), d.off
	d.mu.Unlock()
	return DiskStats{Hits: d.hits.Load(), Misses: d.misses.Load(), Writes: d.writes.Load(), Bad: d.bad.Load(), Dropped: d.dropped.Load(), Blocks: n, Off: off}
}
