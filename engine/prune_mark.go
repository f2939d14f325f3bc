package engine

// The mark: every blob the snapshots use, found by walking their trees
// (prune), and KeepIndexed, which a backup runs with the same walk.

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// markSnapshots walks the trees of snaps and adds every blob they use to
// used; fresh is called once for each blob not in used before. A
// directory already in used was walked before (trees are content
// addressed), so shared subtrees are walked once. A snapshot removed
// meanwhile is skipped.
func markSnapshots(ctx context.Context, r *Repo, snaps []crypto.ID, used *index.Master, conc int, fresh func(crypto.ID)) error {
	mark := marker(used, fresh)
	w := newTreeWalk(ctx, r, mark, max(conc, 1))
	for _, id := range snaps {
		w.spawn(func(ctx context.Context) error {
			sn, err := r.LoadSnapshot(ctx, id)
			if store.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := w.walk(ctx, sn.Root); err != nil {
				return fmt.Errorf("snapshot %s: %w", id.Short(), err)
			}
			return nil
		})
	}
	if err := w.wait(); err != nil {
		return err
	}
	return used.Err()
}

// marker returns a function that adds id to used and reports whether it
// was new (calling fresh then).
func marker(used *index.Master, fresh func(crypto.ID)) func(crypto.ID) bool {
	var mu sync.Mutex // Has then Add, as one step
	return func(id crypto.ID) bool {
		mu.Lock()
		defer mu.Unlock()
		if used.Has(id) {
			return false
		}
		if err := used.Add([]format.IndexPack{{Blobs: []format.BlobLoc{{ID: id}}}}); err != nil {
			return false
		}
		fresh(id)
		return true
	}
}

// markTree walks the tree under the directory root, calling mark for
// every blob; a directory or chunk list mark says it had already seen
// is not read again.
func markTree(ctx context.Context, r *Repo, root crypto.ID, mark func(crypto.ID) bool) error {
	w := newTreeWalk(ctx, r, mark, 8)
	w.spawn(func(ctx context.Context) error { return w.walk(ctx, root) })
	return w.wait()
}

// treeWalk walks trees with up to n directories read at once: a
// subdirectory is walked by a goroutine of its own when one is free,
// else in place (a remote store answers each blob read in tens of
// milliseconds, so one at a time would take hours on a large bucket).
type treeWalk struct {
	r    *Repo
	mark func(crypto.ID) bool
	g    *errgroup.Group
	ctx  context.Context
	sem  chan struct{}
}

func newTreeWalk(ctx context.Context, r *Repo, mark func(crypto.ID) bool, n int) *treeWalk {
	g, gctx := errgroup.WithContext(ctx)
	return &treeWalk{r: r, mark: mark, g: g, ctx: gctx, sem: make(chan struct{}, n)}
}

// spawn runs fn in a goroutine once a slot is free.
func (w *treeWalk) spawn(fn func(ctx context.Context) error) {
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		return
	}
	w.g.Go(func() error {
		defer func() { <-w.sem }()
		return fn(w.ctx)
	})
}

func (w *treeWalk) wait() error { return w.g.Wait() }

func (w *treeWalk) walk(ctx context.Context, id crypto.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !w.mark(id) {
		return nil
	}
	r := w.r
	d, err := r.LoadDir(ctx, id)
	if err != nil {
		return err
	}
	if err := r.PageIDs(ctx, d, func(p crypto.ID) { w.mark(p) }); err != nil {
		return err
	}
	it := r.Iter(d)
	for {
		n, ok, err := it.Next(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		switch n.Type {
		case tree.TypeDir:
			sub := n.Subtree
			select {
			case w.sem <- struct{}{}:
				w.g.Go(func() error {
					defer func() { <-w.sem }()
					return w.walk(w.ctx, sub)
				})
			default:
				if err := w.walk(ctx, sub); err != nil {
					return err
				}
			}
		case tree.TypeFile:
			if !n.ChunkList.IsZero() && !w.mark(n.ChunkList) {
				continue // its chunks were marked with it
			}
			cs, err := r.FileChunks(ctx, n)
			if err != nil {
				return err
			}
			for _, c := range cs {
				w.mark(c.ID)
			}
		}
	}
}

// KeepIndexed makes sure every blob of the tree under root (a snapshot a
// backup just wrote) is named by an index file. A backup calls it after
// writing its snapshot, while its marker still holds: if a prune rewrote
// the index since the backup read it (an index file it read is gone),
// the packs the backup deduplicated against may have stopped being
// indexed (they still exist: the marker keeps them); it writes an index
// file naming those packs again and returns how many (FORMAT.md §9). In
// the usual case it costs one listing of the index files.
func (r *Repo) KeepIndexed(ctx context.Context, root crypto.ID) (int, error) {
	files, err := r.IndexFiles(ctx)
	if err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, h := range files {
		have[h.Name] = true
	}
	gone := false
	r.indexed.mu.Lock()
	for n := range r.indexed.names {
		gone = gone || !have[n]
	}
	r.indexed.mu.Unlock()
	if !gone {
		return 0, nil
	}
	now := index.New()
	defer now.Close()
	if err := r.readIndexInto(ctx, now, files); err != nil {
		return 0, err
	}
	used := index.New()
	defer used.Close()
	var mu sync.Mutex
	need := map[crypto.ID]*packStat{}
	err = markTree(ctx, r, root, marker(used, func(id crypto.ID) {
		if now.Has(id) {
			return
		}
		if loc, pack, ok := r.Index.Lookup(id); ok {
			mu.Lock()
			need[pack] = &packStat{kind: loc.Kind}
			mu.Unlock()
		}
	}))
	if err != nil {
		return 0, err
	}
	if len(need) == 0 {
		return 0, nil
	}
	ids := make([]crypto.ID, 0, len(need))
	for id := range need {
		ids = append(ids, id)
	}
	if _, err := r.rewriteIndex(ctx, nil, nil, ids, need); err != nil {
		return 0, err
	}
	return len(ids), nil
}
