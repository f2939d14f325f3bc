package engine

import (
	"context"
	"fmt"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// SetTreeCache makes LoadDir, LoadIndexPage and LoadPage (and so
// Lookup, Iter and ResolvePath) go through c, and read the blobs they
// decode with load (nil: LoadBlob), say from a cache of pack ranges.
// Call it before the repo is shared between goroutines: it is a plain
// field write.
func (r *Repo) SetTreeCache(c tree.Cache, load func(ctx context.Context, id crypto.ID) ([]byte, error)) {
	r.trees, r.treeBlobs = c, load
}

// loadTreeBlob reads a directory, index page or page blob, with the
// loader SetTreeCache was given.
func (r *Repo) loadTreeBlob(ctx context.Context, id crypto.ID) ([]byte, error) {
	if r.treeBlobs != nil {
		return r.treeBlobs(ctx, id)
	}
	return r.LoadBlob(ctx, id)
}

// LoadDir reads a directory blob.
func (r *Repo) LoadDir(ctx context.Context, id crypto.ID) (*tree.Dir, error) {
	d, err := r.loadRefBlob(ctx, id)
	if err == nil && d.IndexLevel != 0 {
		// A directory entry points at an index page.
		return nil, &BlobError{ID: id, Err: fmt.Errorf("%w: an index page where a directory was expected", format.ErrCorrupt)}
	}
	return d, err
}

// LoadIndexPage reads one index page of a large directory (format 2).
func (r *Repo) LoadIndexPage(ctx context.Context, id crypto.ID) (*tree.Dir, error) {
	d, err := r.loadRefBlob(ctx, id)
	if err == nil && d.IndexLevel == 0 {
		// A directory's reference points at a directory blob.
		return nil, &BlobError{ID: id, Err: fmt.Errorf("%w: a directory where an index page was expected", format.ErrCorrupt)}
	}
	return d, err
}

// loadRefBlob reads a directory blob or an index page, through the tree
// cache's directories: the cache keeps both, and the blob's first byte
// says which it is (tree.DecodeDirOrIndexPage). Callers check IndexLevel.
func (r *Repo) loadRefBlob(ctx context.Context, id crypto.ID) (*tree.Dir, error) {
	load := func(ctx context.Context) (*tree.Dir, error) {
		p, err := r.loadTreeBlob(ctx, id)
		if err != nil {
			return nil, err
		}
		d, err := tree.DecodeDirOrIndexPage(p)
		if err != nil {
			return nil, &BlobError{ID: id, Err: err}
		}
		d.ID = id
		return d, nil
	}
	if r.trees != nil {
		return r.trees.Dir(ctx, id, load)
	}
	return load(ctx)
}

// NewTreeBuilder returns a directory builder that stores blobs with save
// in the layouts this store's format version allows.
func (r *Repo) NewTreeBuilder(save func([]byte) (crypto.ID, error)) *tree.Builder {
	return tree.NewBuilder(save, r.Params.Version)
}

// PageIDs calls fn with the id of every page and index page of d,
// loading its index pages (not its pages).
func (r *Repo) PageIDs(ctx context.Context, d *tree.Dir, fn func(crypto.ID)) error {
	return tree.PageIDs(ctx, r, d, fn)
}

// LoadPage reads one page of a paged directory.
func (r *Repo) LoadPage(ctx context.Context, id crypto.ID) ([]tree.Node, error) {
	if r.trees != nil {
		return r.trees.Page(ctx, id, func(ctx context.Context) ([]tree.Node, error) { return r.loadPage(ctx, id) })
	}
	return r.loadPage(ctx, id)
}

func (r *Repo) loadPage(ctx context.Context, id crypto.ID) ([]tree.Node, error) {
	p, err := r.loadTreeBlob(ctx, id)
	if err != nil {
		return nil, err
	}
	nodes, err := tree.DecodePage(p)
	if err != nil {
		return nil, &BlobError{ID: id, Err: err}
	}
	return nodes, nil
}

// FileChunks returns the chunks of a file node, loading its chunk list if
// it has one.
func (r *Repo) FileChunks(ctx context.Context, n *tree.Node) ([]tree.Chunk, error) {
	if n.ChunkList.IsZero() {
		return n.Chunks, nil
	}
	p, err := r.LoadBlob(ctx, n.ChunkList)
	if err != nil {
		return nil, err
	}
	cs, err := tree.DecodeChunkList(p)
	if err != nil {
		return nil, &BlobError{ID: n.ChunkList, Err: err}
	}
	var sum uint64
	for _, c := range cs {
		sum += uint64(c.Size)
	}
	if sum != n.Size {
		return nil, &BlobError{ID: n.ChunkList, Err: fmt.Errorf("%w: chunks add up to %d bytes, file is %d", format.ErrCorrupt, sum, n.Size)}
	}
	return cs, nil
}

// Iter returns an iterator over d positioned before the first entry.
func (r *Repo) Iter(d *tree.Dir) *tree.Iter { return tree.NewIter(r, d) }

// Lookup finds the entry with sort key key in d; ok is false if d has
// none.
func (r *Repo) Lookup(ctx context.Context, d *tree.Dir, key string) (n *tree.Node, ok bool, err error) {
	return tree.Lookup(ctx, r, d, key)
}
