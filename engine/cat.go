package engine

import (
	"context"
	"io"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/object"
	"github.com/coffer-backup/coffer/engine/tree"
)

// FileLayout is a file's content as an object layout: its chunks, by blob
// id, in order. The mount reads it through object.Reader, cat streams it
// through object.WriteTo.
func (r *Repo) FileLayout(ctx context.Context, n *tree.Node) (*object.Layout[crypto.ID], error) {
	chunks, err := r.FileChunks(ctx, n)
	if err != nil {
		return nil, err
	}
	pieces := make([]object.Piece[crypto.ID], len(chunks))
	for i, c := range chunks {
		pieces[i] = object.Piece[crypto.ID]{Key: c.ID, Size: int64(c.Size)}
	}
	return object.NewLayout(pieces), nil
}

// WriteFileTo writes a file's content to w in order, fetching up to
// ahead chunks in parallel.
func (r *Repo) WriteFileTo(ctx context.Context, n *tree.Node, w io.Writer, ahead int) error {
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	l, err := r.FileLayout(ctx, n)
	if err != nil {
		return err
	}
	return object.WriteTo(ctx, w, l, r.LoadBlob, ahead)
}
