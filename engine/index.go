package engine

import (
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// LoadIndex reads every index file of the store into r.Index. It is done
// once; later calls return at once.
func (r *Repo) LoadIndex(ctx context.Context) error {
	r.indexOnce.Do(func() { r.indexErr = r.loadIndex(ctx) })
	return r.indexErr
}

func (r *Repo) loadIndex(ctx context.Context) error {
	names, err := r.IndexFiles(ctx)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, name := range names {
		g.Go(func() error {
			packs, err := r.ReadIndexFile(gctx, name)
			if err != nil {
				return err
			}
			r.Index.Add(packs)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.Index.SetFiles(len(names))
	return nil
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
