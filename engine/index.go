package engine

import (
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
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

// add records that name was read, and returns how many were.
func (f *indexFiles) add(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.names == nil {
		f.names = map[string]bool{}
	}
	f.names[name] = true
	return len(f.names)
}

// LoadIndex reads every index file of the store into r.Index. It is done
// once; later calls return at once (RefreshIndex reads what was added
// since).
func (r *Repo) LoadIndex(ctx context.Context) error {
	r.indexOnce.Do(func() { r.indexErr = r.loadIndex(ctx) })
	return r.indexErr
}

func (r *Repo) loadIndex(ctx context.Context) error {
	names, err := r.IndexFiles(ctx)
	if err != nil {
		return err
	}
	return r.readIndexFiles(ctx, names)
}

// readIndexFiles reads the index files of names not read yet into
// r.Index.
func (r *Repo) readIndexFiles(ctx context.Context, names []store.Handle) error {
	var files int
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, name := range names {
		if r.indexed.has(name.Name) {
			continue
		}
		g.Go(func() error {
			packs, err := r.ReadIndexFile(gctx, name)
			if err != nil {
				return err
			}
			r.Index.Add(packs)
			n := r.indexed.add(name.Name)
			mu.Lock()
			files = max(files, n)
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	if files > 0 {
		r.Index.SetFiles(files)
	}
	return err
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
	names, err := r.IndexFiles(ctx)
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
