package engine

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// NodeType is the kind of a tree entry.
type NodeType uint8

const (
	TypeFile    NodeType = 1
	TypeDir     NodeType = 2
	TypeSymlink NodeType = 3
)

func (t NodeType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", t)
}

// Chunk is one piece of a file's content.
type Chunk struct {
	ID   ID
	Size uint32
}

// Attr is a source-specific attribute (for S3: etag, content type, user
// metadata); a node's attrs are sorted by key.
type Attr struct {
	Key   string
	Value []byte
}

// Node is one entry of a directory: what the source told about it.
type Node struct {
	Name   string
	Type   NodeType
	Mode   uint32 // permission bits, with setuid, setgid and sticky (07777)
	MTime  int64  // Unix nanoseconds
	Size   uint64 // file: content length
	UID    uint32
	GID    uint32
	Inode  uint64 // for change detection only
	CTime  int64  // Unix nanoseconds; for change detection only
	Target string // symlink target

	Subtree ID // dir: the directory blob

	// File content: the chunks inline, or (for files of many chunks) the
	// id of a chunk-list blob holding them.
	Chunks    []Chunk
	ChunkList ID

	Attrs []Attr
}

// SortKey orders the entries of a directory: a directory sorts as its name
// followed by "/", anything else as its name. With this order a flat,
// lexicographic listing of S3 keys is already a depth-first walk, and a
// file and a directory may share a name.
func (n *Node) SortKey() string {
	if n.Type == TypeDir {
		return n.Name + "/"
	}
	return n.Name
}

// Attr returns the value of attribute key.
func (n *Node) Attr(key string) ([]byte, bool) {
	i := sort.Search(len(n.Attrs), func(i int) bool { return n.Attrs[i].Key >= key })
	if i < len(n.Attrs) && n.Attrs[i].Key == key {
		return n.Attrs[i].Value, true
	}
	return nil, false
}

// maxInlineChunks is the most chunks a file entry holds inline; beyond it
// the list goes into a chunk-list blob of its own.
const maxInlineChunks = 64

const (
	contentInline = 0
	contentList   = 1
)

func encodeNode(e *encoder, n *Node) {
	e.byte(byte(n.Type))
	e.string(n.Name)
	e.uvarint(uint64(n.Mode))
	e.varint(n.MTime)
	e.uvarint(n.Size)
	e.uvarint(uint64(n.UID))
	e.uvarint(uint64(n.GID))
	e.uvarint(n.Inode)
	e.varint(n.CTime)
	switch n.Type {
	case TypeFile:
		if !n.ChunkList.IsZero() {
			e.byte(contentList)
			e.id(n.ChunkList)
		} else {
			e.byte(contentInline)
			encodeChunks(e, n.Chunks)
		}
	case TypeDir:
		e.id(n.Subtree)
	case TypeSymlink:
		e.string(n.Target)
	}
	e.uvarint(uint64(len(n.Attrs)))
	for _, a := range n.Attrs {
		e.string(a.Key)
		e.bytes(a.Value)
	}
}

func encodeChunks(e *encoder, cs []Chunk) {
	e.uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.id(c.ID)
		e.uvarint(uint64(c.Size))
	}
}

func decodeChunks(d *decoder) []Chunk {
	n := d.count(33)
	cs := make([]Chunk, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		id := d.id()
		cs = append(cs, Chunk{ID: id, Size: uint32v(d, d.uvarint())})
	}
	return cs
}

// minNodeSize is the smallest encoding of a node: a symlink with an empty
// name and target and every number zero.
const minNodeSize = 11

func decodeNode(d *decoder) Node {
	var n Node
	n.Type = NodeType(d.byte())
	n.Name = d.string()
	n.Mode = uint32v(d, d.uvarint())
	n.MTime = d.varint()
	n.Size = d.uvarint()
	n.UID = uint32v(d, d.uvarint())
	n.GID = uint32v(d, d.uvarint())
	n.Inode = d.uvarint()
	n.CTime = d.varint()
	switch n.Type {
	case TypeFile:
		switch d.byte() {
		case contentInline:
			n.Chunks = decodeChunks(d)
			var sum uint64
			for _, c := range n.Chunks {
				sum += uint64(c.Size)
			}
			if d.err == nil && sum != n.Size {
				d.fail("file chunks (sizes do not add up to the file size)")
			}
		case contentList:
			n.ChunkList = d.id()
			if d.err == nil && n.ChunkList.IsZero() {
				d.fail("chunk list id (zero)")
			}
		default:
			d.fail("file content kind")
		}
	case TypeDir:
		n.Subtree = d.id()
	case TypeSymlink:
		n.Target = d.string()
	default:
		d.fail("node type")
	}
	na := d.count(2)
	if na > 0 {
		n.Attrs = make([]Attr, 0, na)
	}
	for i := 0; i < na && d.err == nil; i++ {
		n.Attrs = append(n.Attrs, Attr{Key: d.string(), Value: d.bytes()})
		if i > 0 && d.err == nil && n.Attrs[i-1].Key >= n.Attrs[i].Key {
			d.fail("attrs (not sorted)")
		}
	}
	if d.err == nil && (n.Mode > 0o7777 || strings.Contains(n.Name, "/")) {
		d.fail("node name or mode")
	}
	return n
}

// Layouts of a directory blob.
const (
	dirVersion   = 1
	layoutInline = 0 // the entries follow
	layoutPaged  = 1 // references to page blobs follow
)

// Page cut rule: a page ends after an entry whose sort key hashes to 0
// modulo pageCutModulus, once it holds pageMinEntries, and always at
// pageMaxEntries. Cuts depend on the entries alone, so adding one entry to
// a large directory rewrites one page.
const (
	pageMinEntries = 32
	pageCutModulus = 256
	pageMaxEntries = 4096
)

func pageCut(key string, count int) bool {
	if count >= pageMaxEntries {
		return true
	}
	if count < pageMinEntries {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()%pageCutModulus == 0
}

// PageRef points at one page of a paged directory.
type PageRef struct {
	First   string // sort key of the page's first entry
	Entries uint64
	ID      ID
}

// DirStats are the totals a directory blob carries for its whole subtree.
type DirStats struct {
	Entries uint64 // direct entries
	Files   uint64 // regular files in the subtree
	Dirs    uint64 // directories in the subtree, not counting itself
	Bytes   uint64 // content bytes of the files in the subtree
}

func (s *DirStats) add(o DirStats) {
	s.Files += o.Files
	s.Dirs += o.Dirs
	s.Bytes += o.Bytes
}

// Dir is a decoded directory blob.
type Dir struct {
	ID    ID
	Stats DirStats
	// Exactly one of these is set: the entries of a one-page directory, or
	// the pages of a larger one.
	Inline []Node
	Pages  []PageRef
}

func encodeDirHeader(e *encoder, layout byte, st DirStats) {
	e.byte(dirVersion)
	e.byte(layout)
	e.uvarint(st.Entries)
	e.uvarint(st.Files)
	e.uvarint(st.Dirs)
	e.uvarint(st.Bytes)
}

func decodeDir(p []byte) (*Dir, error) {
	d := decoder{b: p}
	if v := d.byte(); d.err == nil && v != dirVersion {
		return nil, fmt.Errorf("dir: unknown version %d", v)
	}
	layout := d.byte()
	var dir Dir
	dir.Stats = DirStats{Entries: d.uvarint(), Files: d.uvarint(), Dirs: d.uvarint(), Bytes: d.uvarint()}
	switch layout {
	case layoutInline:
		nodes, err := decodePageBody(&d)
		if err != nil {
			return nil, err
		}
		dir.Inline = nodes
		if dir.Inline == nil {
			dir.Inline = []Node{}
		}
	case layoutPaged:
		n := d.count(34)
		dir.Pages = make([]PageRef, 0, n)
		var sum uint64
		for i := 0; i < n && d.err == nil; i++ {
			pr := PageRef{First: d.string(), Entries: d.uvarint(), ID: d.id()}
			if d.err == nil && i > 0 && dir.Pages[i-1].First >= pr.First {
				d.fail("page refs (not sorted)")
			}
			sum += pr.Entries
			dir.Pages = append(dir.Pages, pr)
		}
		if d.err == nil && sum != dir.Stats.Entries {
			d.fail("page refs (entry counts do not add up)")
		}
	default:
		d.fail("dir layout")
	}
	if err := d.done("dir"); err != nil {
		return nil, err
	}
	if dir.Inline != nil && uint64(len(dir.Inline)) != dir.Stats.Entries {
		return nil, fmt.Errorf("dir: %w: %d entries, header says %d", errCorrupt, len(dir.Inline), dir.Stats.Entries)
	}
	return &dir, nil
}

// decodePageBody reads count || node*, checking the sort order.
func decodePageBody(d *decoder) ([]Node, error) {
	n := d.count(minNodeSize)
	nodes := make([]Node, 0, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		nd := decodeNode(d)
		if d.err == nil {
			k := nd.SortKey()
			if i > 0 && k <= prev {
				d.fail("entries (not in sort-key order)")
			}
			prev = k
		}
		nodes = append(nodes, nd)
	}
	return nodes, d.err
}

func decodePage(p []byte) ([]Node, error) {
	d := decoder{b: p}
	nodes, _ := decodePageBody(&d)
	if err := d.done("tree page"); err != nil {
		return nil, err
	}
	return nodes, nil
}

func decodeChunkList(p []byte) ([]Chunk, error) {
	d := decoder{b: p}
	cs := decodeChunks(&d)
	if err := d.done("chunk list"); err != nil {
		return nil, err
	}
	return cs, nil
}

// dirBuilder encodes a directory from entries given in sort-key order,
// storing full pages as it goes, so a directory of millions of entries
// needs the memory of one page.
type dirBuilder struct {
	save func(plain []byte) (ID, error)

	page      encoder
	pageCount int
	pageFirst string
	pages     []PageRef
	stats     DirStats
	lastKey   string
}

func newDirBuilder(save func([]byte) (ID, error)) *dirBuilder {
	return &dirBuilder{save: save}
}

// Add appends n; sort keys must strictly increase.
func (b *dirBuilder) Add(n *Node, sub DirStats) error {
	if strings.Contains(n.Name, "/") {
		return fmt.Errorf("tree: entry name %q contains a slash", n.Name)
	}
	k := n.SortKey()
	if b.stats.Entries > 0 && k <= b.lastKey {
		return fmt.Errorf("tree: entry %q out of order after %q", k, b.lastKey)
	}
	b.lastKey = k
	if b.pageCount == 0 {
		b.pageFirst = k
	}
	encodeNode(&b.page, n)
	b.pageCount++
	b.stats.Entries++
	switch n.Type {
	case TypeFile:
		b.stats.Files++
		b.stats.Bytes += n.Size
	case TypeDir:
		b.stats.Dirs++
		b.stats.add(sub)
	}
	if pageCut(k, b.pageCount) {
		return b.flushPage()
	}
	return nil
}

func (b *dirBuilder) pageBlob() []byte {
	e := encoder{b: make([]byte, 0, len(b.page.b)+8)}
	e.uvarint(uint64(b.pageCount))
	e.b = append(e.b, b.page.b...)
	return e.b
}

func (b *dirBuilder) flushPage() error {
	id, err := b.save(b.pageBlob())
	if err != nil {
		return err
	}
	b.pages = append(b.pages, PageRef{First: b.pageFirst, Entries: uint64(b.pageCount), ID: id})
	b.page.b, b.pageCount = b.page.b[:0], 0
	return nil
}

// Finish stores the directory blob and returns its id and totals.
func (b *dirBuilder) Finish() (ID, DirStats, error) {
	var e encoder
	if len(b.pages) == 0 {
		encodeDirHeader(&e, layoutInline, b.stats)
		e.b = append(e.b, b.pageBlob()...)
	} else {
		if b.pageCount > 0 {
			if err := b.flushPage(); err != nil {
				return ID{}, DirStats{}, err
			}
		}
		encodeDirHeader(&e, layoutPaged, b.stats)
		e.uvarint(uint64(len(b.pages)))
		for _, p := range b.pages {
			e.string(p.First)
			e.uvarint(p.Entries)
			e.id(p.ID)
		}
	}
	id, err := b.save(e.b)
	return id, b.stats, err
}

// TreeCache keeps decoded directories and pages (the mount's LRU); the
// loaders it is given read and decode them on a miss. Cached values are
// shared: callers must not modify them.
type TreeCache interface {
	Dir(ctx context.Context, id ID, load func(context.Context) (*Dir, error)) (*Dir, error)
	Page(ctx context.Context, id ID, load func(context.Context) ([]Node, error)) ([]Node, error)
}

// SetTreeCache makes LoadDir and LoadPage (and so Lookup, Iter and
// ResolvePath) go through c. Call it before the repo is shared between
// goroutines: it is a plain field write.
func (r *Repo) SetTreeCache(c TreeCache) { r.trees = c }

// LoadDir reads a directory blob.
func (r *Repo) LoadDir(ctx context.Context, id ID) (*Dir, error) {
	if r.trees != nil {
		return r.trees.Dir(ctx, id, func(ctx context.Context) (*Dir, error) { return r.loadDir(ctx, id) })
	}
	return r.loadDir(ctx, id)
}

func (r *Repo) loadDir(ctx context.Context, id ID) (*Dir, error) {
	p, err := r.LoadBlob(ctx, id)
	if err != nil {
		return nil, err
	}
	d, err := decodeDir(p)
	if err != nil {
		return nil, &BlobError{ID: id, Err: err}
	}
	d.ID = id
	return d, nil
}

// LoadPage reads one page of a paged directory.
func (r *Repo) LoadPage(ctx context.Context, id ID) ([]Node, error) {
	if r.trees != nil {
		return r.trees.Page(ctx, id, func(ctx context.Context) ([]Node, error) { return r.loadPage(ctx, id) })
	}
	return r.loadPage(ctx, id)
}

func (r *Repo) loadPage(ctx context.Context, id ID) ([]Node, error) {
	p, err := r.LoadBlob(ctx, id)
	if err != nil {
		return nil, err
	}
	nodes, err := decodePage(p)
	if err != nil {
		return nil, &BlobError{ID: id, Err: err}
	}
	return nodes, nil
}

// FileChunks returns the chunks of a file node, loading its chunk list if
// it has one.
func (r *Repo) FileChunks(ctx context.Context, n *Node) ([]Chunk, error) {
	if n.ChunkList.IsZero() {
		return n.Chunks, nil
	}
	p, err := r.LoadBlob(ctx, n.ChunkList)
	if err != nil {
		return nil, err
	}
	cs, err := decodeChunkList(p)
	if err != nil {
		return nil, &BlobError{ID: n.ChunkList, Err: err}
	}
	var sum uint64
	for _, c := range cs {
		sum += uint64(c.Size)
	}
	if sum != n.Size {
		return nil, &BlobError{ID: n.ChunkList, Err: fmt.Errorf("%w: chunks add up to %d bytes, file is %d", errCorrupt, sum, n.Size)}
	}
	return cs, nil
}

// DirIter walks a directory's entries in sort-key order, loading pages as
// it reaches them.
type DirIter struct {
	r      *Repo
	dir    *Dir
	page   int // current page (0 for an inline directory)
	loaded bool
	nodes  []Node
	i      int
}

// Iter returns an iterator positioned before the first entry.
func (r *Repo) Iter(d *Dir) *DirIter {
	it := &DirIter{r: r, dir: d}
	if d.Inline != nil {
		it.nodes, it.loaded = d.Inline, true
	}
	return it
}

// Peek returns the current entry without consuming it; ok is false at
// the end.
func (it *DirIter) Peek(ctx context.Context) (n *Node, ok bool, err error) {
	for {
		if !it.loaded {
			if it.page >= len(it.dir.Pages) {
				return nil, false, nil
			}
			nodes, err := it.r.LoadPage(ctx, it.dir.Pages[it.page].ID)
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
func (it *DirIter) Next(ctx context.Context) (n *Node, ok bool, err error) {
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
func (it *DirIter) Seek(ctx context.Context, key string) (n *Node, ok bool, err error) {
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

// Lookup finds the entry with sort key key in d; ok is false if d has
// none.
func (r *Repo) Lookup(ctx context.Context, d *Dir, key string) (n *Node, ok bool, err error) {
	nodes := d.Inline
	if nodes == nil {
		i := sort.Search(len(d.Pages), func(i int) bool { return d.Pages[i].First > key }) - 1
		if i < 0 {
			return nil, false, nil
		}
		if nodes, err = r.LoadPage(ctx, d.Pages[i].ID); err != nil {
			return nil, false, err
		}
	}
	i := sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= key })
	if i < len(nodes) && nodes[i].SortKey() == key {
		return &nodes[i], true, nil
	}
	return nil, false, nil
}
