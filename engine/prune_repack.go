package engine

// Repack: the live blobs of packs that are mostly unused copied into new
// packs, so the old ones can go (FORMAT.md §9).

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"fmt"
	"sort"
)

// choseRepack picks the kept packs to repack: those with the largest
// share of unused blob bytes, until the unused bytes left in kept packs
// are at most maxUnused of the live ones.
func choseRepack(packs map[crypto.ID]*packStat, maxUnused float64) map[crypto.ID]bool {
	if maxUnused == 0 {
		maxUnused = DefaultMaxUnused
	}
	var live, unused int64
	var partial []crypto.ID
	for id, p := range packs {
		if p.live > 0 && p.indexed && !p.badTrailer {
			live += p.live
			if u := p.blobs - p.live; u > 0 {
				unused += u
				partial = append(partial, id)
			}
		}
	}
	out := map[crypto.ID]bool{}
	if maxUnused >= 1 {
		return out
	}
	share := func(id crypto.ID) float64 {
		p := packs[id]
		return float64(p.blobs-p.live) / float64(p.blobs)
	}
	sort.Slice(partial, func(i, j int) bool {
		a, b := share(partial[i]), share(partial[j])
		if a != b {
			return a > b
		}
		return partial[i].String() < partial[j].String()
	})
	limit := int64(maxUnused * float64(live))
	for _, id := range partial {
		if unused <= limit {
			break
		}
		p := packs[id]
		out[id] = true
		unused -= p.blobs - p.live
	}
	return out
}

// repack copies the used blobs whose first copy is in one of the packs
// in which into new packs, through a Saver with an empty index (so
// nothing is deduplicated away), and returns that index: where the
// blobs are now. Each blob is authenticated and then copied as it was
// sealed (FORMAT.md §4), one run of adjacent blobs at a time through one
// buffer: no compressing or sealing again, and no buffer a run. When it
// returns, the new packs and the index files naming them are durable.
func (r *Repo) repack(ctx context.Context, which map[crypto.ID]bool, packs map[crypto.ID]*packStat, idx, used *index.Master) (*index.Master, error) {
	view := r.WithIndex(index.New())
	sv := view.NewSaver(ctx, store.Uploads(r.st))
	ids := make([]crypto.ID, 0, len(which))
	for id := range which {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	var (
		run  []byte // the run being copied, one buffer for all
		bufs BlobScratch
	)
	for _, id := range ids {
		p := packs[id]
		blobs, err := r.ReadTrailer(ctx, p.kind, id)
		if err != nil {
			sv.Abort()
			return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
		}
		// The blobs to copy, in pack order, read in runs of adjacent
		// ones (at most repackRun bytes a read, not the whole pack).
		var keep []format.BlobLoc
		for _, b := range blobs {
			if !used.Has(b.ID) {
				continue
			}
			if _, first, ok := idx.Lookup(b.ID); !ok || first != id {
				continue // its first copy is elsewhere, and stays
			}
			keep = append(keep, b)
		}
		sort.Slice(keep, func(i, j int) bool { return keep[i].Offset < keep[j].Offset })
		for i := 0; i < len(keep); {
			j, start, end := i, int64(keep[i].Offset), int64(keep[i].Offset)+int64(keep[i].Length)
			for j+1 < len(keep) && int64(keep[j+1].Offset) == end && end-start+int64(keep[j+1].Length) <= repackRun {
				j++
				end += int64(keep[j].Length)
			}
			if int64(cap(run)) < end-start {
				run = make([]byte, end-start)
			}
			data := run[:end-start]
			if err := r.LoadPackRangeInto(ctx, p.kind, id, start, data); err != nil {
				sv.Abort()
				return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
			}
			for _, b := range keep[i : j+1] {
				off := int64(b.Offset) - start
				sealed := data[off : off+int64(b.Length)]
				// Checked, then copied as sealed: damage found here stops
				// the prune instead of moving into a new pack.
				if err := r.VerifyBlob(sealed, b, id, &bufs); err != nil {
					sv.Abort()
					return nil, fmt.Errorf("pack %s: %w (run check)", id.Short(), err)
				}
				if _, err := sv.SaveSealed(b, sealed); err != nil {
					sv.Abort()
					return nil, err
				}
			}
			i = j + 1
		}
	}
	if err := sv.Finish(); err != nil {
		return nil, err
	}
	return view.Index, nil
}
