package repair

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"
)

// IndexOptions choose how Index runs.
type IndexOptions struct {
	// DryRun reads what a repair reads and reports what it would do, and
	// writes and removes nothing.
	DryRun      bool
	Concurrency int // trailers read at once (default 8)
	Progress    *engine.Progress
	// Lease tunes the prune lock, which a repair (not a dry run) holds:
	// two index rewriters at once could each delete the other's new
	// files.
	Lease lease.Options
}

// BadTrailer is a pack whose trailer could not be read.
type BadTrailer struct {
	Pack string `json:"pack"` // full id
	Kind string `json:"kind"` // "data" or "tree"
	// FromIndex is the old index file whose entries for the pack were
	// kept (the pack is then still indexed); "" if none had them.
	FromIndex string `json:"from_index,omitempty"`
	Error     string `json:"error"`
}

// IndexResult reports what Index did (or, with DryRun, would do).
type IndexResult struct {
	DryRun bool `json:"dry_run"`
	// Packs is the number of packs in the store; Indexed of them are in the
	// new index, with Blobs blobs.
	Packs   int `json:"packs"`
	Indexed int `json:"indexed"`
	Blobs   int `json:"blobs"`
	// Unindexed packs were in no readable old index file and are now
	// indexed (left by an interrupted backup, or their index file was
	// lost); Dropped packs were named by the old index but are not in
	// the store.
	Unindexed int `json:"newly_indexed"`
	Dropped   int `json:"dropped"`
	// BadTrailers are the packs whose trailer could not be read or
	// opened: left as they are, indexed only if an old index file had
	// their entries.
	BadTrailers []BadTrailer `json:"bad_trailers"`
	// OldIndexFiles are the index files the repair replaces (removed,
	// unless DryRun); DamagedIndexFiles those of them that could not be
	// read.
	OldIndexFiles     []string `json:"old_index_files"`
	DamagedIndexFiles []string `json:"damaged_index_files"`
	// LockedIndexFiles are old index files that S3 Object Lock keeps
	// until their retention ends: they stay beside the new ones, which
	// readers accept (they name the same packs).
	LockedIndexFiles []string `json:"locked_index_files,omitempty"`
	// NewIndexFiles are the index files written (none with DryRun).
	NewIndexFiles []string `json:"new_index_files"`
}

// Index rebuilds the store's index from the trailers of its packs.
// It lists the index files, reads the trailer of every pack (a pack's
// trailer lists its blobs, FORMAT.md §5), writes new index files for
// them, and only when every new index file is durable removes the index
// files it listed at the start (FORMAT.md §9, "repair"). Index files
// written meanwhile by a backup are not touched.
//
// A pack whose trailer cannot be read or opened is reported in
// BadTrailers and left alone; if a readable old index file listed it,
// those entries (authenticated like any index file) are carried into the
// new index, so its blobs stay reachable. Nothing but index files is
// written or removed.
//
// Memory: the new index is written in files of engine.IndexFlushBlobs blobs as
// the trailers are read, and of the old index only which file names
// which pack is kept, so it does not hold the whole index.
//
// Unless DryRun, it holds the prune lock (locks/prune) throughout, so
// it never runs beside a prune or another repair of the index: both
// replace index files, and each would delete the files the other just
// wrote. A live lock makes it fail at once with a *lease.HeldError
// naming the holder, before anything is read.
//
// r.Index is left as it was: open the store again to read the new index.
func Index(ctx context.Context, r *engine.Repo, opt IndexOptions) (*IndexResult, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 8
	}
	lk, release, err := r.ExclusiveLock(ctx, opt.DryRun, "repair index", opt.Lease)
	if err != nil {
		return nil, err
	}
	defer release()
	if opt.Progress == nil {
		opt.Progress = &engine.Progress{}
	}
	res := &IndexResult{DryRun: opt.DryRun, BadTrailers: []BadTrailer{}, DamagedIndexFiles: []string{}, NewIndexFiles: []string{}}

	// The old index: which readable file names which pack.
	old, err := r.IndexFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing index files: %w", err)
	}
	type oldRef struct {
		file string // an old index file naming the pack
		kind format.BlobKind
	}
	oldPacks := map[crypto.ID]oldRef{}
	var oldMu sync.Mutex
	og, ogctx := errgroup.WithContext(ctx)
	og.SetLimit(8)
	for _, h := range old {
		res.OldIndexFiles = append(res.OldIndexFiles, h.Name)
		og.Go(func() error {
			packs, err := r.ReadIndexFile(ogctx, h)
			if ogctx.Err() != nil {
				return ogctx.Err()
			}
			oldMu.Lock()
			defer oldMu.Unlock()
			if err != nil {
				if errors.Is(err, crypto.ErrAuth) || errors.Is(err, format.ErrCorrupt) || store.IsNotFound(err) {
					res.DamagedIndexFiles = append(res.DamagedIndexFiles, h.Name)
					return nil
				}
				return fmt.Errorf("reading index file %s: %w", crypto.ShortName(h.Name), err)
			}
			for _, p := range packs {
				oldPacks[p.ID] = oldRef{h.Name, p.Kind}
			}
			return nil
		})
	}
	if err := og.Wait(); err != nil {
		return nil, err
	}
	sort.Strings(res.OldIndexFiles)
	sort.Strings(res.DamagedIndexFiles)

	// The packs, and their trailers.
	type packRef struct {
		id   crypto.ID
		kind format.BlobKind
	}
	var packs []packRef
	inStore := map[crypto.ID]bool{}
	for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
		err := r.ListPacks(ctx, k, func(id crypto.ID, size int64) error {
			packs = append(packs, packRef{id, k})
			inStore[id] = true
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing packs: %w", err)
		}
	}
	res.Packs = len(packs)
	// A pack the old index names and the listing lacks is dropped from
	// the index. Make sure it is really gone, not missed by the listing
	// (a listing cut short, a permission on part of the store): a repair
	// must not drop the index of packs that exist.
	for id, o := range oldPacks {
		if inStore[id] {
			continue
		}
		if _, err := r.Storage().Stat(ctx, engine.PackHandle(o.kind, id)); err == nil {
			return nil, fmt.Errorf("pack %s is named by index file %s and is in the store, but the listing of packs lacks it; nothing was changed (is the listing complete? run repair again)",
				id.Short(), crypto.ShortName(o.file))
		} else if !store.IsNotFound(err) {
			return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
		}
		res.Dropped++
	}

	var mu sync.Mutex // guards res, batch, nblobs
	var batch []format.IndexPack
	nblobs := 0
	// flush writes batch as one index file (nothing with DryRun).
	flush := func(ctx context.Context) error {
		if len(batch) == 0 {
			return nil
		}
		if !opt.DryRun {
			id, err := r.SaveObject(ctx, store.KindIndex, format.EncodeIndex(batch), format.AADIndex)
			if err != nil {
				return fmt.Errorf("writing an index file: %w", err)
			}
			res.NewIndexFiles = append(res.NewIndexFiles, id.String())
		}
		batch, nblobs = nil, 0
		return nil
	}
	add := func(ctx context.Context, ip format.IndexPack) error {
		mu.Lock()
		defer mu.Unlock()
		batch = append(batch, ip)
		nblobs += len(ip.Blobs)
		res.Indexed++
		res.Blobs += len(ip.Blobs)
		if _, ok := oldPacks[ip.ID]; !ok {
			res.Unindexed++
		}
		if nblobs >= engine.IndexFlushBlobs {
			return flush(ctx)
		}
		return nil
	}
	var bad []packRef
	var badErr []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Concurrency)
	for _, p := range packs {
		g.Go(func() error {
			blobs, err := r.ReadTrailer(gctx, p.kind, p.id)
			if err == nil {
				for _, b := range blobs {
					if b.Kind != p.kind {
						err = fmt.Errorf("%w: trailer lists a %s blob in a %s pack", format.ErrCorrupt, b.Kind, p.kind)
						break
					}
				}
			}
			opt.Progress.Files.Add(1)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if !(errors.Is(err, crypto.ErrAuth) || errors.Is(err, format.ErrCorrupt) || store.IsNotFound(err)) {
					return fmt.Errorf("pack %s: %w", p.id.Short(), err) // not damage: stop
				}
				mu.Lock()
				bad = append(bad, p)
				badErr = append(badErr, err)
				mu.Unlock()
				return nil
			}
			return add(gctx, format.IndexPack{ID: p.id, Kind: p.kind, Blobs: blobs})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// Packs with a bad trailer: keep what a readable old index file said.
	oldFiles := map[string][]format.IndexPack{}
	for i, p := range bad {
		rp := BadTrailer{Pack: p.id.String(), Kind: p.kind.String(), Error: badErr[i].Error()}
		if o, ok := oldPacks[p.id]; ok {
			name := o.file
			ips, ok := oldFiles[name]
			if !ok {
				ips, err = r.ReadIndexFile(ctx, store.Handle{Kind: store.KindIndex, Name: name})
				if err != nil {
					return nil, fmt.Errorf("reading index file %s again: %w", crypto.ShortName(name), err)
				}
				oldFiles[name] = ips
			}
			for _, ip := range ips {
				if ip.ID == p.id {
					if err := add(ctx, ip); err != nil {
						return nil, err
					}
					rp.FromIndex = name
					break
				}
			}
		}
		res.BadTrailers = append(res.BadTrailers, rp)
	}
	sort.Slice(res.BadTrailers, func(i, j int) bool { return res.BadTrailers[i].Pack < res.BadTrailers[j].Pack })
	if err := flush(ctx); err != nil {
		return nil, err
	}
	if opt.DryRun {
		return res, nil
	}
	if err := lk.Check(); err != nil {
		return res, fmt.Errorf("repair index: %w; the new index is written (%d files) and the old files are kept (both are valid): run repair index again",
			err, len(res.NewIndexFiles))
	}

	// Every new index file is durable: only now may the old ones go. A
	// crash before this point leaves both, which readers accept (a blob
	// listed twice: any copy will do), and a rerun finishes the work.
	for _, name := range res.OldIndexFiles {
		err := r.Storage().Delete(ctx, store.Handle{Kind: store.KindIndex, Name: name})
		if errors.Is(err, store.ErrLocked) {
			res.LockedIndexFiles = append(res.LockedIndexFiles, name)
			continue
		}
		if err != nil {
			return res, fmt.Errorf("new index written (%d files), but removing the old index file %s failed: %w (run repair index again)",
				len(res.NewIndexFiles), crypto.ShortName(name), err)
		}
	}
	return res, nil
}
