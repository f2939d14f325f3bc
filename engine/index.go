package engine

import (
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// indexFiles are the names of the index files read into a Repo's Index,
// so that RefreshIndex reads only the others.
type indexFiles struct {
	refresh sync.Mutex // one RefreshIndex at a time
	mu      sync.Mutex
	names   map[string]bool
}

func (f *indexFiles) has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names[name]
}

// add records that name was read.
func (f *indexFiles) add(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.names == nil {
		f.names = map[string]bool{}
	}
	f.names[name] = true
}

// LoadIndex reads every index file of the store into r.Index. It is done
// once; later calls return at once (RefreshIndex reads what was added
// since).
func (r *Repo) LoadIndex(ctx context.Context) error {
	r.indexOnce.Do(func() { r.indexErr = r.loadIndex(ctx) })
	return r.indexErr
}

func (r *Repo) loadIndex(ctx context.Context) error {
	names, err := r.indexFileInfos(ctx)
	if err != nil {
		return err
	}
	if r.indexDir != "" {
		r.openIndexCache()
	}
	// An index kept from an earlier run (UseIndexCache) holds the blobs of
	// the index files it covers. It is used only if the store still has
	// every one of them: else it may answer for packs that are gone.
	if covered := r.Index.Covered(); len(covered) > 0 {
		have := make(map[string]bool, len(names))
		for _, n := range names {
			have[n.Handle.Name] = true
		}
		all := true
		for _, c := range covered {
			all = all && have[c]
		}
		if !all {
			r.Index.Reset()
		} else {
			for _, c := range covered {
				r.indexed.add(c)
			}
		}
	}
	return r.readIndexFiles(ctx, names)
}

// indexLoadBudget bounds the bytes of index files being read at once:
// an index file in memory, decrypted and decoded takes about 3 times its
// size, and a big backup writes files of 50,000 blobs (2.3 MB). Eight of
// those at once would make the peak of any run that loads the index grow
// with the store up to 8 files in (~50 MB); within the budget, small
// files (a few blobs each) are still read 8 at a time.
const indexLoadBudget = 4 << 20

// indexFileInfos lists the index files with their sizes.
func (r *Repo) indexFileInfos(ctx context.Context) ([]store.ObjectInfo, error) {
	var infos []store.ObjectInfo
	err := r.st.List(ctx, store.KindIndex, func(o store.ObjectInfo) error {
		infos = append(infos, o)
		return nil
	})
	return infos, err
}

// readIndexFiles reads the index files of names not read yet into
// r.Index: up to 8 at once, and no more than indexLoadBudget bytes of
// them (one bigger file alone).
func (r *Repo) readIndexFiles(ctx context.Context, names []store.ObjectInfo) error {
	var read atomic.Bool // some index file was read into r.Index
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	budget := semaphore.NewWeighted(indexLoadBudget)
	for _, info := range names {
		name := info.Handle
		if r.indexed.has(name.Name) {
			continue
		}
		w := min(max(info.Size, 1), indexLoadBudget)
		if err := budget.Acquire(gctx, w); err != nil {
			if werr := g.Wait(); werr != nil {
				return werr // a read failed and cancelled gctx
			}
			return err // ctx was cancelled
		}
		g.Go(func() error {
			defer budget.Release(w)
			packs, err := r.ReadIndexFile(gctx, name)
			if err != nil {
				return err
			}
			if err := r.Index.AddFile(name.Name, packs); err != nil {
				return err
			}
			r.indexed.add(name.Name)
			read.Store(true)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if read.Load() {
		// Write the memtable out, merge, and keep the index for the next
		// run when there is a cache folder.
		if err := r.Index.Save(); err != nil {
			return fmt.Errorf("index: %w", err)
		}
	}
	return nil
}

// RefreshIndex reads into r.Index the index files added to the store
// since LoadIndex (which it calls first) or the last RefreshIndex: a
// long-running reader (a mount) finds the blobs of newer snapshots. It
// lists the index files and reads only the new ones. On a WithIndex view
// it reads every index file again (the view does not know which made
// its index), which is correct but slow.
func (r *Repo) RefreshIndex(ctx context.Context) error {
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	r.indexed.refresh.Lock()
	defer r.indexed.refresh.Unlock()
	names, err := r.indexFileInfos(ctx)
	if err != nil {
		return err
	}
	return r.readIndexFiles(ctx, names)
}

// ReadIndexFile reads, authenticates and decodes one index file.
func (r *Repo) ReadIndexFile(ctx context.Context, name store.Handle) ([]format.IndexPack, error) {
	p, err := r.loadObject(ctx, name, format.AADIndex)
	if err != nil {
		return nil, err
	}
	packs, err := format.DecodeIndex(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return packs, nil
}
