package engine

// Prune: the space of forgotten snapshots reclaimed without blocking
// backups (docs/FORMAT.md §9 is the protocol and the argument why no
// snapshot loses a blob; this file follows it step by step).

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// PruneOptions choose how Prune runs.
type PruneOptions struct {
	// DryRun reads what a prune reads and reports what it would do; it
	// takes no lock and writes and deletes nothing.
	DryRun bool
	// Grace is how long a pack stays a deletion candidate, after the
	// index stopped naming it, before it may be deleted, on top of the
	// markers' protection: only for writers that leave no marker
	// (coffers older than the protocol). 0: as soon as no marker older
	// than the candidate is left.
	Grace time.Duration
	// Lease tunes the prune lock.
	Lease lease.Options
	// MaxUnused is the share of the live bytes that may stay in kept
	// packs as blobs no snapshot uses: packs with the largest unused
	// share are repacked (their live blobs copied into new packs, the
	// old ones made candidates) until the rest is under it. 0 means
	// DefaultMaxUnused; 1 or more never repacks.
	MaxUnused float64
	// Concurrency: trailers and snapshots read at once (default 8).
	Concurrency int
	// ExtendRetention, on a store with an object lock (Params.ObjectLock)
	// in a storage that can lock (store.RetainerOf), moves the lock of
	// every object the store still needs (the config, every pack a
	// snapshot uses, the index files, the snapshots) to at least
	// ObjectLock.Days from the end of the prune; the packs it stops
	// indexing are left alone, so their locks run out. Prune fails at
	// once if the store cannot lock.
	ExtendRetention bool
	// Log receives progress messages (phases, who is waited for).
	Log func(string)
}

// tempAge is how long a temp object must have been left unwritten
// before prune removes it: longer than a backup marker lives.
const tempAge = lease.DefaultDuration + lease.Skew

// repackRun bounds one read of adjacent blobs to repack.
const repackRun = 4 << 20

// pruneMemtable is the memtable of prune's lookup and marks (recent
// additions held in a map before a sorted run is written): smaller than
// a backup's, since prune adds in bulk and looks up little of it.
const pruneMemtable = 16384

func newPruneIndex() *index.Master {
	x, err := index.Open(index.Options{Memtable: pruneMemtable})
	if err != nil { // cannot happen without a folder
		panic(err)
	}
	return x
}

// DefaultMaxUnused is PruneOptions.MaxUnused's default, as rustic's.
const DefaultMaxUnused = 0.05

// PrunePack is a pack prune could not handle, and why.
type PrunePack struct {
	Pack  string `json:"pack"`
	Kind  string `json:"kind"`
	Size  int64  `json:"size"`
	Error string `json:"error"`
}

// PruneResult says what Prune did (or, with DryRun, would do).
type PruneResult struct {
	DryRun    bool `json:"dry_run"`
	Snapshots int  `json:"snapshots"`
	// Packs and Bytes are what the store held when the prune started.
	Packs int   `json:"packs"`
	Bytes int64 `json:"bytes"`
	// Kept packs stay indexed; UnusedInKept of their bytes belong to
	// blobs no snapshot uses.
	Kept         int   `json:"kept"`
	KeptBytes    int64 `json:"kept_bytes"`
	UnusedInKept int64 `json:"unused_bytes_in_kept"`
	// Repacked packs had their live blobs (RepackedLive bytes) copied into
	// new packs and became candidates (they are not counted in Unused).
	Repacked      int   `json:"repacked"`
	RepackedBytes int64 `json:"repacked_bytes"`
	RepackedLive  int64 `json:"repacked_live_bytes"`
	// Unused are the packs this run found no snapshot using (indexed
	// packs with no live blob, and leftovers of interrupted backups no
	// index names): they became deletion candidates.
	Unused      int   `json:"unused"`
	UnusedBytes int64 `json:"unused_bytes"`
	// Deleted packs and their bytes (would be, with DryRun).
	Deleted      int   `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	// Waiting candidates wait for the backups in WaitingFor (running
	// since before they stopped being indexed) or for the grace period;
	// the next prune deletes them.
	Waiting      int      `json:"waiting"`
	WaitingBytes int64    `json:"waiting_bytes"`
	WaitingFor   []string `json:"waiting_for"`
	// Rescued candidates hold blobs a snapshot written meanwhile uses:
	// they were indexed again, not deleted.
	Rescued int `json:"rescued"`
	// IndexFilesRead were merged into IndexFilesWritten (and removed).
	IndexFilesRead    int `json:"index_files_read"`
	IndexFilesWritten int `json:"index_files_written"`
	// Temps are the temp objects (a folder's .tmp-* files) killed
	// writers left, removed (counted, with DryRun), and their bytes.
	Temps      int   `json:"temps"`
	TempsBytes int64 `json:"temps_bytes"`
	// Failed are packs and index files whose deletion failed (a
	// retention lock, a permission): they are kept and tried again by the
	// next prune. BadTrailers are unindexed packs whose trailer does not
	// open: left alone.
	Failed      []PrunePack `json:"failed"`
	BadTrailers []PrunePack `json:"bad_trailers"`
	// Retention is what ExtendRetention did (would do); nil without it.
	Retention *PruneRetention `json:"retention,omitempty"`
}

// PruneRetention is what a prune did to the object locks of what the
// store still needs.
type PruneRetention struct {
	Mode string `json:"mode"`
	Days int    `json:"days"`
	// Until: every object counted below is locked at least until then.
	Until time.Time `json:"until"`
	// The objects looked at: the config (1), the packs a snapshot uses
	// (kept, rescued, and the new packs of a repack), the index files
	// (with DryRun: those the prune keeps as they are; the ones it
	// writes are locked from their write), the snapshots.
	Config     int `json:"config"`
	Packs      int `json:"packs"`
	IndexFiles int `json:"index_files"`
	Snapshots  int `json:"snapshots"`
	// Extended are those whose lock ended sooner and was moved to Until
	// (0 with DryRun: not read); the others were locked long enough. Gone
	// were removed meanwhile (a forget).
	Extended int `json:"extended"`
	Gone     int `json:"gone"`
}

// pendingGen is one run's deletion candidates: the time T at which the
// index stopped naming them, and the markers that existed then.
type pendingGen struct {
	Time    time.Time     `json:"time"`
	Markers []string      `json:"markers"`
	Packs   []pendingPack `json:"packs"`
}

type pendingPack struct {
	ID   crypto.ID       `json:"id"`
	Kind format.BlobKind `json:"kind"`
	Size int64           `json:"size"`
}

type pendingState struct {
	Generations []pendingGen `json:"generations"`
}

var aadPending = []byte("coffer prune pending v1")

var pendingHandle = store.Handle{Kind: store.KindLock, Name: lease.PendingName}

// loadPending reads the candidates earlier prunes left waiting. A
// missing or unreadable record is an empty one: its packs are then
// unindexed packs to this run, which makes them candidates again with a
// new time (never sooner deleted).
func (r *Repo) loadPending(ctx context.Context) (pendingState, string, error) {
	var ps pendingState
	data, err := r.st.Get(ctx, pendingHandle, 0, -1)
	if store.IsNotFound(err) {
		return ps, "", nil
	}
	if err != nil {
		return ps, "", err
	}
	p, err := r.openObject(data, aadPending)
	if err == nil {
		err = json.Unmarshal(p, &ps)
	}
	if err != nil {
		return pendingState{}, fmt.Sprintf("%s is unreadable (%v): its candidates are treated as new ones", pendingHandle, err), nil
	}
	return ps, "", nil
}

func (r *Repo) savePending(ctx context.Context, ps pendingState) error {
	if len(ps.Generations) == 0 {
		return r.st.Delete(ctx, pendingHandle)
	}
	b, err := json.Marshal(ps)
	if err != nil {
		return err
	}
	return r.st.Put(ctx, pendingHandle, r.sealObject(b, aadPending))
}

type packStat struct {
	kind       format.BlobKind
	size       int64 // as stored
	blobs      int64 // bytes of the blobs whose first copy it holds
	live       int64 // bytes of used blobs (first copies)
	indexed    bool
	badTrailer bool
}

// Prune deletes the packs no snapshot uses, following the protocol of
// FORMAT.md §9: under the prune lock, it marks every blob the snapshots
// use, writes a new index without the unused packs and only then removes
// the old index files, records the unused packs as candidates with the
// time, and deletes a candidate only once every backup that was running
// at that time is gone and no snapshot written since uses it.
func (r *Repo) Prune(ctx context.Context, opt PruneOptions) (*PruneResult, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 8
	}
	logf := func(format string, a ...any) {
		if opt.Log != nil {
			opt.Log(fmt.Sprintf(format, a...))
		}
	}
	res := &PruneResult{DryRun: opt.DryRun, WaitingFor: []string{}, Failed: []PrunePack{}, BadTrailers: []PrunePack{}}
	var retainer store.Retainer
	if opt.ExtendRetention {
		ret, ok := store.RetainerOf(r.st)
		if r.Params.ObjectLock == nil || !ok {
			return nil, fmt.Errorf("cannot extend the retention: %s", r.noLockReason(ok))
		}
		retainer = ret
	}
	lk, release, err := r.ExclusiveLock(ctx, opt.DryRun, "prune", opt.Lease)
	if err != nil {
		return nil, err
	}
	defer release()
	// checkLock stops the prune before a write if its lock lapsed:
	// another prune may have taken over.
	checkLock := func() error {
		if lk == nil {
			return nil
		}
		if err := lk.Check(); err != nil {
			return fmt.Errorf("prune: %w; stopped before changing more (run prune again)", err)
		}
		return nil
	}

	pending, note, err := r.loadPending(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the pending candidates: %w", err)
	}
	if note != "" {
		logf("%s", note)
	}
	pendingPacks := map[crypto.ID]int{} // pack -> generation
	for gi, g := range pending.Generations {
		for _, p := range g.Packs {
			pendingPacks[p.ID] = gi
		}
	}

	// Step 1: what the store holds and names.
	logf("reading the index")
	snaps0, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	res.Snapshots = len(snaps0)
	files0, err := r.IndexFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing index files: %w", err)
	}
	idx := newPruneIndex()
	defer idx.Close()
	infos0 := make([]indexFileInfo, len(files0))
	if err := r.readIndexNaming(ctx, idx, files0, infos0); err != nil {
		return nil, err
	}
	packs := map[crypto.ID]*packStat{}
	for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
		err := r.ListPacks(ctx, k, func(id crypto.ID, size int64) error {
			packs[id] = &packStat{kind: k, size: size}
			res.Packs++
			res.Bytes += size
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing packs: %w", err)
		}
	}
	for id := range idx.Packs() {
		if p := packs[id]; p != nil {
			p.indexed = true
		}
	}
	// Unindexed packs (earlier candidates, killed backups' leftovers,
	// packs of backups running now): their trailers go into the lookup
	// after the index files, so a blob also in an indexed pack keeps
	// that location.
	logf("reading the trailers of unindexed packs")
	if err := r.addTrailers(ctx, idx, packs, opt.Concurrency, res); err != nil {
		return nil, err
	}

	// Step 2: mark what the snapshots use.
	logf("marking the blobs of %d snapshots", len(snaps0))
	used := newPruneIndex()
	defer used.Close()
	view := r.WithIndex(idx)
	var missing atomic.Int64
	var firstMissing atomic.Value
	err = markSnapshots(ctx, view, snaps0, used, opt.Concurrency, func(id crypto.ID) {
		if !idx.Has(id) {
			if missing.Add(1) == 1 {
				firstMissing.Store(id)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("marking used blobs (nothing was changed): %w", err)
	}
	if n := missing.Load(); n > 0 {
		id := firstMissing.Load().(crypto.ID)
		return nil, fmt.Errorf("%d blobs that snapshots use are in no pack (blob %s first); nothing was changed: run check, then repair", n, id.Short())
	}
	var eachErr error
	if err := idx.Each(func(b format.BlobLoc, pack crypto.ID) {
		p := packs[pack]
		if p == nil {
			return // indexed, not stored: check reports it
		}
		p.blobs += int64(b.Length)
		if used.Has(b.ID) {
			p.live += int64(b.Length)
		}
	}); err != nil {
		return nil, err
	}
	if err := used.Err(); err != nil {
		eachErr = err
	}
	if eachErr != nil {
		return nil, eachErr
	}

	// Decide: kept, rescued (unindexed but used), unused.
	var unused []pendingPack
	var rescue []crypto.ID
	for id, p := range packs {
		gi, wasPending := pendingPacks[id]
		switch {
		case p.badTrailer:
		case p.live > 0 && p.indexed:
			res.Kept++
			res.KeptBytes += p.size
		case p.live > 0:
			rescue = append(rescue, id)
		case wasPending && !p.indexed:
			_ = gi // still waiting in its generation
		default:
			unused = append(unused, pendingPack{ID: id, Kind: p.kind, Size: p.size})
			res.Unused++
			res.UnusedBytes += p.size
		}
	}
	repack := choseRepack(packs, opt.MaxUnused)
	for id, p := range packs {
		if p.live > 0 && p.indexed && !p.badTrailer && !repack[id] {
			res.UnusedInKept += p.blobs - p.live
		}
	}
	for id := range repack {
		p := packs[id]
		res.Kept--
		res.KeptBytes -= p.size
		res.Repacked++
		res.RepackedBytes += p.size
		res.RepackedLive += p.live
	}
	sortPending(unused)
	// Earlier candidates that are used, indexed again, or gone leave
	// their generation.
	for gi := range pending.Generations {
		g := &pending.Generations[gi]
		kept := g.Packs[:0]
		for _, p := range g.Packs {
			st := packs[p.ID]
			if st != nil && !st.indexed && st.live == 0 && !st.badTrailer {
				kept = append(kept, p)
			}
		}
		g.Packs = kept
	}

	if opt.DryRun {
		now := time.Now()
		markers, err := lease.List(ctx, r.st, r.keys)
		if err != nil {
			return nil, err
		}
		gen := pendingGen{Time: now, Markers: liveMarkers(markers, now), Packs: unused}
		for id := range repack {
			p := packs[id]
			gen.Packs = append(gen.Packs, pendingPack{ID: id, Kind: p.kind, Size: p.size})
		}
		res.Rescued = len(rescue)
		r.judge(append(pending.Generations, gen), markers, now, opt.Grace, res, nil)
		if retainer != nil {
			res.Retention = r.pruneRetention(now)
			res.Retention.Config = 1
			res.Retention.Packs = len(livePacks(packs, repack, nil))
			res.Retention.Snapshots = len(snaps0)
			drop := map[crypto.ID]bool{}
			for _, p := range gen.Packs {
				drop[p.ID] = true
			}
			named, merge := toReplace(infos0, drop)
			res.Retention.IndexFiles = len(files0) - len(named) - len(merge)
		}
		return res, nil
	}

	// Step 3: the new index, durable, then the old one removed.
	if err := checkLock(); err != nil {
		return nil, err
	}
	var moved *index.Master // where repacked blobs are now
	if len(repack) > 0 {
		logf("repacking %d packs", len(repack))
		if moved, err = r.repack(ctx, repack, packs, idx, used); err != nil {
			return nil, fmt.Errorf("repacking (nothing was deleted; the packs written so far are removed by the next prune): %w", err)
		}
		defer moved.Close()
		ids := make([]crypto.ID, 0, len(repack))
		for id := range repack {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
		for _, id := range ids {
			p := packs[id]
			unused = append(unused, pendingPack{ID: id, Kind: p.kind, Size: p.size})
		}
	}
	drop := map[crypto.ID]bool{}
	for _, p := range unused {
		drop[p.ID] = true
	}
	named, merge := toReplace(infos0, drop)
	var held []store.Handle // locked files naming candidates: kept, their lock left to run out
	if r.Params.ObjectLock != nil {
		// A file still locked cannot be removed: replacing it would only
		// add a copy of it at every prune. A small one is not merged (it
		// stays current, and is extended); one naming candidates stays,
		// and so do its packs (none becomes a candidate while it names
		// them), until its lock runs out.
		var free []store.Handle
		free, held = r.keepLocked(ctx, named, infos0, drop, logf)
		named = free
		merge, _ = r.keepLocked(ctx, merge, nil, nil, logf)
		if len(merge) < 2 {
			merge = nil
		}
		unused = slices.DeleteFunc(unused, func(p pendingPack) bool { return !drop[p.ID] })
	}
	replace := append(named, merge...)
	replaced := len(replace) > 0 || len(rescue) > 0
	if replaced {
		logf("writing the new index")
		written, err := r.rewriteIndex(ctx, replace, drop, rescue, packs)
		if err != nil {
			return nil, err
		}
		res.IndexFilesWritten = written
		res.IndexFilesRead = len(replace)
		if err := checkLock(); err != nil {
			return nil, err
		}
		for _, h := range replace {
			if err := r.st.Delete(ctx, h); err != nil {
				// The old file still names its packs: none of them may
				// become a candidate now.
				res.Failed = append(res.Failed, PrunePack{Pack: h.Name, Kind: "index", Error: err.Error()})
				packsOf, rerr := r.ReadIndexFile(ctx, h)
				if rerr != nil {
					return nil, fmt.Errorf("index file %s could not be removed (%v) nor read again: %w", crypto.ShortName(h.Name), err, rerr)
				}
				for _, ip := range packsOf {
					delete(drop, ip.ID)
				}
			}
		}
		if len(drop) < len(unused) {
			kept := unused[:0]
			for _, p := range unused {
				if drop[p.ID] {
					kept = append(kept, p)
				}
			}
			unused = kept
		}
	}
	res.Rescued = len(rescue)

	// Step 4: the time T and the markers that existed before it.
	markers, err := lease.List(ctx, r.st, r.keys)
	if err != nil {
		return nil, fmt.Errorf("listing locks: %w", err)
	}
	now := time.Now()
	if len(unused) > 0 {
		pending.Generations = append(pending.Generations, pendingGen{Time: now, Markers: liveMarkers(markers, now), Packs: unused})
	}
	if err := checkLock(); err != nil {
		return nil, err
	}
	if err := r.savePending(ctx, pending); err != nil {
		return nil, fmt.Errorf("recording the candidates: %w", err)
	}

	// Step 5: which candidates are ready, re-checked against the
	// snapshots written since the mark.
	ready := map[crypto.ID]pendingPack{}
	r.judge(pending.Generations, markers, now, opt.Grace, res, ready)
	// This run's candidates are checked too, ready or not: a backup
	// that wrote its snapshot after the mark but listed the index files
	// before they were replaced would not know that it must index them
	// again (KeepIndexed), so the prune does.
	check := map[crypto.ID]pendingPack{}
	for id, p := range ready {
		check[id] = p
	}
	for _, p := range unused {
		check[p.ID] = p
	}
	var rescuedLate []crypto.ID // candidates a new snapshot uses
	if len(check) > 0 {
		logf("checking snapshots written meanwhile")
		saved, err := r.recheck(ctx, idx, used, moved, snaps0, files0, res, check, opt.Concurrency)
		if err != nil {
			// Nothing proven safe: delete nothing this time.
			logf("not deleting: %v", err)
			for _, p := range ready {
				res.Waiting++
				res.WaitingBytes += p.Size
			}
			res.Deleted, res.DeletedBytes = 0, 0
			ready = nil
		} else if len(saved) > 0 {
			if err := checkLock(); err != nil {
				return nil, err
			}
			if _, err := r.rewriteIndex(ctx, nil, nil, saved, packs); err != nil {
				return nil, err
			}
			gone := map[crypto.ID]bool{}
			for _, id := range saved {
				gone[id] = true
				rescuedLate = append(rescuedLate, id)
				if _, ok := ready[id]; ok {
					delete(ready, id)
				} else {
					res.Waiting--
					res.WaitingBytes -= check[id].Size
				}
			}
			for gi := range pending.Generations {
				g := &pending.Generations[gi]
				kept := g.Packs[:0]
				for _, p := range g.Packs {
					if !gone[p.ID] {
						kept = append(kept, p)
					}
				}
				g.Packs = kept
			}
			res.Rescued += len(saved)
		}
	}

	// Step 6: delete.
	if err := checkLock(); err != nil {
		return nil, err
	}
	logf("deleting %d packs", len(ready))
	failed := map[crypto.ID]bool{}
	var fmu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Concurrency)
	ids := make([]crypto.ID, 0, len(ready))
	for id := range ready {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, id := range ids {
		p := ready[id]
		g.Go(func() error {
			err := r.st.Delete(gctx, PackHandle(p.Kind, p.ID))
			fmu.Lock()
			defer fmu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				failed[p.ID] = true
				res.Failed = append(res.Failed, PrunePack{Pack: p.ID.String(), Kind: p.Kind.String(), Size: p.Size, Error: err.Error()})
				return nil
			}
			res.Deleted++
			res.DeletedBytes += p.Size
			return nil
		})
	}
	gerr := g.Wait()
	if ts, ok := store.FindTempSweeper(r.st); ok && gerr == nil {
		// A writer that stalled this long has a lapsed marker: it fails
		// before its snapshot whatever happens to its temp file.
		n, b, err := ts.RemoveTemps(ctx, max(opt.Grace, tempAge))
		res.Temps, res.TempsBytes = n, b
		if err != nil {
			logf("removing temp files: %v", err)
		}
	}
	// What is left waits for the next prune.
	var left pendingState
	for _, gen := range pending.Generations {
		kept := []pendingPack{}
		for _, p := range gen.Packs {
			if _, done := ready[p.ID]; !done || failed[p.ID] {
				kept = append(kept, p)
			}
		}
		if len(kept) > 0 {
			gen.Packs = kept
			left.Generations = append(left.Generations, gen)
		}
	}
	if err := r.savePending(context.WithoutCancel(ctx), left); err != nil && gerr == nil {
		gerr = fmt.Errorf("recording the candidates left: %w", err)
	}
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Pack < res.Failed[j].Pack })
	if retainer != nil && gerr == nil {
		// Step 7 (object lock): what the store still needs stays locked.
		if err := checkLock(); err != nil {
			return res, err
		}
		keep := livePacks(packs, repack, rescuedLate)
		if moved != nil {
			for id, k := range moved.Packs() {
				keep[id] = k // new packs: locked from their write already, but they are needed
			}
		}
		// Not extended: the files replaced (deleted, or kept only by their
		// own lock) and those held (their lock must run out so that the
		// prune after it can replace them and reclaim their packs).
		skip := held
		if replaced {
			skip = append(skip, replace...)
		}
		logf("extending the retention of %d packs, the index and the snapshots", len(keep))
		gerr = r.extendRetention(ctx, retainer, keep, skip, opt.Concurrency, res)
	}
	return res, gerr
}

// noLockReason says why a store cannot extend retention; hasRetainer
// is whether its storage can lock objects.
func (r *Repo) noLockReason(hasRetainer bool) string {
	if r.Params.ObjectLock == nil {
		return "the store has no object lock (it was not created with --object-lock-days)"
	}
	return fmt.Sprintf("the store was created with an object lock, but %s cannot lock objects (a copy of an S3 store?)", r.st.Location())
}

// pruneRetention is the start of a report of retention extended at now.
func (r *Repo) pruneRetention(now time.Time) *PruneRetention {
	p := r.Params.Retention()
	return &PruneRetention{Mode: string(p.Mode), Days: p.Days, Until: p.Until(now).UTC().Truncate(time.Second)}
}

// keepLocked returns the files of replace that no lock keeps, and the
// others (held), and takes the packs the held ones name out of drop (an
// error reading a lock counts as locked: the file is kept, which is
// always safe).
func (r *Repo) keepLocked(ctx context.Context, replace []store.Handle, infos []indexFileInfo, drop map[crypto.ID]bool, logf func(string, ...any)) (free, held []store.Handle) {
	ret, ok := store.RetainerOf(r.st)
	if !ok {
		return replace, nil
	}
	names := map[string][]crypto.ID{} // none with infos nil: drop is left alone
	for _, f := range infos {
		names[f.h.Name] = f.packs
	}
	now := time.Now()
	for _, h := range replace {
		rt, err := ret.Retention(ctx, h)
		if err == nil && !rt.LockedAt(now) {
			free = append(free, h)
			continue
		}
		held = append(held, h)
		if err != nil {
			logf("index file %s: its lock cannot be read (%v): kept, with its packs", crypto.ShortName(h.Name), err)
		} else {
			logf("index file %s is locked until %s: kept, with its packs", crypto.ShortName(h.Name), rt.Until.Format(time.RFC3339))
		}
		for _, id := range names[h.Name] {
			delete(drop, id)
		}
	}
	return free, held
}

// toReplace chooses the index files a prune replaces (step 4): named,
// every file that names a pack it stops indexing, and merge, to merge
// what backups wrote, the other small ones (under half of
// IndexFlushBlobs blobs) when there are two or more. A full file that
// names no such pack is kept as it is: a prune does not rewrite the
// whole index every time.
func toReplace(files []indexFileInfo, drop map[crypto.ID]bool) (named, merge []store.Handle) {
	for _, f := range files {
		if f.gone {
			continue
		}
		switch {
		case slices.ContainsFunc(f.packs, func(id crypto.ID) bool { return drop[id] }):
			named = append(named, f.h)
		case f.blobs < IndexFlushBlobs/2:
			merge = append(merge, f.h)
		}
	}
	if len(merge) < 2 {
		merge = nil
	}
	return named, merge
}

// livePacks are the packs the store keeps: those with a used blob
// (indexed, or rescued), less the repacked ones, and the late rescues.
func livePacks(packs map[crypto.ID]*packStat, repack map[crypto.ID]bool, late []crypto.ID) map[crypto.ID]format.BlobKind {
	out := map[crypto.ID]format.BlobKind{}
	for id, p := range packs {
		if p.live > 0 && !p.badTrailer && !repack[id] {
			out[id] = p.kind
		}
	}
	for _, id := range late {
		if p := packs[id]; p != nil {
			out[id] = p.kind
		}
	}
	return out
}

// extendRetention moves the lock of the config, the packs in keep, the
// index files (less those in skip) and the snapshots to at least the
// policy's days from now. Objects gone meanwhile are counted, not
// errors; any other error stops it.
func (r *Repo) extendRetention(ctx context.Context, ret store.Retainer, keep map[crypto.ID]format.BlobKind, skip []store.Handle, conc int, res *PruneResult) error {
	files, err := r.IndexFiles(ctx)
	if err != nil {
		return fmt.Errorf("extending the retention: listing index files: %w", err)
	}
	snaps, err := r.SnapshotIDs(ctx)
	if err != nil {
		return fmt.Errorf("extending the retention: listing snapshots: %w", err)
	}
	rr := r.pruneRetention(time.Now())
	res.Retention = rr
	hs := []store.Handle{store.ConfigHandle}
	rr.Config = 1
	ids := make([]crypto.ID, 0, len(keep))
	for id := range keep {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, id := range ids {
		hs = append(hs, PackHandle(keep[id], id))
	}
	rr.Packs = len(ids)
	old := map[string]bool{}
	for _, h := range skip {
		old[h.Name] = true
	}
	for _, h := range files {
		if !old[h.Name] {
			hs = append(hs, h)
			rr.IndexFiles++
		}
	}
	for _, id := range snaps {
		hs = append(hs, store.Handle{Kind: store.KindSnapshot, Name: id.String()})
	}
	rr.Snapshots = len(snaps)
	var extended, gone atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, h := range hs {
		g.Go(func() error {
			moved, err := ret.ExtendRetention(gctx, h, rr.Until)
			switch {
			case store.IsNotFound(err):
				gone.Add(1)
			case err != nil:
				return fmt.Errorf("extending the retention of %s: %w (the rest of the prune is done; run prune again to finish)", h, err)
			case moved:
				extended.Add(1)
			}
			return nil
		})
	}
	err = g.Wait()
	rr.Extended, rr.Gone = int(extended.Load()), int(gone.Load())
	return err
}

// liveMarkers names the backup markers that still protect something
// at now (unreadable ones count: they might).
func liveMarkers(ms []lease.Info, now time.Time) []string {
	out := []string{}
	for _, m := range ms {
		if m.Name == lease.PruneName || m.Stale(now) {
			continue
		}
		out = append(out, m.Name)
	}
	return out
}

// judge sorts the candidates of gens into ready (if not nil: the caller
// deletes them) and waiting, and says who is waited for.
func (r *Repo) judge(gens []pendingGen, markers []lease.Info, now time.Time, grace time.Duration, res *PruneResult, ready map[crypto.ID]pendingPack) {
	present := map[string]lease.Info{}
	for _, m := range markers {
		if m.Name != lease.PruneName && !m.Stale(now) {
			present[m.Name] = m
		}
	}
	waitFor := map[string]bool{}
	for _, g := range gens {
		ok := !now.Before(g.Time.Add(grace))
		for _, name := range g.Markers {
			if m, there := present[name]; there {
				ok = false
				who := store.Handle{Kind: store.KindLock, Name: name}.String()
				if m.Err == nil {
					who = m.Record.Owner()
				} else {
					who += " (unreadable: coffer unlock --force removes it)"
				}
				waitFor[who] = true
			}
		}
		if !ok && now.Before(g.Time.Add(grace)) {
			waitFor[fmt.Sprintf("the grace period (until %s)", g.Time.Add(grace).Local().Format(time.RFC3339))] = true
		}
		for _, p := range g.Packs {
			if ok {
				if ready != nil {
					ready[p.ID] = p
				} else {
					res.Deleted++
					res.DeletedBytes += p.Size
				}
			} else {
				res.Waiting++
				res.WaitingBytes += p.Size
			}
		}
	}
	for w := range waitFor {
		res.WaitingFor = append(res.WaitingFor, w)
	}
	sort.Strings(res.WaitingFor)
}

// recheck walks the snapshots written since the mark and returns the
// ready candidates that hold the only known copy of a blob they use.
func (r *Repo) recheck(ctx context.Context, idx, used, moved *index.Master, snaps0 []crypto.ID, files0 []store.Handle, res *PruneResult, ready map[crypto.ID]pendingPack, conc int) ([]crypto.ID, error) {
	snaps1, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	old := map[crypto.ID]bool{}
	for _, id := range snaps0 {
		old[id] = true
	}
	var fresh []crypto.ID
	for _, id := range snaps1 {
		if !old[id] {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	// The index files backups wrote meanwhile, so their trees are found.
	files1, err := r.IndexFiles(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, h := range files0 {
		seen[h.Name] = true
	}
	var add []store.Handle
	for _, h := range files1 {
		if !seen[h.Name] {
			add = append(add, h)
		}
	}
	if err := r.readIndexInto(ctx, idx, add); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	saved := map[crypto.ID]bool{}
	err = markSnapshots(ctx, r.WithIndex(idx), fresh, used, conc, func(id crypto.ID) {
		if moved != nil && moved.Has(id) {
			return // repacked: its new pack is indexed
		}
		_, pack, ok := idx.Lookup(id)
		if !ok {
			return // in none of the packs known: not in a candidate
		}
		if _, cand := ready[pack]; cand {
			mu.Lock()
			saved[pack] = true
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]crypto.ID, 0, len(saved))
	for id := range saved {
		out = append(out, id)
	}
	return out, nil
}

// readIndexInto reads index files into idx, 8 at a time.
func (r *Repo) readIndexInto(ctx context.Context, idx *index.Master, files []store.Handle) error {
	return r.readIndexNaming(ctx, idx, files, nil)
}

// indexFileInfo is what one index file names: its blobs and packs.
type indexFileInfo struct {
	h     store.Handle
	gone  bool // removed since it was listed
	blobs int
	packs []crypto.ID
}

// readIndexNaming reads index files into idx, 8 at a time, and with
// infos (as long as files) records what each names.
func (r *Repo) readIndexNaming(ctx context.Context, idx *index.Master, files []store.Handle, infos []indexFileInfo) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, h := range files {
		g.Go(func() error {
			packs, err := r.ReadIndexFile(gctx, h)
			if store.IsNotFound(err) {
				if infos != nil {
					infos[i] = indexFileInfo{h: h, gone: true}
				}
				return nil // removed meanwhile (a repair): its packs are in a newer file
			}
			if err != nil {
				return fmt.Errorf("reading index file %s (nothing was changed; repair index rebuilds a damaged one): %w", crypto.ShortName(h.Name), err)
			}
			if infos != nil {
				info := indexFileInfo{h: h, packs: make([]crypto.ID, len(packs))}
				for j, ip := range packs {
					info.packs[j] = ip.ID
					info.blobs += len(ip.Blobs)
				}
				infos[i] = info
			}
			return idx.AddFile(h.Name, packs)
		})
	}
	return g.Wait()
}

// addTrailers adds the blobs of every unindexed pack to idx from its
// trailer; a pack whose trailer does not open is marked bad.
func (r *Repo) addTrailers(ctx context.Context, idx *index.Master, packs map[crypto.ID]*packStat, conc int, res *PruneResult) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for id, p := range packs {
		if p.indexed {
			continue
		}
		g.Go(func() error {
			blobs, err := r.ReadTrailer(gctx, p.kind, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if store.IsNotFound(err) {
					delete(packs, id)
					return nil
				}
				if !(errors.Is(err, crypto.ErrAuth) || errors.Is(err, format.ErrCorrupt)) {
					return fmt.Errorf("pack %s: %w", id.Short(), err)
				}
				p.badTrailer = true
				res.BadTrailers = append(res.BadTrailers, PrunePack{Pack: id.String(), Kind: p.kind.String(), Size: p.size, Error: err.Error()})
				return nil
			}
			return idx.Add([]format.IndexPack{{ID: id, Kind: p.kind, Blobs: blobs}})
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	sort.Slice(res.BadTrailers, func(i, j int) bool { return res.BadTrailers[i].Pack < res.BadTrailers[j].Pack })
	return nil
}

// rewriteIndex writes the packs the index files in files name, less
// those in drop, and the packs in add (from their trailers), into new
// index files of up to IndexFlushBlobs blobs, and returns how many it
// wrote. Every one is durable when it returns.
func (r *Repo) rewriteIndex(ctx context.Context, files []store.Handle, drop map[crypto.ID]bool, add []crypto.ID, packs map[crypto.ID]*packStat) (int, error) {
	written := 0
	var batch []format.IndexPack
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := r.SaveObject(ctx, store.KindIndex, format.EncodeIndex(batch), format.AADIndex); err != nil {
			return fmt.Errorf("writing an index file: %w", err)
		}
		written++
		batch, n = nil, 0
		return nil
	}
	put := func(ip format.IndexPack) error {
		batch = append(batch, ip)
		n += len(ip.Blobs)
		if n >= IndexFlushBlobs {
			return flush()
		}
		return nil
	}
	done := map[crypto.ID]bool{}
	for _, h := range files {
		ips, err := r.ReadIndexFile(ctx, h)
		if store.IsNotFound(err) {
			continue
		}
		if err != nil {
			return written, fmt.Errorf("reading index file %s again: %w", crypto.ShortName(h.Name), err)
		}
		for _, ip := range ips {
			if drop[ip.ID] || done[ip.ID] {
				continue
			}
			if p := packs[ip.ID]; p == nil {
				continue // not in the store: nothing to name
			}
			done[ip.ID] = true
			if err := put(ip); err != nil {
				return written, err
			}
		}
	}
	for _, id := range add {
		if done[id] {
			continue
		}
		p := packs[id]
		blobs, err := r.ReadTrailer(ctx, p.kind, id)
		if err != nil {
			return written, fmt.Errorf("pack %s: %w", id.Short(), err)
		}
		done[id] = true
		if err := put(format.IndexPack{ID: id, Kind: p.kind, Blobs: blobs}); err != nil {
			return written, err
		}
	}
	return written, flush()
}

func sortPending(ps []pendingPack) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID.String() < ps[j].ID.String() })
}

// ExclusiveLock takes the prune lock (locks/prune) for command, unless dry:
// prune, repair index and repair packs replace index files, and each
// would delete the files another wrote. A live lock makes it fail at
// once with a *lease.HeldError naming its holder. release lets it go;
// with dry there is no lease (nil) and nothing to release.
func (r *Repo) ExclusiveLock(ctx context.Context, dry bool, command string, opt lease.Options) (lk *lease.Lease, release func(), err error) {
	if dry {
		return nil, func() {}, nil
	}
	if opt.Command == "" {
		opt.Command = command
	}
	if lk, err = lease.Exclusive(ctx, r.st, r.keys, lease.PruneName, opt); err != nil {
		return nil, nil, err
	}
	return lk, func() { lk.Release(context.WithoutCancel(ctx)) }, nil
}
