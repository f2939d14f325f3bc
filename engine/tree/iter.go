package tree

import (
	"context"
	"fmt"
	"sort"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// PageLoader loads the pages and index pages of large directories (the
// repository, through its tree cache).
type PageLoader interface {
	LoadPage(ctx context.Context, id crypto.ID) ([]Node, error)
	// LoadIndexPage returns a decoded index page (a Dir with IndexLevel
	// set).
	LoadIndexPage(ctx context.Context, id crypto.ID) (*Dir, error)
}

// frame is one level of an iterator's path: references and the one the
// iterator is under.
type frame struct {
	refs []PageRef
	i    int
}

// Iter walks a directory's entries in sort-key order, loading pages (and
// index pages) as it reaches them: it holds one page and one index page
// per level.
type Iter struct {
	l   PageLoader
	dir *Dir
	// path[0] holds the directory's references, path[k] those of the
	// index page path[k-1] is under; the leaf page is under the last
	// frame once the path has dir.Height+1 frames.
	path   []frame
	loaded bool // nodes is the page under the path
	nodes  []Node
	i      int
}

// NewIter returns an iterator over d positioned before the first entry,
// loading pages through l.
func NewIter(l PageLoader, d *Dir) *Iter {
	it := &Iter{l: l, dir: d}
	if d.Inline != nil {
		it.nodes, it.loaded = d.Inline, true
	} else {
		it.path = []frame{{refs: d.Pages}}
	}
	return it
}

// loadIndex loads the index page ref points at, expecting level, and
// checks that it is what ref says.
func loadIndex(ctx context.Context, l PageLoader, ref *PageRef, level int) ([]PageRef, error) {
	p, err := l.LoadIndexPage(ctx, ref.ID)
	if err != nil {
		return nil, err
	}
	if p.IndexLevel != level {
		return nil, fmt.Errorf("index page %s: %w: level %d; its reference says level %d", ref.ID.Short(), format.ErrCorrupt, p.IndexLevel, level)
	}
	if p.Stats.Entries != ref.Entries || p.Pages[0].First != ref.First {
		return nil, fmt.Errorf("index page %s: %w: level %d, %d entries from %q; its reference says level %d, %d entries from %q",
			ref.ID.Short(), format.ErrCorrupt, p.IndexLevel, p.Stats.Entries, p.Pages[0].First, level, ref.Entries, ref.First)
	}
	return p.Pages, nil
}

// loadLeaf loads the page ref points at and checks it against ref.
func loadLeaf(ctx context.Context, l PageLoader, ref *PageRef) ([]Node, error) {
	nodes, err := l.LoadPage(ctx, ref.ID)
	if err != nil {
		return nil, err
	}
	if uint64(len(nodes)) != ref.Entries || nodes[0].SortKey() != ref.First {
		first := ""
		if len(nodes) > 0 {
			first = nodes[0].SortKey()
		}
		return nil, fmt.Errorf("tree page %s: %w: %d entries from %q; its reference says %d from %q",
			ref.ID.Short(), format.ErrCorrupt, len(nodes), first, ref.Entries, ref.First)
	}
	return nodes, nil
}

// descend completes the path below its last frame and loads the page
// under it, letting pick move each frame to the reference to go down
// (nil: the one it is at).
func (it *Iter) descend(ctx context.Context, pick func(f *frame)) error {
	for {
		f := &it.path[len(it.path)-1]
		if pick != nil {
			pick(f)
		}
		ref := &f.refs[f.i]
		if len(it.path) > it.dir.Height {
			nodes, err := loadLeaf(ctx, it.l, ref)
			if err != nil {
				return err
			}
			it.nodes, it.i, it.loaded = nodes, 0, true
			return nil
		}
		refs, err := loadIndex(ctx, it.l, ref, it.dir.Height+1-len(it.path))
		if err != nil {
			return err
		}
		it.path = append(it.path, frame{refs: refs})
	}
}

// lastAtMost returns the last index at or after from whose reference
// starts at or before key, or from if there is none.
func lastAtMost(refs []PageRef, from int, key string) int {
	j := from + sort.Search(len(refs)-from, func(j int) bool { return refs[from+j].First > key }) - 1
	if j < from {
		return from
	}
	return j
}

// advance moves the path to the next page; ok is false at the end.
func (it *Iter) advance() bool {
	for len(it.path) > 0 {
		f := &it.path[len(it.path)-1]
		if f.i+1 < len(f.refs) {
			f.i++
			it.loaded = false
			return true
		}
		it.path = it.path[:len(it.path)-1]
	}
	return false
}

// Peek returns the current entry without consuming it; ok is false at
// the end.
func (it *Iter) Peek(ctx context.Context) (n *Node, ok bool, err error) {
	for {
		if !it.loaded {
			if len(it.path) == 0 || len(it.path[0].refs) == 0 {
				return nil, false, nil
			}
			if err := it.descend(ctx, nil); err != nil {
				return nil, false, err
			}
		}
		if it.i < len(it.nodes) {
			return &it.nodes[it.i], true, nil
		}
		if it.dir.Inline != nil || !it.advance() {
			it.path = nil
			return nil, false, nil
		}
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
// after key. Keys passed to Seek must not decrease. Pages and index pages
// that end before key are skipped without being loaded.
func (it *Iter) Seek(ctx context.Context, key string) (n *Node, ok bool, err error) {
	if it.dir.Inline == nil && len(it.path) > 0 {
		// The highest level where key is past the next reference moves
		// forward; the levels below it are loaded again, by key.
		for k := range it.path {
			f := &it.path[k]
			if j := lastAtMost(f.refs, f.i, key); j > f.i {
				f.i = j
				it.path, it.loaded = it.path[:k+1], false
				break
			}
		}
		if !it.loaded {
			// At each level, the last reference whose first key is at
			// most key.
			if err := it.descend(ctx, func(f *frame) { f.i = lastAtMost(f.refs, f.i, key) }); err != nil {
				return nil, false, err
			}
		}
	}
	if it.loaded {
		it.i += sort.Search(len(it.nodes)-it.i, func(j int) bool { return it.nodes[it.i+j].SortKey() >= key })
	}
	n, ok, err = it.Peek(ctx)
	if !ok || err != nil {
		return nil, false, err
	}
	if n.SortKey() == key {
		return n, true, nil
	}
	return nil, false, nil
}

// SeekPos moves the iterator before entry pos (counting from 0) of the
// directory, forward or back, loading only the pages on the way to it
// (found by the references' entry counts). Past the end it is left at
// the end.
func (it *Iter) SeekPos(ctx context.Context, pos uint64) error {
	if it.dir.Inline != nil {
		it.i = int(min(pos, uint64(len(it.nodes))))
		return nil
	}
	it.path, it.loaded = []frame{{refs: it.dir.Pages}}, false
	if pos >= it.dir.Stats.Entries {
		it.path = nil
		return nil
	}
	// At each level, the reference pos falls under, by entry counts.
	err := it.descend(ctx, func(f *frame) {
		for f.i+1 < len(f.refs) && pos >= f.refs[f.i].Entries {
			pos -= f.refs[f.i].Entries
			f.i++
		}
	})
	if err != nil {
		return err
	}
	it.i = int(min(pos, uint64(len(it.nodes))))
	return nil
}

// Lookup finds the entry with sort key key in d, loading one page per
// level through l; ok is false if d has none.
func Lookup(ctx context.Context, l PageLoader, d *Dir, key string) (n *Node, ok bool, err error) {
	nodes := d.Inline
	if nodes == nil {
		refs := d.Pages
		for level := d.Height; ; level-- {
			i := sort.Search(len(refs), func(i int) bool { return refs[i].First > key }) - 1
			if i < 0 {
				return nil, false, nil
			}
			if level == 0 {
				if nodes, err = loadLeaf(ctx, l, &refs[i]); err != nil {
					return nil, false, err
				}
				break
			}
			if refs, err = loadIndex(ctx, l, &refs[i], level); err != nil {
				return nil, false, err
			}
		}
	}
	i := sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= key })
	if i < len(nodes) && nodes[i].SortKey() == key {
		return &nodes[i], true, nil
	}
	return nil, false, nil
}

// PageIDs calls fn with the id of every page and index page of d (not
// d's own), loading the index pages (not the pages).
func PageIDs(ctx context.Context, l PageLoader, d *Dir, fn func(crypto.ID)) error {
	var walk func(refs []PageRef, level int) error
	walk = func(refs []PageRef, level int) error {
		for i := range refs {
			fn(refs[i].ID)
			if level == 0 {
				continue
			}
			below, err := loadIndex(ctx, l, &refs[i], level)
			if err != nil {
				return err
			}
			if err := walk(below, level-1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(d.Pages, d.Height)
}
