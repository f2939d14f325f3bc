// Package index maps every blob id of a store to the pack that holds it,
// its place there and its kind: the index a repository loads from the
// index files and grows as a backup uploads packs.
//
// It is compact: the locations live in sorted runs of sealed fixed-size
// records on disk (run.go), and RAM holds only a table built from the
// records' id prefixes (a radix table and 16 more bits a blob: 2.25
// bytes a blob), the table of
// pack ids, a bounded memtable of recent Adds that is written out as a new
// run when full, and a fixed cache of the ids last found in runs
// (hits.go). Runs are merged (k-way, one block
// per run in memory) so that there are few of them. A lookup searches the
// prefixes in RAM and compares the full id in the record it reads from
// disk: a match in the table alone never answers.
//
// With a cache folder (Open), the runs and the pack table are kept
// between processes, listed in a sealed manifest with the index files
// they cover (cache.go); without one (New), the runs are unlinked
// temporary files sealed under a key that lives only in this process.
package index

import (
	"bytes"
	"container/heap"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// DefaultMemtable is how many recent blobs are kept in RAM (about 80
// bytes each) before they are written out as a run: 1.3 MB. (At 1 << 16,
// 5 MB, a backup's peak grew with the number of its files: a million
// tiny files peaked higher than 100,000 larger ones; docs/PERFORMANCE.md.)
const DefaultMemtable = 1 << 14

// fanout is how many runs of one size class are merged into one while a
// backup adds blobs (lookups search every run); loadFanout while index
// files are read (nothing looks up until Save, which merges what is left:
// fewer passes over the data).
const (
	fanout     = 8
	loadFanout = 32
)

// Options configure a Master.
type Options struct {
	// Dir keeps the index between processes (cmd/coffer uses
	// coffer-index/<store id> in the user's cache folder); "" keeps nothing and writes unlinked temporary files.
	Dir string
	// Key (32 bytes, derived from the store's master key) seals the
	// files in Dir; required with Dir. StoreID binds them to one store.
	Key     []byte
	StoreID string
	// Memtable bounds the blobs kept in RAM before a run is written
	// (DefaultMemtable when 0).
	Memtable int
}

// Master maps every blob id of the store to its pack. It is loaded from
// all index files and grows as a backup uploads packs. Answers are those
// of a map filled by the same Adds: a blob added twice keeps its first
// location.
type Master struct {
	mu  sync.RWMutex
	opt Options

	packs      []crypto.ID
	kinds      []format.BlobKind
	packSorted []uint32             // positions in packs, by pack id
	packNew    map[crypto.ID]uint32 // packs not yet in packSorted

	mem  map[crypto.ID]location // recent Adds, newer than every run
	runs []*run                 // oldest first
	hits hitCache               // ids recently found in runs

	covered []string // index files whose blobs all were added (AddFile)
	dirty   bool     // blobs were added that no index file covers: never saved
	err     error    // first failure to read a run

	obsolete []string // run files of the manifest merged away or dropped since
	note     string   // why a cache was not used, for tests and messages
}

// New returns an empty index that keeps nothing between processes.
func New() *Master {
	x, err := Open(Options{})
	if err != nil { // cannot happen without a folder
		panic(err)
	}
	return x
}

// Open returns the index kept in opt.Dir, or an empty one when there is
// none, or when it is unreadable, foreign (another store or key) or
// damaged: such a cache is removed and rebuilt, never trusted (Note says
// why). It fails only when the folder cannot be used.
func Open(opt Options) (*Master, error) {
	if opt.Memtable <= 0 {
		opt.Memtable = DefaultMemtable
	}
	if opt.Dir == "" {
		// A key that dies with the process seals the temporary runs.
		opt.Key = make([]byte, 32)
		rand.Read(opt.Key)
	} else {
		if len(opt.Key) != 32 {
			return nil, errors.New("index cache: the key must be 32 bytes")
		}
		if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("index cache: %w", err)
		}
	}
	x := &Master{opt: opt}
	x.resetLocked()
	if opt.Dir != "" {
		if err := x.loadCache(); err != nil {
			x.note = err.Error()
			x.resetLocked()
			os.Remove(x.manifestPath())
		}
	}
	return x, nil
}

// resetLocked empties the index (closing its runs).
func (x *Master) resetLocked() {
	for _, r := range x.runs {
		x.release(r)
	}
	x.packs, x.kinds, x.packSorted = nil, nil, nil
	x.packNew = map[crypto.ID]uint32{}
	x.mem = map[crypto.ID]location{}
	x.runs, x.covered, x.dirty, x.err = nil, nil, false, nil
	x.hits.clear()
}

// Reset empties the index: the caller found that a cached index covers
// index files the store no longer has.
func (x *Master) Reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range x.runs {
		if r.persisted {
			x.obsolete = append(x.obsolete, r.name) // removed at the next save
		}
	}
	x.resetLocked()
}

// Note says why a cache in the folder was not used ("" if it was, or
// there was none).
func (x *Master) Note() string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.note
}

// Covered returns the index files whose blobs the index holds (read by
// AddFile, here or in an earlier process).
func (x *Master) Covered() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.covered)
}

// Err returns the first failure to read the index's files. A lookup that
// fails answers "absent" (a backup then stores the blob again); callers
// that must tell "absent" from "unreadable" ask Err.
func (x *Master) Err() error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.err
}

func (x *Master) fail(err error) {
	x.mu.Lock()
	x.failLocked(err)
	x.mu.Unlock()
}

// failLocked records err for Err unless a failure was recorded already.
func (x *Master) failLocked(err error) {
	if x.err == nil {
		x.err = err
	}
	x.hits.clear() // a run may have lost its prefixes: answer as the runs do
}

// packIndexLocked returns the position of pack id, adding it if new.
func (x *Master) packIndexLocked(id crypto.ID, k format.BlobKind) uint32 {
	if pi, ok := x.packNew[id]; ok {
		return pi
	}
	if i, ok := x.searchPack(id); ok {
		return x.packSorted[i]
	}
	pi := uint32(len(x.packs))
	x.packs = append(x.packs, id)
	x.kinds = append(x.kinds, k)
	x.packNew[id] = pi
	if len(x.packNew) > max(4096, len(x.packSorted)/4) {
		x.sortPacksLocked()
	}
	return pi
}

func (x *Master) searchPack(id crypto.ID) (int, bool) {
	i := sort.Search(len(x.packSorted), func(i int) bool {
		return bytes.Compare(x.packs[x.packSorted[i]][:], id[:]) >= 0
	})
	return i, i < len(x.packSorted) && x.packs[x.packSorted[i]] == id
}

// sortPacksLocked moves packNew into packSorted.
func (x *Master) sortPacksLocked() {
	if len(x.packNew) == 0 {
		return
	}
	s := slices.Grow(x.packSorted, len(x.packNew))
	for _, pi := range x.packNew {
		s = append(s, pi)
	}
	slices.SortFunc(s, func(a, b uint32) int { return bytes.Compare(x.packs[a][:], x.packs[b][:]) })
	x.packSorted = s
	x.packNew = map[crypto.ID]uint32{}
}

// Add records the blobs of packs that no index file lists yet (a backup's
// new packs). It fails if a full memtable cannot be written out.
func (x *Master) Add(packs []format.IndexPack) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dirty = true
	return x.addLocked(packs, fanout)
}

// AddFile records the blobs of index file name.
func (x *Master) AddFile(name string, packs []format.IndexPack) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.addLocked(packs, loadFanout); err != nil {
		return err
	}
	x.covered = append(x.covered, name)
	return nil
}

func (x *Master) addLocked(packs []format.IndexPack, fan int) error {
	for _, p := range packs {
		pi := x.packIndexLocked(p.ID, p.Kind)
		for _, b := range p.Blobs {
			if _, dup := x.mem[b.ID]; dup {
				continue // the same blob in two packs: the first stays
			}
			x.mem[b.ID] = location{pack: pi, offset: b.Offset, length: b.Length, rawLen: b.RawLen, kind: b.Kind, comp: b.Comp}
			if len(x.mem) >= x.opt.Memtable {
				if err := x.flushLocked(); err != nil {
					return err
				}
				if err := x.mergeTiersLocked(fan); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Has reports whether the store holds blob id. An unreadable index file
// answers false (and sets Err): the blob is then stored again.
func (x *Master) Has(id crypto.ID) bool {
	_, _, ok := x.find(id, false)
	return ok
}

// Lookup returns where blob id lives and the id of its pack. An unreadable
// index file answers false and sets Err.
func (x *Master) Lookup(id crypto.ID) (format.BlobLoc, crypto.ID, bool) {
	l, pack, ok := x.find(id, true)
	if !ok {
		return format.BlobLoc{}, crypto.ID{}, false
	}
	return format.BlobLoc{ID: id, Kind: l.kind, Comp: l.comp, Offset: l.offset, Length: l.length, RawLen: l.rawLen}, pack, true
}

// find returns the location of id and its pack's id. A failure answers
// false and is kept for Err.
func (x *Master) find(id crypto.ID, first bool) (location, crypto.ID, bool) {
	x.mu.RLock()
	l, ok := x.hits.get(&id)
	var err error
	if !ok {
		var inRun bool
		l, ok, inRun, err = x.findLocked(&id, first)
		if ok && inRun && err == nil {
			x.hits.put(&id, l)
		}
	}
	var pack crypto.ID
	if ok && err == nil {
		pack = x.packs[l.pack]
	}
	x.mu.RUnlock()
	if err != nil {
		x.fail(err)
		return location{}, crypto.ID{}, false
	}
	return l, pack, ok
}

// findLocked searches the runs from the oldest, then the memtable: the
// first location added wins, as in a map that keeps the first. With
// first unset (Has), the memtable is searched first. inRun says the
// answer came from a run.
func (x *Master) findLocked(id *crypto.ID, first bool) (l location, ok, inRun bool, err error) {
	if !first {
		if l, ok := x.mem[*id]; ok {
			return l, true, false, nil
		}
	}
	for _, r := range x.runs {
		l, ok, err := r.find(id)
		if err == nil && ok && int(l.pack) >= len(x.packs) {
			err = fmt.Errorf("%w: %s: pack %d of %d", errCache, r.label(), l.pack, len(x.packs))
		}
		if err != nil || ok {
			return l, ok, ok, err
		}
	}
	l, ok = x.mem[*id]
	return l, ok, false, nil
}

// Len returns the number of blobs. It reads every run.
func (x *Master) Len() int {
	n := 0
	x.Each(func(format.BlobLoc, crypto.ID) { n++ })
	return n
}

// Each calls fn for every blob with its pack id, in id order. fn must not
// call x. It reads every run; a read failure stops it and is returned.
func (x *Master) Each(fn func(b format.BlobLoc, pack crypto.ID)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.flushLocked(); err != nil {
		return err
	}
	return x.mergeRuns(x.runs, func(id *crypto.ID, l *location) error {
		if int(l.pack) >= len(x.packs) {
			return fmt.Errorf("%w: pack %d of %d", errCache, l.pack, len(x.packs))
		}
		fn(format.BlobLoc{ID: *id, Kind: l.kind, Comp: l.comp, Offset: l.offset, Length: l.length, RawLen: l.rawLen}, x.packs[l.pack])
		return nil
	})
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

// Files returns the number of index files the index holds (read by
// AddFile, here or in an earlier process): len(Covered()).
func (x *Master) Files() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.covered)
}

// Close releases the runs; x must not be used after.
func (x *Master) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.resetLocked()
	return nil
}

// newRun creates an empty run file for nmax records: a named file in the
// cache folder if the index may be saved, else an unlinked one.
func (x *Master) newRun(nmax int) (*run, *runWriter, error) {
	r := &run{nmax: nmax, dir: x.opt.Dir}
	rand.Read(r.fileID[:])
	r.aead = fileAEAD(x.opt.Key, x.opt.StoreID, "run", r.fileID[:])
	var err error
	if x.opt.Dir != "" && !x.dirty {
		r.name = fmt.Sprintf("run-%x", r.fileID)
		r.f, err = os.OpenFile(x.path(r.name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	} else {
		dir := x.opt.Dir // on disk, where the cache is; else TMPDIR
		r.f, err = os.CreateTemp(dir, "coffer-index-*")
		if err == nil {
			os.Remove(r.f.Name())
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("index: creating a run file: %w", err)
	}
	if _, err := r.f.WriteAt(runMagic[:], 0); err != nil {
		x.release(r)
		return nil, nil, fmt.Errorf("index: writing a run file: %w", err)
	}
	w := &runWriter{r: r, recs: newBlockWriter(r, regionRecords, recSize), pfxs: newBlockWriter(r, regionPrefixes, 8)}
	return r, w, nil
}

// release closes a run and removes its file unless a manifest lists it.
func (x *Master) release(r *run) {
	r.drop()
	r.dropPrefixes()
	if r.name != "" && !r.persisted {
		os.Remove(x.path(r.name))
	}
}

// flushLocked writes the memtable out as the newest run.
func (x *Master) flushLocked() error {
	if len(x.mem) == 0 {
		return nil
	}
	ids := make([]crypto.ID, 0, len(x.mem))
	for id := range x.mem {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareIDs)
	r, w, err := x.newRun(len(ids))
	if err != nil {
		return err
	}
	for i := range ids {
		l := x.mem[ids[i]]
		if err := w.add(&ids[i], &l); err != nil {
			x.release(r)
			return err
		}
	}
	if err := w.close(); err != nil {
		x.release(r)
		return err
	}
	i := 0
	r.setPrefixes(len(ids), func() (uint64, error) { i++; return prefixOf(&ids[i-1]), nil }) // in order: cannot fail
	x.runs = append(x.runs, r)
	// Made again, not emptied with clear: an emptied map keeps the
	// buckets of Memtable entries for good, a fixed cost that
	// TestRAMPerBlob counts per blob (11 bytes a blob at 300,000 blobs,
	// bound 8). Regrowing it is ~2.6 MB of garbage a flush, little
	// beside a backup's other allocations.
	x.mem = map[crypto.ID]location{}
	return nil
}

// level is a run's size class: runs of one class are merged fan at a
// time, so a blob is rewritten about log_fan(N/memtable) times.
func (x *Master) level(n, fan int) int {
	l := 0
	for c := x.opt.Memtable; n > c; c *= fan {
		l++
	}
	return l
}

// mergeTiersLocked merges the newest runs while fan of them share a size
// class.
func (x *Master) mergeTiersLocked(fan int) error {
	for {
		n := len(x.runs)
		if n < fan {
			return nil
		}
		l := x.level(x.runs[n-1].n, fan)
		j := n - 1
		for j > 0 && x.level(x.runs[j-1].n, fan) == l {
			j--
		}
		if n-j < fan {
			return nil
		}
		if err := x.mergeLocked(j, n); err != nil {
			return err
		}
	}
}

// settleLocked leaves at most two runs: a big old one, and the rest merged
// into one unless they are large enough to be merged into it too.
func (x *Master) settleLocked() error {
	if len(x.runs) < 2 {
		return nil
	}
	tail := 0
	for _, r := range x.runs[1:] {
		tail += r.n
	}
	if tail*fanout >= x.runs[0].n {
		return x.mergeLocked(0, len(x.runs))
	}
	if len(x.runs) > 2 {
		return x.mergeLocked(1, len(x.runs))
	}
	return nil
}

// mergeLocked replaces runs[a:b] by one run.
func (x *Master) mergeLocked(a, b int) error {
	in := x.runs[a:b]
	nmax := 0
	for _, r := range in {
		nmax += r.n
	}
	out, w, err := x.newRun(nmax)
	if err != nil {
		return err
	}
	if err := x.mergeRuns(in, w.add); err != nil {
		x.release(out)
		return err
	}
	if err := w.close(); err != nil {
		x.release(out)
		return err
	}
	// Drop the old prefixes before reading the new ones: RAM never holds
	// both.
	for _, r := range in {
		r.dropPrefixes()
	}
	if err := out.loadPrefixes(); err != nil {
		// The old runs lost their prefixes: they answer "absent" from
		// now on, which a backup survives (it stores blobs again); Err
		// tells the others.
		x.release(out)
		x.failLocked(err)
		return err
	}
	for _, r := range in {
		if r.persisted {
			x.obsolete = append(x.obsolete, r.name)
		}
		x.release(r)
	}
	x.runs = slices.Replace(x.runs, a, b, out)
	return nil
}

// cursor is one run's place in a merge.
type cursor struct {
	br  *blockReader
	age int // position among the merged runs: lower is older
	id  crypto.ID
	l   location
}

type cursorHeap []*cursor

func (h cursorHeap) Len() int { return len(h) }
func (h cursorHeap) Less(i, j int) bool {
	if c := compareIDs(h[i].id, h[j].id); c != 0 {
		return c < 0
	}
	return h[i].age < h[j].age
}

// compareIDs orders ids as bytes.Compare does, comparing the first 8
// bytes as one number first.
func compareIDs(a, b crypto.ID) int {
	if pa, pb := prefixOf(&a), prefixOf(&b); pa != pb {
		if pa < pb {
			return -1
		}
		return 1
	}
	return bytes.Compare(a[8:], b[8:])
}
func (h cursorHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(v any)   { *h = append(*h, v.(*cursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

func (c *cursor) advance() error {
	it, err := c.br.item()
	if err != nil {
		return err
	}
	c.id, c.l = getRecord(it)
	return nil
}

// mergeRuns calls fn for every id of runs in order, once, with the
// location of the oldest run holding it.
func (x *Master) mergeRuns(runs []*run, fn func(*crypto.ID, *location) error) error {
	h := make(cursorHeap, 0, len(runs))
	for i, r := range runs {
		c := &cursor{br: newBlockReader(r, regionRecords, recSize, r.n), age: i}
		if err := c.advance(); err == io.EOF {
			continue
		} else if err != nil {
			return err
		}
		h = append(h, c)
	}
	heap.Init(&h)
	var last crypto.ID
	started := false
	for len(h) > 0 {
		c := h[0]
		if !started || c.id != last {
			if err := fn(&c.id, &c.l); err != nil {
				return err
			}
			last, started = c.id, true
		}
		if err := c.advance(); err == io.EOF {
			heap.Pop(&h)
		} else if err != nil {
			return err
		} else {
			heap.Fix(&h, 0)
		}
	}
	return nil
}

// Save writes the memtable out, merges runs down to at most two, and,
// with a cache folder and only index files added (AddFile), records them
// in the folder for the next process. Callers save after reading index
// files.
func (x *Master) Save() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.flushLocked(); err != nil {
		return err
	}
	if err := x.settleLocked(); err != nil {
		return err
	}
	x.sortPacksLocked()
	if x.opt.Dir == "" || x.dirty {
		return nil
	}
	return x.saveCache()
}
