package engine

import (
	"context"
	"io"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// WriteFileTo writes a file's content to w in order, fetching up to
// ahead chunks in parallel.
func (r *Repo) WriteFileTo(ctx context.Context, n *tree.Node, w io.Writer, ahead int) error {
	if ahead < 1 {
		ahead = 4
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	chunks, err := r.FileChunks(ctx, n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	futures := make(chan chan result, ahead)
	go func() {
		defer close(futures)
		for _, c := range chunks {
			ch := make(chan result, 1)
			select {
			case futures <- ch:
			case <-ctx.Done():
				return
			}
			go func(id crypto.ID) {
				data, err := r.LoadBlob(ctx, id)
				ch <- result{data, err}
			}(c.ID)
		}
	}()
	for ch := range futures {
		res := <-ch
		if res.err != nil {
			return res.err
		}
		if _, err := w.Write(res.data); err != nil {
			return err
		}
	}
	return ctx.Err()
}
