package repair

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// PacksOptions choose how Packs runs.
type PacksOptions struct {
	// DryRun reads and verifies what a repair reads and reports what it
	// would do; it writes and removes nothing.
	DryRun bool
	// Packs are the packs to read and verify (full ids or unique
	// prefixes of indexed packs, as check names them); none: every pack
	// the index names. Packs the index names and the store lacks are
	// dropped from the index whatever this says.
	Packs       []string
	Concurrency int // packs read at once (default 4)
	Progress    *engine.Progress
	// Lease sets how the prune lock is taken (tests shorten it).
	Lease lease.Options
}

// LostBlob is a blob of a damaged pack that could not be read.
type LostBlob struct {
	Blob  string `json:"blob"` // full id
	Error string `json:"error"`
}

// DamagedPack is a pack Packs found damaged or missing.
type DamagedPack struct {
	Pack string `json:"pack"` // full id
	Kind string `json:"kind"` // "data" or "tree"
	// Missing is set when the index names the pack and the store lacks it.
	Missing bool `json:"missing"`
	// Error says what is wrong with the pack as a whole ("" if only
	// some of its blobs are damaged).
	Error string `json:"error,omitempty"`
	// Blobs the index lists in the pack; Salvaged of them could be read
	// and are kept (copied into new packs unless another pack has them);
	// Lost could not be read and are dropped from the index.
	Blobs    int        `json:"blobs"`
	Salvaged int        `json:"salvaged"`
	Lost     []LostBlob `json:"lost"`
}

// PacksResult reports what Packs did (with DryRun, would do).
type PacksResult struct {
	DryRun bool `json:"dry_run"`
	// Read packs were read and verified, Bytes in all.
	Read  int   `json:"packs_read"`
	Bytes int64 `json:"bytes_read"`
	// Damaged are the damaged and missing packs, by id.
	Damaged []DamagedPack `json:"damaged"`
	// SalvagePacks is the number of new packs the readable blobs of the
	// damaged packs were copied into, SalvagedBlobs the blobs copied (a
	// blob another pack also holds is not copied again).
	SalvagePacks  int `json:"salvage_packs"`
	SalvagedBlobs int `json:"salvaged_blobs"`
	// LostBlobs counts the blobs dropped from the index.
	LostBlobs int `json:"lost_blobs"`
	// OldIndexFiles are the index files that named a damaged pack:
	// replaced by NewIndexFiles (the same entries without the damaged
	// packs, and the salvaged blobs) and then removed.
	OldIndexFiles []string `json:"replaced_index_files"`
	NewIndexFiles []string `json:"new_index_files"`
}

// damagedPack is what Packs keeps of a damaged pack.
type damagedPack struct {
	kind    format.BlobKind
	missing bool
	err     string
	blobs   []format.BlobLoc // as the index lists them
	bad     map[crypto.ID]string
}

// Packs drops damaged blobs from the index, so that the next
// backup of their data stores them again instead of deduplicating
// against them (which would spread the damage into new snapshots).
//
// It reads and verifies the chosen packs as check does (the pack's hash,
// every blob's MAC and id), and finds the packs the index names that the
// store lacks. For each damaged pack it copies the blobs that still read
// into new packs (through a Saver, which writes its own index file),
// then writes, for every index file naming a damaged or missing pack, a
// new index file with the same entries less those packs, and only when
// all of that is durable removes the index files it replaced (the order
// of Index, FORMAT.md §9). A crash in between leaves old and new
// index files side by side, which readers accept, and a rerun finishes.
//
// Nothing else is removed: a damaged pack stays in the store, unindexed,
// until a prune reclaims it. (Index indexes it again if its
// trailer reads: run Packs after it.)
func Packs(ctx context.Context, r *engine.Repo, opt PacksOptions) (*PacksResult, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 4
	}
	if opt.Progress == nil {
		opt.Progress = &engine.Progress{}
	}
	// The prune lock, as repair index holds it: a prune or a repair
	// replacing index files beside this one would delete the files it
	// writes (and it theirs).
	lk, release, err := r.ExclusiveLock(ctx, opt.DryRun, "repair packs", opt.Lease)
	if err != nil {
		return nil, err
	}
	defer release()
	res := &PacksResult{DryRun: opt.DryRun, Damaged: []DamagedPack{}, OldIndexFiles: []string{}, NewIndexFiles: []string{}}

	files, err := r.IndexFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing index files: %w", err)
	}
	// Which files name which packs.
	packFiles := map[crypto.ID][]string{}
	packKinds := map[crypto.ID]format.BlobKind{}
	var mu sync.Mutex
	{
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, h := range files {
			g.Go(func() error {
				ips, err := r.ReadIndexFile(gctx, h)
				if err != nil {
					if gctx.Err() == nil && engine.IsDamage(err) {
						return fmt.Errorf("index file %s is unreadable (%v): run 'coffer repair index' first, then repair packs", crypto.ShortName(h.Name), err)
					}
					return fmt.Errorf("reading index file %s: %w", crypto.ShortName(h.Name), err)
				}
				mu.Lock()
				for _, ip := range ips {
					packFiles[ip.ID] = append(packFiles[ip.ID], h.Name)
					packKinds[ip.ID] = ip.Kind
				}
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}

	// Which packs to read.
	chosen := map[crypto.ID]bool{}
	for _, ref := range opt.Packs {
		id, err := matchPack(ref, packKinds)
		if err != nil {
			return nil, err
		}
		chosen[id] = true
	}
	readAll := len(opt.Packs) == 0

	// Packs the index names and the store lacks.
	listed := map[crypto.ID]bool{}
	for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
		if err := r.ListPacks(ctx, k, func(id crypto.ID, _ int64) error { listed[id] = true; return nil }); err != nil {
			return nil, fmt.Errorf("listing packs: %w", err)
		}
	}
	missing := map[crypto.ID]*damagedPack{}
	for id, k := range packKinds {
		if listed[id] {
			continue
		}
		// Not missed by the listing (cut short, a permission on part of
		// the store): a repair must not drop the index of packs that exist.
		if _, err := r.Storage().Stat(ctx, engine.PackHandle(k, id)); err == nil {
			return nil, fmt.Errorf("pack %s is named by the index and is in the store, but the listing of packs lacks it; nothing was changed (is the listing complete? run repair again)", id.Short())
		} else if !store.IsNotFound(err) {
			return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
		}
		missing[id] = &damagedPack{kind: k, missing: true, err: "not in the store"}
	}

	// Read and verify: one index file at a time, so that only the blob
	// lists of the packs queued or being read are held.
	seen := map[crypto.ID]bool{}
	damaged := map[crypto.ID]*damagedPack{} // guarded by mu until g is done
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Concurrency)
	for _, h := range files {
		ips, err := r.ReadIndexFile(ctx, h)
		if err != nil {
			g.Wait()
			return nil, fmt.Errorf("reading index file %s again: %w", crypto.ShortName(h.Name), err)
		}
		for _, ip := range ips {
			if d := missing[ip.ID]; d != nil {
				if d.blobs == nil {
					d.blobs = ip.Blobs
				}
				continue
			}
			if seen[ip.ID] {
				continue
			}
			if !readAll && !chosen[ip.ID] {
				continue
			}
			seen[ip.ID] = true
			g.Go(func() error {
				bad, perr, n, err := verifyPack(gctx, r, ip.Kind, ip.ID, ip.Blobs)
				if err != nil {
					return err
				}
				opt.Progress.Bytes.Add(n)
				opt.Progress.Files.Add(1)
				mu.Lock()
				defer mu.Unlock()
				res.Read++
				res.Bytes += n
				if perr != "" || len(bad) > 0 {
					damaged[ip.ID] = &damagedPack{kind: ip.Kind, err: perr, blobs: ip.Blobs, bad: bad}
				}
				return nil
			})
		}
		if gctx.Err() != nil {
			break
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for id, d := range missing {
		damaged[id] = d
	}

	// The report, and the blobs to salvage.
	for id, d := range damaged {
		dp := DamagedPack{Pack: id.String(), Kind: d.kind.String(), Missing: d.missing, Error: d.err, Blobs: len(d.blobs), Lost: []LostBlob{}}
		for _, b := range d.blobs {
			why, bad := d.bad[b.ID]
			if d.missing {
				bad, why = true, "its pack is not in the store"
			}
			if bad {
				dp.Lost = append(dp.Lost, LostBlob{Blob: b.ID.String(), Error: why})
			} else {
				dp.Salvaged++
			}
		}
		sort.Slice(dp.Lost, func(i, j int) bool { return dp.Lost[i].Blob < dp.Lost[j].Blob })
		res.LostBlobs += len(dp.Lost)
		res.Damaged = append(res.Damaged, dp)
	}
	sort.Slice(res.Damaged, func(i, j int) bool { return res.Damaged[i].Pack < res.Damaged[j].Pack })
	replace := map[string]bool{}
	for id := range damaged {
		for _, f := range packFiles[id] {
			replace[f] = true
		}
	}
	for f := range replace {
		res.OldIndexFiles = append(res.OldIndexFiles, f)
	}
	sort.Strings(res.OldIndexFiles)
	if len(damaged) == 0 {
		return res, nil
	}
	if opt.DryRun {
		for _, d := range res.Damaged {
			res.SalvagedBlobs += d.Salvaged
		}
		return res, nil
	}

	// Salvage. The saver dedups against the index without the damaged
	// packs: a blob another pack holds (or a rerun already salvaged) is
	// not copied again.
	rest := index.New()
	defer rest.Close()
	for _, h := range files {
		ips, err := r.ReadIndexFile(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("reading index file %s again: %w", crypto.ShortName(h.Name), err)
		}
		keep := ips[:0]
		for _, ip := range ips {
			if damaged[ip.ID] == nil {
				keep = append(keep, ip)
			}
		}
		if err := rest.Add(keep); err != nil {
			return nil, err
		}
	}
	sv := r.WithIndex(rest).NewSaver(ctx, 2)
	ids := make([]crypto.ID, 0, len(damaged))
	for id, d := range damaged {
		if !d.missing {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, id := range ids {
		d := damaged[id]
		if err := salvage(ctx, r, sv, id, d, res); err != nil {
			sv.Abort()
			return nil, err
		}
	}
	if err := sv.Finish(); err != nil {
		return nil, fmt.Errorf("writing the salvaged blobs: %w", err)
	}
	res.SalvagePacks = int(sv.PacksWritten.Load())

	// The index files naming damaged packs, without them.
	for _, name := range res.OldIndexFiles {
		ips, err := r.ReadIndexFile(ctx, store.Handle{Kind: store.KindIndex, Name: name})
		if err != nil {
			return nil, fmt.Errorf("reading index file %s again: %w", crypto.ShortName(name), err)
		}
		keep := ips[:0]
		for _, ip := range ips {
			if damaged[ip.ID] == nil {
				keep = append(keep, ip)
			}
		}
		if len(keep) == 0 {
			continue
		}
		id, err := r.SaveObject(ctx, store.KindIndex, format.EncodeIndex(keep), format.AADIndex)
		if err != nil {
			return nil, fmt.Errorf("writing an index file: %w", err)
		}
		res.NewIndexFiles = append(res.NewIndexFiles, id.String())
	}
	// Everything new is durable: only now may the old files go, if the
	// lock still holds.
	if err := lk.Check(); err != nil {
		return res, fmt.Errorf("%w; the new index is written and the old files are kept (both are valid, the damaged blobs still indexed): run repair packs again", err)
	}
	for _, name := range res.OldIndexFiles {
		err := r.Storage().Delete(ctx, store.Handle{Kind: store.KindIndex, Name: name})
		if errors.Is(err, store.ErrLocked) {
			// Unlike repair index, the old file must go: it still names
			// the damaged blobs, and backups would go on reusing them.
			return res, fmt.Errorf("new index written, but %w; until it is removed it still names the damaged blobs and backups keep reusing them: run repair packs again after that date", err)
		}
		if err != nil {
			return res, fmt.Errorf("new index written, but removing the old index file %s failed: %w (run repair packs again)", crypto.ShortName(name), err)
		}
	}
	return res, nil
}

// salvage copies the blobs of damaged pack id that still read into sv.
func salvage(ctx context.Context, r *engine.Repo, sv *engine.Saver, id crypto.ID, d *damagedPack, res *PacksResult) error {
	data, err := r.LoadPackRange(ctx, d.kind, id, 0, -1)
	if err != nil {
		return fmt.Errorf("pack %s: reading it again to salvage its blobs: %w", id.Short(), err)
	}
	var plain []byte
	for _, b := range d.blobs {
		if _, bad := d.bad[b.ID]; bad {
			continue
		}
		if int64(b.Offset)+int64(b.Length) > int64(len(data)) {
			continue // verified before: the pack changed since
		}
		plain, err = r.OpenBlob(plain[:0], data[b.Offset:b.Offset+b.Length], b, id)
		if err != nil {
			continue // it read before; do not trust it now
		}
		stored, err := sv.Save(d.kind, b.ID, plain)
		if err != nil {
			return fmt.Errorf("pack %s: salvaging blob %s: %w", id.Short(), b.ID.Short(), err)
		}
		if stored {
			res.SalvagedBlobs++
		}
	}
	return nil
}

// verifyPack reads a whole pack and verifies its hash and each of blobs.
// It returns the blobs that failed, with why, what is wrong with the
// pack as a whole ("" if nothing), and the bytes read; err is set only
// when the pack could not be read for another reason than damage.
func verifyPack(ctx context.Context, r *engine.Repo, kind format.BlobKind, pack crypto.ID, blobs []format.BlobLoc) (bad map[crypto.ID]string, packErr string, n int64, err error) {
	bad = map[crypto.ID]string{}
	data, err := r.LoadPackRange(ctx, kind, pack, 0, -1)
	if err != nil {
		if ctx.Err() != nil || !engine.IsDamage(err) {
			return nil, "", 0, fmt.Errorf("pack %s: %w", pack.Short(), err)
		}
		for _, b := range blobs {
			bad[b.ID] = fmt.Sprintf("pack unreadable: %v", err)
		}
		return bad, fmt.Sprintf("unreadable: %v", err), 0, nil
	}
	var why []string
	if crypto.Hash(data) != pack {
		why = append(why, "its content does not match its name (the pack file is damaged)")
	}
	var plain []byte
	for _, b := range blobs {
		if int64(b.Offset)+int64(b.Length) > int64(len(data)) {
			bad[b.ID] = "beyond the end of the pack"
			continue
		}
		plain, err = r.OpenBlob(plain[:0], data[b.Offset:b.Offset+b.Length], b, pack)
		if err != nil {
			bad[b.ID] = err.Error()
		}
	}
	return bad, strings.Join(why, "; "), int64(len(data)), nil
}

// matchPack resolves a full id or unique prefix among the indexed packs.
func matchPack(ref string, packs map[crypto.ID]format.BlobKind) (crypto.ID, error) {
	ref = strings.ToLower(strings.TrimSpace(ref))
	if ref == "" || strings.Trim(ref, "0123456789abcdef") != "" {
		return crypto.ID{}, fmt.Errorf("pack %q: not a pack id (hex digits, as check names them)", ref)
	}
	var match []crypto.ID
	for id := range packs {
		if strings.HasPrefix(id.String(), ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return crypto.ID{}, fmt.Errorf("pack %s: no index names such a pack (already dropped by an earlier repair? 'coffer check' names the damaged ones)", ref)
	case 1:
		return match[0], nil
	}
	return crypto.ID{}, fmt.Errorf("pack %s: prefix matches %d packs; give more digits", ref, len(match))
}
