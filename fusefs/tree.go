package fusefs

import (
	"context"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/coffer-backup/coffer/cache"
	"github.com/coffer-backup/coffer/engine"
)

// xattrPrefix is where a node's attributes (for S3 objects: etag,
// content_type, meta.<name>, storage_class, …) show as extended
// attributes: user.s3.<key>.
const xattrPrefix = "user.s3."

// blksize is the preferred I/O size reported to stat: about a chunk.
const blksize = 1 << 20

// fillAttr sets a's fields from what a snapshot says of n.
func fillAttr(n *engine.Node, ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = n.Mode & 0o7777
	switch n.Type {
	case engine.TypeDir:
		a.Mode |= syscall.S_IFDIR
	case engine.TypeSymlink:
		a.Mode |= syscall.S_IFLNK
		a.Size = uint64(len(n.Target))
	default:
		a.Mode |= syscall.S_IFREG
		a.Size = n.Size
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = blksize
	// 1 for directories too: their subdirectory count is not known
	// without reading them, and find(1) takes 1 as "unknown" but 2 as
	// "no subdirectories".
	a.Nlink = 1
	a.Uid, a.Gid = n.UID, n.GID
	sec, nsec := uint64(n.MTime/1e9), uint32(n.MTime%1e9)
	if n.MTime < 0 {
		sec, nsec = 0, 0
	}
	a.Mtime, a.Mtimensec = sec, nsec
	a.Atime, a.Atimensec = sec, nsec
	a.Ctime, a.Ctimensec = sec, nsec
}

func stableMode(t engine.NodeType) uint32 {
	switch t {
	case engine.TypeDir:
		return syscall.S_IFDIR
	case engine.TypeSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// entry is what every node of a snapshot tree has: the shared state, the
// snapshot's entry for it, and statfs.
type entry struct {
	fs.Inode
	fsys *FS
	n    engine.Node
}

func (e *entry) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&e.n, e.StableAttr().Ino, &out.Attr)
	return 0
}

func (e *entry) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	e.fsys.statfs(out)
	return 0
}

// Getxattr returns attribute user.s3.<key>.
func (e *entry) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	key, ok := strings.CutPrefix(attr, xattrPrefix)
	if !ok {
		return 0, syscall.ENODATA
	}
	v, ok := e.n.Attr(key)
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr lists user.s3.<key> for every attribute, NUL-terminated.
func (e *entry) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for _, a := range e.n.Attrs {
		if strings.IndexByte(a.Key, 0) >= 0 {
			continue
		}
		b = append(append(append(b, xattrPrefix...), a.Key...), 0)
	}
	if len(dest) == 0 {
		return uint32(len(b)), 0
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// newNode returns the node for snapshot entry n, a child of parent.
func (f *FS) newNode(n *engine.Node) fs.InodeEmbedder {
	switch n.Type {
	case engine.TypeDir:
		return &dirNode{entry: entry{fsys: f, n: *n}}
	case engine.TypeSymlink:
		return &linkNode{entry: entry{fsys: f, n: *n}}
	}
	return &fileNode{entry: entry{fsys: f, n: *n}}
}

// --- directories ---

// dirNode is a directory of a snapshot. Its blob is loaded (through the
// shared LRU) when it is first looked into.
type dirNode struct {
	entry
}

var (
	_ = (fs.NodeLookuper)((*dirNode)(nil))
	_ = (fs.NodeOpendirHandler)((*dirNode)(nil))
	_ = (fs.NodeGetattrer)((*dirNode)(nil))
	_ = (fs.NodeGetxattrer)((*dirNode)(nil))
	_ = (fs.NodeListxattrer)((*dirNode)(nil))
	_ = (fs.NodeStatfser)((*dirNode)(nil))
)

func (d *dirNode) load(ctx context.Context) (*engine.Dir, error) {
	return d.fsys.dirs.Get(ctx, d.n.Subtree)
}

// lookupKey finds the entry with sort key key, loading at most one page.
func (f *FS) lookupKey(ctx context.Context, d *engine.Dir, key string) (*engine.Node, error) {
	nodes := d.Inline
	if nodes == nil {
		i := sort.Search(len(d.Pages), func(i int) bool { return d.Pages[i].First > key }) - 1
		if i < 0 {
			return nil, nil
		}
		var err error
		if nodes, err = f.pages.Get(ctx, d.Pages[i].ID); err != nil {
			return nil, err
		}
	}
	i := sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= key })
	if i < len(nodes) && nodes[i].SortKey() == key {
		return &nodes[i], nil
	}
	return nil, nil
}

// find returns the entry whose local name (engine.LocalName) is name.
func (f *FS) find(ctx context.Context, d *engine.Dir, name string) (*engine.Node, error) {
	seg, dirBesideFile, err := engine.SegmentFromLocal(name)
	if err != nil || engine.LocalName(seg, dirBesideFile) != name {
		return nil, nil // not a name this mount shows
	}
	if dirBesideFile {
		dir, err := f.lookupKey(ctx, d, seg+"/")
		if dir == nil || err != nil {
			return nil, err
		}
		if other, err := f.lookupKey(ctx, d, seg); other == nil || err != nil {
			return nil, err // no file beside it: the name would be plain
		}
		return dir, nil
	}
	if n, err := f.lookupKey(ctx, d, seg); n != nil || err != nil {
		return n, err
	}
	return f.lookupKey(ctx, d, seg+"/")
}

// localName is the name n shows under in d, or "" when the mount cannot
// show it (a segment longer than NAME_MAX, which the key mapping splits
// into nested folders).
func (f *FS) localName(ctx context.Context, d *engine.Dir, n *engine.Node) (string, error) {
	beside := false
	if n.Type == engine.TypeDir {
		other, err := f.lookupKey(ctx, d, n.Name)
		if err != nil {
			return "", err
		}
		beside = other != nil
	}
	name := engine.LocalName(n.Name, beside)
	if strings.Contains(name, "/") {
		return "", nil
	}
	return name, nil
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	dir, err := d.load(ctx)
	if err != nil {
		return nil, d.fsys.errno("read directory", d.Path(nil), err)
	}
	n, err := d.fsys.find(ctx, dir, name)
	if err != nil {
		return nil, d.fsys.errno("lookup", d.Path(nil)+"/"+name, err)
	}
	if n == nil {
		return nil, syscall.ENOENT
	}
	return d.child(ctx, n, out), 0
}

// child returns the inode of entry n of d and fills out.
func (d *dirNode) child(ctx context.Context, n *engine.Node, out *fuse.EntryOut) *fs.Inode {
	ino := childIno(d.StableAttr().Ino, n.SortKey())
	fillAttr(n, ino, &out.Attr)
	return d.NewInode(ctx, d.fsys.newNode(n), fs.StableAttr{Mode: stableMode(n.Type), Ino: ino})
}

func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	dir, err := d.load(ctx)
	if err != nil {
		return nil, 0, d.fsys.errno("read directory", d.Path(nil), err)
	}
	return &dirHandle{d: d, dir: dir}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR, 0
}

// dirHandle lists a directory page by page. Offsets are positions: 1 and
// 2 are "." and "..", 2+i+1 follows entry i. A seek uses the pages' entry
// counts to load only the page it lands in.
type dirHandle struct {
	d   *dirNode
	dir *engine.Dir

	pos    uint64        // entries produced (including "." and "..")
	starts []uint64      // starts[p] is the index of page p's first entry
	nodes  []engine.Node // the page last loaded
	start  uint64        // index of nodes[0] among the entries
	last   *engine.Node  // the entry last produced
}

var (
	_ = (fs.FileReaddirenter)((*dirHandle)(nil))
	_ = (fs.FileSeekdirer)((*dirHandle)(nil))
	_ = (fs.FileLookuper)((*dirHandle)(nil))
	_ = (fs.FileReleasedirer)((*dirHandle)(nil))
)

// at returns entry i (counting from 0), loading its page.
func (h *dirHandle) at(ctx context.Context, i uint64) (*engine.Node, error) {
	if h.dir.Inline != nil {
		if i < uint64(len(h.dir.Inline)) {
			return &h.dir.Inline[i], nil
		}
		return nil, nil
	}
	if h.nodes != nil && i >= h.start && i < h.start+uint64(len(h.nodes)) {
		return &h.nodes[i-h.start], nil
	}
	if h.starts == nil {
		h.starts = make([]uint64, len(h.dir.Pages)+1)
		for p, ref := range h.dir.Pages {
			h.starts[p+1] = h.starts[p] + ref.Entries
		}
	}
	p := sort.Search(len(h.dir.Pages), func(p int) bool { return h.starts[p+1] > i })
	if p == len(h.dir.Pages) {
		return nil, nil
	}
	nodes, err := h.d.fsys.pages.Get(ctx, h.dir.Pages[p].ID)
	if err != nil {
		return nil, err
	}
	h.nodes, h.start = nodes, h.starts[p]
	if i-h.start >= uint64(len(nodes)) {
		return nil, nil // a page shorter than its ref says: stop there
	}
	return &nodes[i-h.start], nil
}

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	for {
		h.pos++
		switch h.pos {
		case 1:
			return &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: h.d.StableAttr().Ino, Off: 1}, 0
		case 2:
			return &fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: 1, Off: 2}, 0
		}
		n, err := h.at(ctx, h.pos-3)
		if err != nil {
			h.pos--
			return nil, h.d.fsys.errno("list", h.d.Path(nil), err)
		}
		if n == nil {
			h.pos--
			return nil, 0
		}
		name, err := h.d.fsys.localName(ctx, h.dir, n)
		if err != nil {
			h.pos--
			return nil, h.d.fsys.errno("list", h.d.Path(nil), err)
		}
		if name == "" {
			continue // not showable
		}
		h.last = n
		return &fuse.DirEntry{Name: name, Mode: stableMode(n.Type), Ino: childIno(h.d.StableAttr().Ino, n.SortKey()), Off: h.pos}, 0
	}
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos, h.last = off, nil
	return 0
}

// Lookup serves the lookups of READDIRPLUS from the entry just listed.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n := h.last; n != nil {
		if ln, err := h.d.fsys.localName(ctx, h.dir, n); err == nil && ln == name {
			return h.d.child(ctx, n, out), 0
		}
	}
	return h.d.Lookup(ctx, name, out)
}

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

// --- files ---

// fileNode is a file of a snapshot. Its chunk list is read on the first
// open and kept with the node; its content is read only when read.
type fileNode struct {
	entry

	mu   sync.Mutex
	file *cache.File
}

var (
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeGetattrer)((*fileNode)(nil))
	_ = (fs.NodeGetxattrer)((*fileNode)(nil))
	_ = (fs.NodeListxattrer)((*fileNode)(nil))
	_ = (fs.NodeStatfser)((*fileNode)(nil))
)

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		chunks, err := f.fsys.repo.FileChunks(ctx, &f.n)
		if err != nil {
			return nil, 0, f.fsys.errno("open", f.Path(nil), err)
		}
		f.file = cache.NewFile(chunks)
	}
	h := &fileHandle{f: f, r: cache.NewReader(f.fsys.chunks, f.file, f.fsys.opt.ReadAhead)}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// fileHandle is one open file with its own read-ahead state.
type fileHandle struct {
	f *fileNode
	r *cache.Reader
}

var _ = (fs.FileReader)((*fileHandle)(nil))

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.r.ReadAt(ctx, dest, off)
	if err != nil && n == 0 && off < h.f.file.Size() {
		return nil, h.f.fsys.errno("read", h.f.Path(nil), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// --- symlinks ---

type linkNode struct {
	entry
}

var (
	_ = (fs.NodeReadlinker)((*linkNode)(nil))
	_ = (fs.NodeGetattrer)((*linkNode)(nil))
)

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.n.Target), 0
}
