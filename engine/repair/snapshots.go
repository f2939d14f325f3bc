package repair

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// RepairedTag is the tag of every snapshot 'repair snapshots' writes.
const RepairedTag = "repaired"

// SnapshotsOptions choose how Snapshots runs.
type SnapshotsOptions struct {
	// Snapshots to repair; none: every snapshot of the store.
	Snapshots []*engine.Snapshot
	// DryRun reads what a repair reads and reports what it would do; it
	// writes and removes nothing.
	DryRun bool
	// Forget removes each damaged original once its repaired snapshot is
	// durable (and an original an earlier repair already replaced).
	Forget bool
	// ReadData also reads the data packs the snapshots use and treats
	// the blobs that fail to verify as damaged (without it, a content
	// blob is damaged when no index names it or its pack is gone).
	ReadData    bool
	Concurrency int // data packs read at once with ReadData (default 4)
	Progress    *engine.Progress
}

// RepairedPath is one path a repair changed.
type RepairedPath struct {
	Path string `json:"path"`
	// Action is "dropped" (a file whose content is damaged, left out),
	// "emptied" (a folder that could not be read, kept empty with its
	// metadata) or "lost" (entries of a part of a large folder that
	// could not be read; Path is the first of them).
	Action  string `json:"action"`
	Entries uint64 `json:"entries,omitempty"` // "lost": how many
	Reason  string `json:"reason"`
}

// RepairedSnapshot is a damaged snapshot and what its repair did.
type RepairedSnapshot struct {
	Snapshot string `json:"snapshot"` // the original's full id
	Source   string `json:"source"`
	// New is the repaired snapshot ("" with DryRun); AlreadyRepairedAs is
	// set instead when an earlier repair wrote one (then Paths is empty).
	New               string `json:"new,omitempty"`
	AlreadyRepairedAs string `json:"already_repaired_as,omitempty"`
	// Forgotten: the original was removed (Forget), after New was durable.
	Forgotten bool           `json:"forgotten"`
	Paths     []RepairedPath `json:"paths"`
}

// SnapshotsResult reports what Snapshots did (with DryRun,
// would do).
type SnapshotsResult struct {
	DryRun  bool `json:"dry_run"`
	Checked int  `json:"snapshots_checked"`
	// Damaged are the snapshots found damaged, oldest first.
	Damaged []RepairedSnapshot `json:"damaged"`
	// StillIndexed are packs holding a damaged blob that the index still
	// names: until Packs drops them, a new backup deduplicates
	// against them again. Unless DryRun, Snapshots runs Packs
	// on them itself (Packs says what it did) before it writes a snapshot.
	StillIndexed []string     `json:"still_indexed_packs"`
	Packs        *PacksResult `json:"repair_packs,omitempty"`
	// DataPacksRead and BytesRead count what ReadData read.
	DataPacksRead int   `json:"data_packs_read"`
	BytesRead     int64 `json:"bytes_read"`
}

// Snapshots writes, for every chosen snapshot whose tree
// references missing or damaged blobs, a new snapshot without them: a
// file whose content (or chunk list) cannot be read is dropped, a folder
// that cannot be read becomes an empty folder (its metadata kept), and
// the entries of an unreadable page of a large folder are dropped. Every
// changed path is reported. The new snapshot keeps the original's time
// (plus 1 ns, so that it sorts after it), source, host and tags, adds
// the tag "repaired", names the original in Original, is marked partial
// and lists the changed paths in its skipped entries.
//
// Every tree blob is read; a content blob is damaged when no index
// names it or its pack is not in the store (and, with ReadData, when it
// fails to verify). A failure to reach the store (not damage) stops the
// repair before anything is written.
//
// Order: packs holding damaged blobs that the index still names are
// repaired (Packs on them: their damaged blobs leave the index, so
// the next backup stores that data again); the new tree blobs are
// written (packs, then their index file), then the new snapshots, and
// only then, with Forget, the originals are removed. A kill at any point
// leaves the originals (at worst unindexed packs); a rerun skips the
// originals that already have a repaired snapshot.
func Snapshots(ctx context.Context, r *engine.Repo, opt SnapshotsOptions) (*SnapshotsResult, error) {
	if opt.Progress == nil {
		opt.Progress = &engine.Progress{}
	}
	if opt.Concurrency < 1 {
		opt.Concurrency = 4
	}
	if err := r.LoadIndex(ctx); err != nil {
		return nil, fmt.Errorf("loading the index: %w (if index files are damaged, run 'coffer repair index' first)", err)
	}
	res := &SnapshotsResult{DryRun: opt.DryRun, Damaged: []RepairedSnapshot{}, StillIndexed: []string{}}
	all, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	repairedAs := map[crypto.ID]crypto.ID{}
	for _, sn := range all {
		if sn.Original != nil {
			repairedAs[*sn.Original] = sn.ID
		}
	}
	snaps := opt.Snapshots
	if len(snaps) == 0 {
		snaps = all
	}
	snaps = slices.Clone(snaps)
	sort.SliceStable(snaps, func(i, j int) bool { return snaps[i].Time.Before(snaps[j].Time) })
	res.Checked = len(snaps)

	w := &rewriter{r: r, memo: map[crypto.ID]*dirInfo{}, listed: map[crypto.ID]bool{}, unlisted: map[crypto.ID]bool{}, still: map[crypto.ID]bool{}, progress: opt.Progress}
	for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
		if err := r.ListPacks(ctx, k, func(id crypto.ID, _ int64) error { w.listed[id] = true; return nil }); err != nil {
			return nil, fmt.Errorf("listing packs: %w", err)
		}
	}
	if opt.ReadData {
		if err := w.readData(ctx, snaps, opt.Concurrency, res); err != nil {
			return nil, err
		}
	}
	var sv *engine.Saver
	if !opt.DryRun {
		// New tree blobs dedup only against each other: a blob of the
		// index might be one of the damaged ones.
		fresh := index.New()
		defer fresh.Close()
		sv = r.WithIndex(fresh).NewSaver(ctx, 2)
		w.save = func(b []byte) (crypto.ID, error) {
			id := r.Keys().BlobID(b)
			_, err := sv.Save(format.BlobTree, id, b)
			return id, err
		}
	}
	abort := func(err error) (*SnapshotsResult, error) {
		if sv != nil {
			sv.Abort()
		}
		return nil, err
	}

	type todo struct {
		orig *engine.Snapshot
		info *dirInfo
		i    int // in res.Damaged
	}
	var write []todo
	for _, sn := range snaps {
		if ctx.Err() != nil {
			return abort(ctx.Err())
		}
		if to, ok := repairedAs[sn.ID]; ok {
			res.Damaged = append(res.Damaged, RepairedSnapshot{Snapshot: sn.ID.String(), Source: sn.Source, AlreadyRepairedAs: to.String(), Paths: []RepairedPath{}})
			continue
		}
		info, err := w.dir(ctx, sn.Root)
		if err != nil {
			return abort(fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err))
		}
		if !info.changed {
			continue
		}
		rs := RepairedSnapshot{Snapshot: sn.ID.String(), Source: sn.Source, Paths: slices.Clone(info.paths)}
		write = append(write, todo{sn, info, len(res.Damaged)})
		res.Damaged = append(res.Damaged, rs)
	}
	if err := r.Index.Err(); err != nil {
		return abort(fmt.Errorf("the index kept in the cache folder failed while it was read: %w; nothing was written (run again)", err))
	}
	for id := range w.still {
		res.StillIndexed = append(res.StillIndexed, id.String())
	}
	sort.Strings(res.StillIndexed)
	if opt.DryRun {
		return res, nil
	}
	if len(res.StillIndexed) > 0 {
		// Drop the damaged blobs from the index now, before any snapshot
		// is written: a rerun after a kill skips the originals already
		// repaired, and would not find these packs again.
		rp, err := Packs(ctx, r, PacksOptions{Packs: res.StillIndexed, Concurrency: opt.Concurrency, Progress: opt.Progress})
		if err != nil {
			return abort(fmt.Errorf("dropping the damaged blobs from the index (repair packs): %w", err))
		}
		res.Packs = rp
	}

	// Durability barrier: the new trees' packs and index, then the
	// snapshots naming them, then (Forget) the originals.
	if err := sv.Finish(); err != nil {
		return nil, fmt.Errorf("writing the repaired trees: %w", err)
	}
	for _, t := range write {
		sn := *t.orig
		orig := t.orig.ID
		sn.ID = crypto.ID{}
		sn.Root = t.info.id
		sn.Original = &orig
		sn.Tags = slices.Clone(sn.Tags)
		if !slices.Contains(sn.Tags, RepairedTag) {
			sn.Tags = append(sn.Tags, RepairedTag)
		}
		sn.Stats.Files, sn.Stats.Dirs, sn.Stats.Bytes = t.info.stats.Files, t.info.stats.Dirs, t.info.stats.Bytes
		sn.Partial = true
		// One nanosecond later than the original: where both exist, the
		// repaired one is the newer ("latest", forget's keep rules)
		// rather than whichever id sorts last.
		sn.Time = sn.Time.Add(time.Nanosecond)
		sn.SkippedEntries = slices.Clone(sn.SkippedEntries)
		for _, p := range t.info.paths {
			sn.Stats.Skipped++
			if len(sn.SkippedEntries) < engine.MaxSkippedListed {
				sn.SkippedEntries = append(sn.SkippedEntries, engine.SkippedEntry{Path: p.Path, Reason: fmt.Sprintf("damaged in the store, %s by repair snapshots: %s", p.Action, p.Reason)})
			}
		}
		id, err := r.SaveSnapshot(ctx, &sn)
		if err != nil {
			return res, fmt.Errorf("writing the repaired snapshot of %s: %w", orig.Short(), err)
		}
		res.Damaged[t.i].New = id.String()
	}
	if opt.Forget {
		for i := range res.Damaged {
			d := &res.Damaged[i]
			if d.New == "" && d.AlreadyRepairedAs == "" {
				continue
			}
			id, _ := crypto.ParseID(d.Snapshot)
			if err := r.DeleteSnapshot(ctx, id); err != nil {
				return res, fmt.Errorf("the repaired snapshots are written, but removing the original %s failed: %w (run repair snapshots --forget again)", id.Short(), err)
			}
			d.Forgotten = true
		}
	}
	return res, nil
}

// dirInfo is what the repair found in one directory blob: its id in the
// repaired tree (the same if unchanged), its totals there, and the paths
// changed below it, relative to it ("/" is the folder itself).
type dirInfo struct {
	id      crypto.ID
	stats   tree.DirStats
	changed bool
	paths   []RepairedPath
	// dropped are the sort keys of the files left out.
	dropped map[string]bool
}

// rewriter walks trees, finds damage and (with save) writes repaired
// directories. A directory shared by several snapshots or places is
// read once (memo).
type rewriter struct {
	r        *engine.Repo
	listed   map[crypto.ID]bool   // packs in the store
	unlisted map[crypto.ID]bool   // packs the listing lacks, looked up: true if gone
	badData  map[crypto.ID]string // ReadData: blobs that failed to verify
	still    map[crypto.ID]bool   // packs of damaged blobs still indexed
	memo     map[crypto.ID]*dirInfo
	save     func([]byte) (crypto.ID, error) // nil: dry run
	progress *engine.Progress
}

// noteStill records the pack of a damaged blob the index still names.
func (w *rewriter) noteStill(err error) {
	var be *engine.BlobError
	if errors.As(err, &be) && !be.Pack.IsZero() {
		w.still[be.Pack] = true
	}
}

// packGone reports whether pack (of blobs of kind k) is not in the
// store. A pack the listing lacks is looked up before it counts as gone:
// a listing cut short (a permission on part of the store) must not make
// a repair drop files whose data exists; the repair stops instead.
func (w *rewriter) packGone(ctx context.Context, k format.BlobKind, pack crypto.ID) (bool, error) {
	if w.listed[pack] {
		return false, nil
	}
	if gone, ok := w.unlisted[pack]; ok {
		return gone, nil
	}
	_, err := w.r.Storage().Stat(ctx, engine.PackHandle(k, pack))
	switch {
	case err == nil:
		return false, fmt.Errorf("pack %s is in the store, but the listing of packs lacks it; nothing was changed (is the listing complete? run repair again)", pack.Short())
	case !store.IsNotFound(err):
		return false, fmt.Errorf("pack %s: %w", pack.Short(), err)
	}
	w.unlisted[pack] = true
	return true, nil
}

// gone returns a damage error if tree blob id's pack is not in the
// store (checked before reading it: a copy in a local cache must not
// hide a pack the store lost, which other hosts cannot read).
func (w *rewriter) gone(ctx context.Context, id crypto.ID) error {
	loc, pack, ok := w.r.Index.Lookup(id)
	if !ok {
		return nil // the read says so
	}
	gone, err := w.packGone(ctx, loc.Kind, pack)
	if err != nil {
		return err
	}
	if gone {
		return &engine.BlobError{ID: id, Pack: pack, Err: fmt.Errorf("its pack is not in the store: %w", store.ErrNotFound)}
	}
	return nil
}

// blobBad says why content blob id cannot be read, if it cannot.
func (w *rewriter) blobBad(ctx context.Context, id crypto.ID) (string, bool, error) {
	loc, pack, ok := w.r.Index.Lookup(id)
	if !ok {
		return fmt.Sprintf("blob %s is in no index (lost, or dropped from the index as damaged)", id.Short()), true, nil
	}
	gone, err := w.packGone(ctx, loc.Kind, pack)
	if err != nil {
		return "", false, err
	}
	if gone {
		w.still[pack] = true
		return fmt.Sprintf("blob %s: its pack %s is not in the store", id.Short(), pack.Short()), true, nil
	}
	if why, bad := w.badData[id]; bad {
		w.still[pack] = true
		return why, true, nil
	}
	return "", false, nil
}

// fileBad says why the content of file n cannot be read, if it cannot.
func (w *rewriter) fileBad(ctx context.Context, n *tree.Node) (string, bool, error) {
	var cs []tree.Chunk
	err := w.gone(ctx, n.ChunkList)
	if err == nil {
		cs, err = w.r.FileChunks(ctx, n)
	}
	if err != nil {
		if ctx.Err() != nil || !engine.IsDamage(err) {
			return "", false, err
		}
		w.noteStill(err)
		return fmt.Sprintf("chunk list unreadable: %v", err), true, nil
	}
	nbad, why := 0, ""
	for _, c := range cs {
		y, bad, err := w.blobBad(ctx, c.ID)
		if err != nil {
			return "", false, err
		}
		if bad {
			if nbad == 0 {
				why = y
			}
			nbad++
		}
	}
	if nbad > 1 {
		why = fmt.Sprintf("%s (and %d more of its %d blobs)", why, nbad-1, len(cs))
	}
	return why, nbad > 0, nil
}

// entries calls fn with every entry of d that can be read, in order,
// and lost for each page or index page that cannot (with the first sort
// key and the number of entries under it). Errors other than damage
// stop it.
func (w *rewriter) entries(ctx context.Context, d *tree.Dir, fn func(n *tree.Node) error, lost func(first string, n uint64, err error)) error {
	if d.Inline != nil || len(d.Pages) == 0 {
		for i := range d.Inline {
			if err := fn(&d.Inline[i]); err != nil {
				return err
			}
		}
		return nil
	}
	// load reads the page (level 0) or index page ref names and checks it
	// against the reference.
	load := func(ref *tree.PageRef, level int) (nodes []tree.Node, p *tree.Dir, err error) {
		if err = w.gone(ctx, ref.ID); err != nil {
			return nil, nil, err
		}
		if level == 0 {
			nodes, err = w.r.LoadPage(ctx, ref.ID)
			if err == nil && (uint64(len(nodes)) != ref.Entries || nodes[0].SortKey() != ref.First) {
				err = &engine.BlobError{ID: ref.ID, Err: fmt.Errorf("%w: the page disagrees with its reference", format.ErrCorrupt)}
			}
			return nodes, nil, err
		}
		p, err = w.r.LoadIndexPage(ctx, ref.ID)
		if err == nil && (p.IndexLevel != level || p.Stats.Entries != ref.Entries || len(p.Pages) == 0 || p.Pages[0].First != ref.First) {
			err = &engine.BlobError{ID: ref.ID, Err: fmt.Errorf("%w: the index page disagrees with its reference", format.ErrCorrupt)}
		}
		return nil, p, err
	}
	var walk func(refs []tree.PageRef, level int) error
	walk = func(refs []tree.PageRef, level int) error {
		for i := range refs {
			ref := &refs[i]
			nodes, p, err := load(ref, level)
			if err != nil {
				if ctx.Err() != nil || !engine.IsDamage(err) {
					return err
				}
				w.noteStill(err)
				lost(ref.First, ref.Entries, err)
				continue
			}
			if p != nil {
				if err := walk(p.Pages, level-1); err != nil {
					return err
				}
				continue
			}
			for j := range nodes {
				if err := fn(&nodes[j]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(d.Pages, d.Height)
}

// emptyDir returns the id and totals of an empty directory (written
// with save; the zero id in a dry run).
func (w *rewriter) emptyDir() (crypto.ID, tree.DirStats, error) {
	if w.save == nil {
		return crypto.ID{}, tree.DirStats{}, nil
	}
	return w.r.NewTreeBuilder(w.save).Finish()
}

// dir finds the damage below directory blob id and, with save, writes
// the repaired directory if anything below it changed.
func (w *rewriter) dir(ctx context.Context, id crypto.ID) (*dirInfo, error) {
	if info, ok := w.memo[id]; ok {
		return info, nil
	}
	w.progress.Files.Add(1)
	var d *tree.Dir
	err := w.gone(ctx, id)
	if err == nil {
		d, err = w.r.LoadDir(ctx, id)
	}
	if err != nil {
		if ctx.Err() != nil || !engine.IsDamage(err) {
			return nil, err
		}
		w.noteStill(err)
		info := &dirInfo{changed: true, paths: []RepairedPath{{Path: "/", Action: "emptied", Reason: fmt.Sprintf("folder unreadable: %v", err)}}}
		if info.id, info.stats, err = w.emptyDir(); err != nil {
			return nil, err
		}
		w.memo[id] = info
		return info, nil
	}
	info := &dirInfo{id: id, stats: d.Stats}
	// Find the damage.
	err = w.entries(ctx, d, func(n *tree.Node) error {
		switch n.Type {
		case tree.TypeDir:
			sub, err := w.dir(ctx, n.Subtree)
			if err != nil {
				return err
			}
			if sub.changed {
				info.changed = true
				for _, p := range sub.paths {
					p.Path = "/" + n.Name + p.Path
					info.paths = append(info.paths, p)
				}
			}
		case tree.TypeFile:
			why, bad, err := w.fileBad(ctx, n)
			if err != nil {
				return err
			}
			if bad {
				info.changed = true
				if info.dropped == nil {
					info.dropped = map[string]bool{}
				}
				info.dropped[n.SortKey()] = true
				info.paths = append(info.paths, RepairedPath{Path: "/" + n.Name, Action: "dropped", Reason: why})
			}
		}
		return nil
	}, func(first string, count uint64, err error) {
		info.changed = true
		info.paths = append(info.paths, RepairedPath{Path: "/" + first, Action: "lost", Entries: count,
			Reason: fmt.Sprintf("part of the folder unreadable, %d entries from this one on lost: %v", count, err)})
	})
	if err != nil {
		return nil, err
	}
	if info.changed && w.save != nil {
		// Write the repaired directory: read it again, leaving out what
		// is damaged and pointing at the repaired subdirectories.
		b := w.r.NewTreeBuilder(w.save)
		err := w.entries(ctx, d, func(n *tree.Node) error {
			switch n.Type {
			case tree.TypeDir:
				sub := w.memo[n.Subtree]
				cp := *n
				cp.Subtree = sub.id
				return b.Add(&cp, sub.stats)
			case tree.TypeFile:
				if info.dropped[n.SortKey()] {
					return nil
				}
			}
			return b.Add(n, tree.DirStats{})
		}, func(string, uint64, error) {})
		if err != nil {
			return nil, err
		}
		if info.id, info.stats, err = b.Finish(); err != nil {
			return nil, err
		}
	}
	w.memo[id] = info
	return info, nil
}

// readData reads the data packs the snapshots use and records the blobs
// that fail to verify in w.badData.
func (w *rewriter) readData(ctx context.Context, snaps []*engine.Snapshot, concurrency int, res *SnapshotsResult) error {
	need := map[crypto.ID]bool{}
	seen := map[crypto.ID]bool{}
	dry := *w
	dry.save, dry.memo = nil, map[crypto.ID]*dirInfo{}
	var walk func(id crypto.ID) error
	walk = func(id crypto.ID) error {
		if seen[id] {
			return nil
		}
		seen[id] = true
		d, err := w.r.LoadDir(ctx, id)
		if err != nil {
			if ctx.Err() != nil || !engine.IsDamage(err) {
				return err
			}
			return nil // reported by the repair's own walk
		}
		return dry.entries(ctx, d, func(n *tree.Node) error {
			switch n.Type {
			case tree.TypeDir:
				return walk(n.Subtree)
			case tree.TypeFile:
				cs, err := w.r.FileChunks(ctx, n)
				if err != nil {
					if ctx.Err() != nil || !engine.IsDamage(err) {
						return err
					}
					return nil
				}
				for _, c := range cs {
					need[c.ID] = true
				}
			}
			return nil
		}, func(string, uint64, error) {})
	}
	for _, sn := range snaps {
		if err := walk(sn.Root); err != nil {
			return fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
		}
	}
	// Every blob of each pack read is verified, not only the ones these
	// snapshots still reach: a damaged blob under a folder the repair
	// empties shares its pack with blobs the repaired snapshot keeps,
	// and must leave the index too (else check finds the pack damaged
	// and a new backup deduplicates against the blob).
	byPack := map[crypto.ID][]format.BlobLoc{}
	for id := range need {
		_, pack, ok := w.r.Index.Lookup(id)
		if ok && w.listed[pack] {
			byPack[pack] = nil
		}
	}
	err := w.r.Index.Each(func(b format.BlobLoc, pack crypto.ID) {
		if blobs, ok := byPack[pack]; ok && b.Kind == format.BlobData {
			byPack[pack] = append(blobs, b)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the index: %w", err)
	}
	w.badData = map[crypto.ID]string{}
	type out struct {
		pack    crypto.ID
		bad     map[crypto.ID]string
		damaged bool
		n       int64
		err     error
	}
	sem := make(chan struct{}, concurrency)
	results := make(chan out)
	go func() {
		for pack, blobs := range byPack {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				bad, perr, n, err := verifyPack(ctx, w.r, format.BlobData, pack, blobs)
				results <- out{pack, bad, perr != "" || len(bad) > 0, n, err}
			}()
		}
	}()
	var first error
	for range byPack {
		o := <-results
		if o.err != nil && first == nil {
			first = o.err
		}
		if o.damaged {
			w.still[o.pack] = true
		}
		for id, why := range o.bad {
			w.badData[id] = fmt.Sprintf("blob %s: %s", id.Short(), why)
		}
		res.DataPacksRead++
		res.BytesRead += o.n
		w.progress.Bytes.Add(o.n)
	}
	return first
}
