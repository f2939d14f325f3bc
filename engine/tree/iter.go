package tree

import (
	"context"
	"sort"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// DirIter walks a directory's entries in sort-key order, loading pages as
// it reaches them.
type Iter struct {
	l      PageLoader
	dir    *Dir
	page   int // current page (0 for an inline directory)
	loaded bool
	nodes  []Node
	i      int
}

// PageLoader loads the pages of paged directories (the repository, through
// its tree cache).
type PageLoader interface {
	LoadPage(ctx context.Context, id crypto.ID) ([]Node, error)
}

// NewIter returns an iterator over d positioned before the first entry,
// loading pages through l.
func NewIter(l PageLoader, d *Dir) *Iter {
	it := &Iter{l: l, dir: d}
	if d.Inline != nil {
		it.nodes, it.loaded = d.Inline, true
	}
	return it
}

// Peek returns the current entry without consuming it; ok is false at
// the end.
func (it *Iter) Peek(ctx context.Context) (n *Node, ok bool, err error) {
	for {
		if !it.loaded {
			if it.page >= len(it.dir.Pages) {
				return nil, false, nil
			}
			nodes, err := it.l.LoadPage(ctx, it.dir.Pages[it.page].ID)
			if err != nil {
				return nil, false, err
			}
			it.nodes, it.i, it.loaded = nodes, 0, true
		}
		if it.i < len(it.nodes) {
			return &it.nodes[it.i], true, nil
		}
		if it.dir.Inline != nil || it.page+1 >= len(it.dir.Pages) {
			return nil, false, nil
		}
		it.page++
		it.loaded = false
	}
}

// Next returns the current entry and advances; ok is false at the end.
func (it *Iter) Next(ctx context.Context) (n *Node, ok bool, err error) {
	n, ok, err = it.Peek(ctx)
	if ok {
		it.i++
	}
	return n, ok, err
}

// Seek advances to the entry whose sort key is key and returns it; if
// there is none, ok is false and the iterator is left at the first entry
// after key. Keys passed to Seek must not decrease. Pages that end before
// key are skipped without being loaded.
func (it *Iter) Seek(ctx context.Context, key string) (n *Node, ok bool, err error) {
	for it.dir.Inline == nil && it.page+1 < len(it.dir.Pages) && it.dir.Pages[it.page+1].First <= key {
		it.page++
		it.loaded = false
	}
	for {
		n, ok, err = it.Peek(ctx)
		if !ok || err != nil {
			return nil, false, err
		}
		k := n.SortKey()
		if k == key {
			return n, true, nil
		}
		if k > key {
			return nil, false, nil
		}
		it.i++
	}
}

// Lookup finds the entry with sort key key in d, loading at most one
// page through l; ok is false if d has none.
func Lookup(ctx context.Context, l PageLoader, d *Dir, key string) (n *Node, ok bool, err error) {
	nodes := d.Inline
	if nodes == nil {
		i := sort.Search(len(d.Pages), func(i int) bool { return d.Pages[i].First > key }) - 1
		if i < 0 {
			return nil, false, nil
		}
		if nodes, err = l.LoadPage(ctx, d.Pages[i].ID); err != nil {
			return nil, false, err
		}
	}
	i := sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= key })
	if i < len(nodes) && nodes[i].SortKey() == key {
		return &nodes[i], true, nil
	}
	return nil, false, nil
}
