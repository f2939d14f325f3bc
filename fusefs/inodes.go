package fusefs

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
)

// The kernel keeps an entry (dentry and inode) for every name it has
// looked up, and go-fuse keeps a node for every inode the kernel knows,
// until the kernel forgets it: only under memory pressure, which a
// machine with free memory never has. So `ls -R` of a million-file
// snapshot left a million nodes in the mount, each with its snapshot
// entry, ~1 KiB apiece (835 MiB, docs/PERFORMANCE.md), whatever the
// cache sizes said.
//
// inodes bounds them. Every node of a snapshot tree (or of a live
// bucket's, live_inodes.go) that a lookup creates takes a slot of a ring of Options.MaxInodes slots; when the
// ring is full, a clock hand picks a quarter of them among the nodes not
// used since it last passed (used is set by lookups in a folder,
// listings, opens and reads), and the kernel is asked to drop them
// (drop), after which it sends FORGET and go-fuse lets the nodes go. A
// node someone still holds (an open file, a current directory) stays,
// untracked, until its holder lets go. The snapshot list and the roots
// are not counted: there are few of them.
//
// When the drops are sent matters (see quiet): at the open of a folder
// (flush), or by a goroutine of their own once lookups pause, which is
// also the only way to send entry invalidations (old kernels): the
// kernel holds a folder's lock while it waits for a lookup's reply, and
// the invalidation of an entry in that folder waits for the same lock.
type inodes struct {
	max int

	mu      sync.Mutex
	ring    []tracker
	free    []int // slots of ring whose node is gone
	hand    int
	pending []tracker // evicted, not yet invalidated
	wake    chan struct{}
	started bool

	live        atomic.Int64 // tracked nodes not forgotten
	invalidated atomic.Int64 // entries invalidated
	noPrune     atomic.Bool  // the kernel has no prune notification
	last        atomic.Int64 // when a lookup last ran (Unix ns)
}

// tracker is a node the ring can hold: what embeds slot.
type tracker interface {
	fs.InodeEmbedder
	inodeSlot() *slot
}

// slot is what a tracked node keeps for the ring.
type slot struct {
	used atomic.Bool
	at   int // its place in the ring, if the ring holds it there
	// counted: the node is in inodes.live.
	counted bool
}

func (s *slot) inodeSlot() *slot { return s }

// touch marks s used since the clock hand last passed it.
func (s *slot) touch() {
	if !s.used.Load() {
		s.used.Store(true)
	}
}

// DefaultMaxInodes is how many nodes of a tree (a snapshot's, or a live
// bucket's) a mount lets the kernel keep by default, about 1 KiB each in
// the mount (go-fuse's inode and tables, the snapshot entry; measured:
// 200k entries listed, 1,024 B each, docs/PERFORMANCE.md): ~50 MiB.
const DefaultMaxInodes = 50_000

func newInodes(max int) *inodes {
	return &inodes{max: max, ring: make([]tracker, 0, min(max, 4096)), wake: make(chan struct{}, 1)}
}

// boundInodes returns the bound of Options.MaxInodes and
// LiveOptions.MaxInodes: 0 the default, negative none (nil, which every
// method below takes).
func boundInodes(max int) *inodes {
	switch {
	case max == 0:
		return newInodes(DefaultMaxInodes)
	case max > 0:
		return newInodes(max)
	}
	return nil
}

// track counts in the bound the inode go-fuse returned for a lookup,
// if its node is one the bound tracks (embeds slot): fresh says go-fuse
// made the node for this lookup, rather than returning one the kernel
// already has. done ends the invalidator.
func (in *inodes) track(ino *fs.Inode, fresh bool, done <-chan struct{}) *fs.Inode {
	if in == nil {
		return ino
	}
	if t, ok := ino.Operations().(tracker); ok {
		in.add(t, fresh, done)
	}
	return ino
}

// opened sends the pending evictions now: a folder is being opened, and
// no listing of it is in flight yet.
func (in *inodes) opened() {
	if in != nil {
		in.flush(true)
	}
}

// forgotten is called when go-fuse lets node go.
func (in *inodes) forgotten(node fs.InodeEmbedder) {
	if t, ok := node.(tracker); ok && in != nil {
		in.forget(t)
	}
}

// counts returns the nodes tracked now and the entries invalidated so
// far (Stats.Inodes, Stats.Invalidated).
func (in *inodes) counts() (live, invalidated int64) {
	if in == nil {
		return 0, 0
	}
	return in.live.Load(), in.invalidated.Load()
}

// add tracks n, a node of the tree the kernel has just looked up
// (fresh: go-fuse made it for this lookup). When the ring is full, a
// quarter of it is evicted at once, the least recently used first.
func (in *inodes) add(n tracker, fresh bool, done <-chan struct{}) {
	s := n.inodeSlot()
	in.active()
	in.mu.Lock()
	defer in.mu.Unlock()
	if fresh && !s.counted {
		s.counted = true
		in.live.Add(1)
	}
	if in.holdsLocked(n) {
		s.touch()
		return
	}
	if len(in.ring) < in.max {
		s.at = len(in.ring)
		in.ring = append(in.ring, n)
		return
	}
	if len(in.free) == 0 {
		in.evictLocked(max(1, in.max/4), done)
	}
	s.at = in.free[len(in.free)-1]
	in.free = in.free[:len(in.free)-1]
	in.ring[s.at] = n
}

// evictLocked frees k slots of the ring, by the clock: a used node gets
// a second chance; an unused one is evicted. Evictions come in bursts
// because the kernel distrusts the attributes in every listing reply
// that crosses an eviction (and asks for each entry's again, a GETATTR
// each: evicting one node per lookup during an `ls -lR` of 200k entries
// sent 189k of them and took 8× as long).
func (in *inodes) evictLocked(k int, done <-chan struct{}) {
	for range 2 * len(in.ring) {
		if k == 0 {
			break
		}
		i := in.hand
		in.hand = (in.hand + 1) % len(in.ring)
		old := in.ring[i]
		if old == nil || old.inodeSlot().used.Swap(false) {
			continue
		}
		in.ring[i] = nil
		in.free = append(in.free, i)
		in.pending = append(in.pending, old)
		k--
	}
	in.startLocked(done)
}

// holdsLocked reports whether n has a slot of the ring.
func (in *inodes) holdsLocked(n tracker) bool {
	at := n.inodeSlot().at
	return at < len(in.ring) && in.ring[at] == n
}

// forget is called when go-fuse lets n go.
func (in *inodes) forget(n tracker) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if s := n.inodeSlot(); s.counted {
		s.counted = false
		in.live.Add(-1)
	}
	if in.holdsLocked(n) {
		at := n.inodeSlot().at
		in.ring[at] = nil
		in.free = append(in.free, at)
	}
}

// startLocked wakes the invalidator, starting it on first use.
func (in *inodes) startLocked(done <-chan struct{}) {
	if !in.started {
		in.started = true
		go in.invalidate(done)
	}
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// invalidate asks the kernel to drop the entries of evicted nodes until
// done.
func (in *inodes) invalidate(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-in.wake:
		}
		in.waitQuiet(done)
		in.flush(false)
	}
}

// quiet is how long no lookup must have run before the invalidator sends
// evictions, and quietMax how long it waits for that at most. The kernel
// distrusts the attributes in a reply to a request that was in flight
// when an inode was evicted: each of the hundreds of entries of a
// listing reply then costs a GETATTR. So evictions are sent, if they
// can be, when a folder is opened (flush), before the listings of that
// folder are asked for and after the replies of the one before have been
// taken in, and otherwise when lookups pause.
const (
	quiet    = 20 * time.Millisecond
	quietMax = 200 * time.Millisecond
)

// flush sends the pending evictions now (at an open of a folder: sync),
// unless only entry invalidations can do it, which take the locks of
// folders and so are left to the invalidator.
func (in *inodes) flush(sync bool) {
	if sync && in.noPrune.Load() {
		return
	}
	in.mu.Lock()
	batch := in.pending
	in.pending = nil
	in.mu.Unlock()
	in.drop(batch)
}

// active notes that a lookup or listing is running now.
func (in *inodes) active() { in.last.Store(time.Now().UnixNano()) }

// waitQuiet waits until no lookup ran for quiet, or quietMax.
func (in *inodes) waitQuiet(done <-chan struct{}) {
	deadline := time.Now().Add(quietMax)
	for time.Now().Before(deadline) {
		idle := time.Duration(time.Now().UnixNano() - in.last.Load())
		if idle >= quiet {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(quiet - idle):
		}
	}
}

// pruneBatch is how many inodes one prune notification names.
const pruneBatch = 256

// drop asks the kernel to forget batch. A prune notification (Linux
// 6.16 and later) names the inodes, and the kernel drops their unused
// entries; an invalidation of each entry (any kernel) also marks its
// folder changed, which makes the kernel distrust the attributes of
// every listing in flight and ask for each entry's again (an `ls -lR`
// of 200k entries with 190k invalidations sent 183k GETATTRs and took 8×
// as long), so it is only the fallback.
func (in *inodes) drop(batch []tracker) {
	if !in.noPrune.Load() {
		for len(batch) > 0 {
			part := batch[:min(len(batch), pruneBatch)]
			nodes := make([]*fs.Inode, 0, len(part))
			for _, n := range part {
				nodes = append(nodes, n.EmbeddedInode())
			}
			if errno := nodes[0].NotifyPrune(nodes); errno == syscall.ENOSYS {
				in.noPrune.Store(true)
				break
			}
			in.invalidated.Add(int64(len(part)))
			batch = batch[len(part):]
		}
	}
	for _, n := range batch {
		name, parent := n.EmbeddedInode().Parent()
		if parent == nil {
			continue // forgotten meanwhile
		}
		// ENOENT: the kernel no longer has the entry. Any other error
		// (an unmount) leaves the node, which the bound then does not
		// cover.
		parent.NotifyEntry(name)
		in.invalidated.Add(1)
	}
}
