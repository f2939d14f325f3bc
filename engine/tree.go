package engine

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
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
	ID   crypto.ID
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

	Subtree crypto.ID // dir: the directory blob

	// File content: the chunks inline, or (for files of many chunks) the
	// id of a chunk-list blob holding them.
	Chunks    []Chunk
	ChunkList crypto.ID

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

func encodeNode(e *format.Encoder, n *Node) {
	e.Byte(byte(n.Type))
	e.Str(n.Name)
	e.Uvarint(uint64(n.Mode))
	e.Varint(n.MTime)
	e.Uvarint(n.Size)
	e.Uvarint(uint64(n.UID))
	e.Uvarint(uint64(n.GID))
	e.Uvarint(n.Inode)
	e.Varint(n.CTime)
	switch n.Type {
	case TypeFile:
		if !n.ChunkList.IsZero() {
			e.Byte(contentList)
			e.ID(n.ChunkList)
		} else {
			e.Byte(contentInline)
			encodeChunks(e, n.Chunks)
		}
	case TypeDir:
		e.ID(n.Subtree)
	case TypeSymlink:
		e.Str(n.Target)
	}
	e.Uvarint(uint64(len(n.Attrs)))
	for _, a := range n.Attrs {
		e.Str(a.Key)
		e.Bytes(a.Value)
	}
}

func encodeChunks(e *format.Encoder, cs []Chunk) {
	e.Uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.ID(c.ID)
		e.Uvarint(uint64(c.Size))
	}
}

func decodeChunks(d *format.Decoder) []Chunk {
	n := d.Count(33)
	cs := make([]Chunk, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		id := d.ID()
		cs = append(cs, Chunk{ID: id, Size: format.Uint32v(d, d.Uvarint())})
	}
	return cs
}

// minNodeSize is the smallest encoding of a node: a symlink with an empty
// name and target and every number zero.
const minNodeSize = 11

func decodeNode(d *format.Decoder) Node {
	var n Node
	n.Type = NodeType(d.Byte())
	n.Name = d.Str()
	n.Mode = format.Uint32v(d, d.Uvarint())
	n.MTime = d.Varint()
	n.Size = d.Uvarint()
	n.UID = format.Uint32v(d, d.Uvarint())
	n.GID = format.Uint32v(d, d.Uvarint())
	n.Inode = d.Uvarint()
	n.CTime = d.Varint()
	switch n.Type {
	case TypeFile:
		switch d.Byte() {
		case contentInline:
			n.Chunks = decodeChunks(d)
			var sum uint64
			for _, c := range n.Chunks {
				sum += uint64(c.Size)
			}
			if d.Err == nil && sum != n.Size {
				d.Fail("file chunks (sizes do not add up to the file size)")
			}
		case contentList:
			n.ChunkList = d.ID()
			if d.Err == nil && n.ChunkList.IsZero() {
				d.Fail("chunk list id (zero)")
			}
		default:
			d.Fail("file content kind")
		}
	case TypeDir:
		n.Subtree = d.ID()
	case TypeSymlink:
		n.Target = d.Str()
	default:
		d.Fail("node type")
	}
	na := d.Count(2)
	if na > 0 {
		n.Attrs = make([]Attr, 0, na)
	}
	for i := 0; i < na && d.Err == nil; i++ {
		n.Attrs = append(n.Attrs, Attr{Key: d.Str(), Value: d.Bytes()})
		if i > 0 && d.Err == nil && n.Attrs[i-1].Key >= n.Attrs[i].Key {
			d.Fail("attrs (not sorted)")
		}
	}
	if d.Err == nil && (n.Mode > 0o7777 || strings.Contains(n.Name, "/")) {
		d.Fail("node name or mode")
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
	ID      crypto.ID
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
	ID    crypto.ID
	Stats DirStats
	// Exactly one of these is set: the entries of a one-page directory, or
	// the pages of a larger one.
	Inline []Node
	Pages  []PageRef
}

func encodeDirHeader(e *format.Encoder, layout byte, st DirStats) {
	e.Byte(dirVersion)
	e.Byte(layout)
	e.Uvarint(st.Entries)
	e.Uvarint(st.Files)
	e.Uvarint(st.Dirs)
	e.Uvarint(st.Bytes)
}

func decodeDir(p []byte) (*Dir, error) {
	d := format.Decoder{B: p}
	if v := d.Byte(); d.Err == nil && v != dirVersion {
		return nil, fmt.Errorf("dir: unknown version %d", v)
	}
	layout := d.Byte()
	var dir Dir
	dir.Stats = DirStats{Entries: d.Uvarint(), Files: d.Uvarint(), Dirs: d.Uvarint(), Bytes: d.Uvarint()}
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
		n := d.Count(34)
		dir.Pages = make([]PageRef, 0, n)
		var sum uint64
		for i := 0; i < n && d.Err == nil; i++ {
			pr := PageRef{First: d.Str(), Entries: d.Uvarint(), ID: d.ID()}
			if d.Err == nil && i > 0 && dir.Pages[i-1].First >= pr.First {
				d.Fail("page refs (not sorted)")
			}
			sum += pr.Entries
			dir.Pages = append(dir.Pages, pr)
		}
		if d.Err == nil && sum != dir.Stats.Entries {
			d.Fail("page refs (entry counts do not add up)")
		}
	default:
		d.Fail("dir layout")
	}
	if err := d.Done("dir"); err != nil {
		return nil, err
	}
	if dir.Inline != nil && uint64(len(dir.Inline)) != dir.Stats.Entries {
		return nil, fmt.Errorf("dir: %w: %d entries, header says %d", format.ErrCorrupt, len(dir.Inline), dir.Stats.Entries)
	}
	return &dir, nil
}

// decodePageBody reads count || node*, checking the sort order.
func decodePageBody(d *format.Decoder) ([]Node, error) {
	n := d.Count(minNodeSize)
	nodes := make([]Node, 0, n)
	prev := ""
	for i := 0; i < n && d.Err == nil; i++ {
		nd := decodeNode(d)
		if d.Err == nil {
			k := nd.SortKey()
			if i > 0 && k <= prev {
				d.Fail("entries (not in sort-key order)")
			}
			prev = k
		}
		nodes = append(nodes, nd)
	}
	return nodes, d.Err
}

func decodePage(p []byte) ([]Node, error) {
	d := format.Decoder{B: p}
	nodes, _ := decodePageBody(&d)
	if err := d.Done("tree page"); err != nil {
		return nil, err
	}
	return nodes, nil
}

func decodeChunkList(p []byte) ([]Chunk, error) {
	d := format.Decoder{B: p}
	cs := decodeChunks(&d)
	if err := d.Done("chunk list"); err != nil {
		return nil, err
	}
	return cs, nil
}

// dirBuilder encodes a directory from entries given in sort-key order,
// storing full pages as it goes, so a directory of millions of entries
// needs the memory of one page.
type dirBuilder struct {
	save func(plain []byte) (crypto.ID, error)

	page      format.Encoder
	pageCount int
	pageFirst string
	pages     []PageRef
	stats     DirStats
	lastKey   string
}

func newDirBuilder(save func([]byte) (crypto.ID, error)) *dirBuilder {
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
	e := format.Encoder{B: make([]byte, 0, len(b.page.B)+8)}
	e.Uvarint(uint64(b.pageCount))
	e.B = append(e.B, b.page.B...)
	return e.B
}

func (b *dirBuilder) flushPage() error {
	id, err := b.save(b.pageBlob())
	if err != nil {
		return err
	}
	b.pages = append(b.pages, PageRef{First: b.pageFirst, Entries: uint64(b.pageCount), ID: id})
	b.page.B, b.pageCount = b.page.B[:0], 0
	return nil
}

// Finish stores the directory blob and returns its id and totals.
func (b *dirBuilder) Finish() (crypto.ID, DirStats, error) {
	var e format.Encoder
	if len(b.pages) == 0 {
		encodeDirHeader(&e, layoutInline, b.stats)
		e.B = append(e.B, b.pageBlob()...)
	} else {
		if b.pageCount > 0 {
			if err := b.flushPage(); err != nil {
				return crypto.ID{}, DirStats{}, err
			}
		}
		encodeDirHeader(&e, layoutPaged, b.stats)
		e.Uvarint(uint64(len(b.pages)))
		for _, p := range b.pages {
			e.Str(p.First)
			e.Uvarint(p.Entries)
			e.ID(p.ID)
		}
	}
	id, err := b.save(e.B)
	return id, b.stats, err
}

// TreeCache keeps decoded directories and pages (the mount's LRU); the
// loaders it is given read and decode them on a miss. Cached values are
// shared: callers must not modify them.
type TreeCache interface {
	Dir(ctx context.Context, id crypto.ID, load func(context.Context) (*Dir, error)) (*Dir, error)
	Page(ctx context.Context, id crypto.ID, load func(context.Context) ([]Node, error)) ([]Node, error)
}

// SetTreeCache makes LoadDir and LoadPage (and so Lookup, Iter and
// ResolvePath) go through c. Call it before the repo is shared between
// goroutines: it is a plain field write.
func (r *Repo) SetTreeCache(c TreeCache) { r.trees = c }

// LoadDir reads a directory blob.
func (r *Repo) LoadDir(ctx context.Context, id crypto.ID) (*Dir, error) {
	if r.trees != nil {
		return r.trees.Dir(ctx, id, func(ctx context.Context) (*Dir, error) { return r.loadDir(ctx, id) })
	}
	return r.loadDir(ctx, id)
}

func (r *Repo) loadDir(ctx context.Context, id crypto.ID) (*Dir, error) {
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
func (r *Repo) LoadPage(ctx context.Context, id crypto.ID) ([]Node, error) {
	if r.trees != nil {
		return r.trees.Page(ctx, id, func(ctx context.Context) ([]Node, error) { return r.loadPage(ctx, id) })
	}
	return r.loadPage(ctx, id)
}

func (r *Repo) loadPage(ctx context.Context, id crypto.ID) ([]Node, error) {
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
		return nil, &BlobError{ID: n.ChunkList, Err: fmt.Errorf("%w: chunks add up to %d bytes, file is %d", format.ErrCorrupt, sum, n.Size)}
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

// Peek returns the current entry without consuming it, or nil at the end.
func (it *DirIter) Peek(ctx context.Context) (*Node, error) {
	for {
		if !it.loaded {
			if it.page >= len(it.dir.Pages) {
				return nil, nil
			}
			nodes, err := it.r.LoadPage(ctx, it.dir.Pages[it.page].ID)
			if err != nil {
				return nil, err
			}
			it.nodes, it.i, it.loaded = nodes, 0, true
		}
		if it.i < len(it.nodes) {
			return &it.nodes[it.i], nil
		}
		if it.dir.Inline != nil || it.page+1 >= len(it.dir.Pages) {
			return nil, nil
		}
		it.page++
		it.loaded = false
	}
}

// Next returns the current entry and advances, or nil at the end.
func (it *DirIter) Next(ctx context.Context) (*Node, error) {
	n, err := it.Peek(ctx)
	if n != nil {
		it.i++
	}
	return n, err
}

// Seek advances to the entry whose sort key is key and returns it, or
// returns nil, leaving the iterator at the first entry after key. Keys
// passed to Seek must not decrease. Pages that end before key are skipped
// without being loaded.
func (it *DirIter) Seek(ctx context.Context, key string) (*Node, error) {
	for it.dir.Inline == nil && it.page+1 < len(it.dir.Pages) && it.dir.Pages[it.page+1].First <= key {
		it.page++
		it.loaded = false
	}
	for {
		n, err := it.Peek(ctx)
		if n == nil || err != nil {
			return nil, err
		}
		k := n.SortKey()
		if k == key {
			return n, nil
		}
		if k > key {
			return nil, nil
		}
		it.i++
	}
}

// Lookup finds the entry with sort key key in d.
func (r *Repo) Lookup(ctx context.Context, d *Dir, key string) (*Node, error) {
	nodes := d.Inline
	if nodes == nil {
		i := sort.Search(len(d.Pages), func(i int) bool { return d.Pages[i].First > key }) - 1
		if i < 0 {
			return nil, nil
		}
		var err error
		if nodes, err = r.LoadPage(ctx, d.Pages[i].ID); err != nil {
			return nil, err
		}
	}
	i := sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= key })
	if i < len(nodes) && nodes[i].SortKey() == key {
		return &nodes[i], nil
	}
	return nil, nil
}
