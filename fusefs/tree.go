package fusefs

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/coffer-backup/coffer/engine/keymap"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/coffer-backup/coffer/engine/object"
)

// xattrPrefix is where a node's attributes (for S3 objects: etag,
// content_type, meta.<name>, storage_class, …) show as extended
// attributes: user.s3.<key>.
const xattrPrefix = "user.s3."

// blksize is the preferred I/O size reported to stat: about a chunk.
const blksize = 1 << 20

// fillAttr sets a's fields from what a snapshot says of n.
func fillAttr(n *tree.Node, ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = n.Mode & 0o7777
	switch n.Type {
	case tree.TypeDir:
		a.Mode |= syscall.S_IFDIR
	case tree.TypeSymlink:
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

func stableMode(t tree.NodeType) uint32 {
	switch t {
	case tree.TypeDir:
		return syscall.S_IFDIR
	case tree.TypeSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// entry is what every node of a snapshot tree has: the shared state, the
// snapshot's entry for it, the snapshot's time, and statfs.
type entry struct {
	fs.Inode
	slot // its place among the nodes the kernel keeps (inodes.go)
	fsys *FS
	n    tree.Node
	snap int64 // the snapshot's time (Unix ns), for directories without one
}

func (e *entry) owner() *FS { return e.fsys }

// OnForget: go-fuse lets the node go (the kernel forgot it).
func (e *entry) OnForget() { e.fsys.forget(e.Operations()) }

// withSnapTime returns n, or a copy of n with the snapshot's time snap if
// n is a directory without an mtime: S3 prefixes are implicit
// directories, and 1970 would say nothing.
func withSnapTime(n *tree.Node, snap int64) *tree.Node {
	if n.Type != tree.TypeDir || n.MTime != 0 {
		return n
	}
	c := *n
	c.MTime = snap
	return &c
}

func (e *entry) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(withSnapTime(&e.n, e.snap), e.StableAttr().Ino, &out.Attr)
	return 0
}

func (e *entry) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	e.fsys.statfs(out)
	return 0
}

// xattrUnsupported is the errno for the attributes of name's namespace
// when a node has none of it: EOPNOTSUPP for the namespaces a snapshot
// never holds (security.*, system.* such as POSIX ACLs, trusted.*),
// ENODATA for user.*.
//
// EOPNOTSUPP is what a file system without those attributes answers, and
// tools take it so: ls -l asks for security.selinux and
// system.posix_acl_access of every entry, each a FUSE round trip that
// the kernel does not cache, but stops asking for the rest of the file
// system (coreutils caches "unsupported" by device) after the first
// EOPNOTSUPP. With ENODATA it asked 40,666 times for an ls -lR of 20k
// entries, nearly all of the requests.
func xattrUnsupported(name string) syscall.Errno {
	if strings.HasPrefix(name, "user.") {
		return syscall.ENODATA
	}
	return syscall.EOPNOTSUPP
}

// noXattrs answers for a node without attributes: the folders of the
// snapshot list and of pieces, and the latest links.
type noXattrs struct{}

func (noXattrs) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, xattrUnsupported(attr)
}

// Getxattr returns attribute user.s3.<key>.
func (e *entry) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	key, ok := strings.CutPrefix(attr, xattrPrefix)
	if !ok {
		return 0, xattrUnsupported(attr)
	}
	v, ok := e.n.Attr(key)
	if !ok {
		return 0, syscall.ENODATA
	}
	return xattrValue(v, dest)
}

// Listxattr lists user.s3.<key> for every attribute, NUL-terminated.
func (e *entry) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listXattrs(e.n.Attrs, dest)
}

// xattrKV is an attribute as the snapshot's nodes (tree.Attr) and the
// live tree (object.LiveAttr) hold them.
type xattrKV interface {
	~struct {
		Key   string
		Value []byte
	}
}

// getXattr answers a getxattr of user.s3.<key> from attrs.
func getXattr[A xattrKV](attrs []A, key string, dest []byte) (uint32, syscall.Errno) {
	for _, a := range attrs {
		if kv := tree.Attr(a); kv.Key == key {
			return xattrValue(kv.Value, dest)
		}
	}
	return 0, syscall.ENODATA
}

// xattrValue answers a getxattr of value v: its size if dest is empty,
// ERANGE if dest is too small.
func xattrValue(v, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// listXattrs answers a listxattr: user.s3.<key> of every attribute,
// NUL-terminated (a key holding a NUL cannot be named, and is left out).
func listXattrs[A xattrKV](attrs []A, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for _, a := range attrs {
		kv := tree.Attr(a)
		if strings.IndexByte(kv.Key, 0) >= 0 {
			continue
		}
		b = append(append(append(b, xattrPrefix...), kv.Key...), 0)
	}
	return xattrValue(b, dest)
}

// newNode returns the node for entry n of the snapshot of time snap.
func (f *FS) newNode(n *tree.Node, snap int64) fs.InodeEmbedder {
	switch n.Type {
	case tree.TypeDir:
		return &dirNode{entry: entry{fsys: f, n: *n, snap: snap}}
	case tree.TypeSymlink:
		return &linkNode{entry: entry{fsys: f, n: *n, snap: snap}}
	}
	return &fileNode{entry: entry{fsys: f, n: *n, snap: snap}}
}

// --- directories ---

// dirNode is a directory of a snapshot. Its blob is loaded (through the
// tree cache) when it is first looked into.
type dirNode struct {
	entry
	push pusher // small files pushed into the kernel's cache (push.go)
}

var (
	_ = (fs.NodeLookuper)((*dirNode)(nil))
	_ = (fs.NodeOpendirHandler)((*dirNode)(nil))
	_ = (fs.NodeGetattrer)((*dirNode)(nil))
	_ = (fs.NodeGetxattrer)((*dirNode)(nil))
	_ = (fs.NodeListxattrer)((*dirNode)(nil))
	_ = (fs.NodeStatfser)((*dirNode)(nil))
)

func (d *dirNode) load(ctx context.Context) (*tree.Dir, error) {
	return d.fsys.repo.LoadDir(ctx, d.n.Subtree)
}

// find returns the entry of d whose local name (engine.LocalName) is
// name, a name of one piece; ok is false if d has none.
func (f *FS) find(ctx context.Context, d *tree.Dir, name string) (*tree.Node, bool, error) {
	seg, dirBesideFile, err := keymap.SegmentFromLocal(name)
	if err != nil || keymap.LocalName(seg, dirBesideFile) != name {
		return nil, false, nil // not a name this mount shows
	}
	if dirBesideFile {
		dir, ok, err := f.repo.Lookup(ctx, d, seg+"/")
		if !ok || err != nil {
			return nil, false, err
		}
		if _, ok, err := f.repo.Lookup(ctx, d, seg); !ok || err != nil {
			return nil, false, err // no file beside it: the name would be plain
		}
		return dir, true, nil
	}
	if n, ok, err := f.repo.Lookup(ctx, d, seg); ok || err != nil {
		return n, ok, err
	}
	return f.repo.Lookup(ctx, d, seg+"/")
}

// localName is the local name of entry n of d: one name, or for a
// segment longer than NAME_MAX its pieces joined by "/" (see pieceDir).
func (f *FS) localName(ctx context.Context, d *tree.Dir, n *tree.Node) (string, error) {
	beside := false
	if n.Type == tree.TypeDir {
		_, other, err := f.repo.Lookup(ctx, d, n.Name)
		if err != nil {
			return "", err
		}
		beside = other
	}
	return keymap.LocalName(n.Name, beside), nil
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d.touch()
	if strings.HasSuffix(name, pieceSuffix) {
		return d.lookupPiece(ctx, &d.Inode, "", name, out)
	}
	dir, err := d.load(ctx)
	if err != nil {
		return nil, d.fsys.errno("read directory", d.Path(nil), err)
	}
	n, ok, err := d.fsys.find(ctx, dir, name)
	if err != nil {
		return nil, d.fsys.errno("lookup", d.Path(nil)+"/"+name, err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	return d.child(ctx, &d.Inode, name, n, out, 0), 0
}

// child returns the inode of entry n of d, named name in parent (d, or
// one of d's piece folders), and fills out. pos is n's position in d
// counting from 1, if known (0 if not). The node the kernel has for it,
// if any, is returned as it is (go-fuse would keep it anyway, and a new
// one would then be counted in the node bound but never forgotten: a
// listing of a folder after a lookup in it).
func (d *dirNode) child(ctx context.Context, parent *fs.Inode, name string, n *tree.Node, out *fuse.EntryOut, pos uint64) *fs.Inode {
	ino := childIno(d.StableAttr().Ino, n.SortKey())
	fillAttr(withSnapTime(n, d.snap), ino, &out.Attr)
	if old := parent.GetChild(name); old != nil && old.StableAttr().Ino == ino {
		return d.fsys.track(old, nil)
	}
	node := d.fsys.newNode(n, d.snap)
	if fn, ok := node.(*fileNode); ok && parent == &d.Inode {
		fn.dir = d
		fn.pos.Store(pos)
	}
	return d.fsys.track(parent.NewInode(ctx, node, fs.StableAttr{Mode: stableMode(n.Type), Ino: ino}), node)
}

func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	d.touch()
	d.fsys.flushInodes()
	dir, err := d.load(ctx)
	if err != nil {
		return nil, 0, d.fsys.errno("read directory", d.Path(nil), err)
	}
	return &dirHandle{d: d, dir: dir}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR, 0
}

// dirHandle lists a directory with the engine's iterator, which loads
// pages as it reaches them. Offsets are positions: 1 and 2 are "." and
// "..", 2+i+1 follows entry i. A seek starts a new iterator at the page
// holding its entry (found by the entry counts of the references)
// without loading the pages before it.
type dirHandle struct {
	d   *dirNode
	dir *tree.Dir

	pos   uint64     // entries produced (including "." and "..")
	it    *tree.Iter // nil until the first entry, and after an error
	next  uint64     // the index of the entry it returns next
	last  *tree.Node // the entry last produced
	small smallFiles // small files listed, fetched ahead at the end
}

var (
	_ = (fs.FileReaddirenter)((*dirHandle)(nil))
	_ = (fs.FileSeekdirer)((*dirHandle)(nil))
	_ = (fs.FileLookuper)((*dirHandle)(nil))
	_ = (fs.FileReleasedirer)((*dirHandle)(nil))
)

// entry returns entry i (counting from 0); ok is false past the end.
func (h *dirHandle) entry(ctx context.Context, i uint64) (*tree.Node, bool, error) {
	if h.it == nil || i != h.next {
		if err := h.seek(ctx, i); err != nil {
			return nil, false, err
		}
	}
	n, ok, err := h.it.Next(ctx)
	if err != nil {
		h.it = nil
		return nil, false, err
	}
	if ok {
		h.next++
	}
	return n, ok, nil
}

// seek sets a new iterator before entry i.
func (h *dirHandle) seek(ctx context.Context, i uint64) error {
	h.it = h.d.fsys.repo.Iter(h.dir)
	if err := h.it.SeekPos(ctx, i); err != nil {
		h.it = nil
		return err
	}
	h.next = min(i, h.dir.Stats.Entries)
	return nil
}

// dotEntry is a listing's entry at position pos (from 1) when that is
// "." (the folder n) or ".." (its parent); nil past them, where the
// folder's own entries start at position 3.
func dotEntry(pos uint64, n *fs.Inode) *fuse.DirEntry {
	switch pos {
	case 1:
		return &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.StableAttr().Ino, Off: 1}
	case 2:
		return &fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno(n), Off: 2}
	}
	return nil
}

// parentIno is the inode number of n's parent, as ".." shows it: n's
// own at the root of the mount (as on any file system's root).
func parentIno(n *fs.Inode) uint64 {
	if _, p := n.Parent(); p != nil {
		return p.StableAttr().Ino
	}
	return n.StableAttr().Ino
}

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	// Not cut short by an interrupt (a signal to the lister): with an
	// entry failed by the cancelled context in the middle of a batch,
	// listings under load lost entries (TestLazyLoads listed 19,734 of
	// 20,000 in 1 of ~10 runs under -race on a loaded machine; 0 of 25
	// since). The kernel drops a reply it no longer waits for.
	ctx = context.WithoutCancel(ctx)
	ino := h.d.StableAttr().Ino
	for {
		h.pos++
		if e := dotEntry(h.pos, &h.d.Inode); e != nil {
			return e, 0
		}
		n, ok, err := h.entry(ctx, h.pos-3)
		if err != nil {
			h.pos--
			return nil, h.d.fsys.errno("list", h.d.Path(nil), err)
		}
		if !ok {
			h.pos--
			if h.small.fetch(h.d.fsys) {
				h.d.pushListed()
			}
			return nil, 0
		}
		h.small.add(h.d.fsys, n)
		name, err := h.d.fsys.localName(ctx, h.dir, n)
		if err != nil {
			h.pos--
			return nil, h.d.fsys.errno("list", h.d.Path(nil), err)
		}
		first, _, split := strings.Cut(name, "/")
		if !split {
			h.last = n
			return &fuse.DirEntry{Name: name, Mode: stableMode(n.Type), Ino: childIno(ino, n.SortKey()), Off: h.pos}, 0
		}
		// A long name: the folder of its first piece, listed once, at
		// the first entry in it.
		var firstKey string
		err = h.d.fsys.withPrefix(ctx, h.dir, first+"/", func(e *tree.Node, _ string) bool {
			firstKey = e.SortKey()
			return false
		})
		if err != nil {
			h.pos--
			return nil, h.d.fsys.errno("list", h.d.Path(nil), err)
		}
		if firstKey == n.SortKey() {
			h.last = nil
			return &fuse.DirEntry{Name: first, Mode: syscall.S_IFDIR, Ino: pieceIno(ino, first+"/"), Off: h.pos}, 0
		}
	}
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos, h.last = off, nil
	return 0
}

// Lookup serves the lookups of READDIRPLUS from the entry just listed.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	h.d.touch()
	if n := h.last; n != nil {
		if ln, err := h.d.fsys.localName(ctx, h.dir, n); err == nil && ln == name {
			pos := h.pos - 2 // entry h.pos-3, counting from 1
			if old := h.d.GetChild(name); old != nil {
				// go-fuse keeps the node it has: it learns where it is.
				if fn, ok := old.Operations().(*fileNode); ok {
					fn.pos.CompareAndSwap(0, pos)
				}
			}
			return h.d.child(ctx, &h.d.Inode, name, n, out, pos), 0
		}
	}
	return h.d.Lookup(ctx, name, out)
}

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

// --- pieces of long names ---

// pieceSuffix ends every piece of a long local name but the last.
const pieceSuffix = "%+"

// pieceDir is a folder that exists only in the mount. A segment longer
// than NAME_MAX has a local name of several pieces nested as folders,
// "AAA…%+/BBB…%+/CCC" (engine.LocalName): looking up "AAA…%+" in the
// directory gives the pieceDir of prefix "AAA…%+/", whose entry is
// "BBB…%+", whose entry is the real file or directory "CCC". A pieceDir
// lists the next pieces of every entry of its directory whose local name
// starts with its prefix (usually one). Its inode number derives from the
// directory's and the prefix, its attributes from the directory's.
type pieceDir struct {
	fs.Inode
	slot
	noXattrs
	owner  *dirNode
	prefix string
}

var (
	_ = (fs.NodeLookuper)((*pieceDir)(nil))
	_ = (fs.NodeReaddirer)((*pieceDir)(nil))
	_ = (fs.NodeGetattrer)((*pieceDir)(nil))
	_ = (fs.NodeStatfser)((*pieceDir)(nil))
	_ = (fs.NodeGetxattrer)((*pieceDir)(nil))
)

// withPrefix calls fn with each entry of d whose local name starts with
// prefix (pieces, each ending in "%+/"), and that local name, in sort-key
// order, until fn returns false. It reads only the entries whose names
// start with the prefix's bytes unescaped: pieces are never cut inside an
// escape, and a name that is not escaped holds no "%25" or "%00".
func (f *FS) withPrefix(ctx context.Context, d *tree.Dir, prefix string, fn func(n *tree.Node, local string) bool) error {
	sp := strings.ReplaceAll(prefix, pieceSuffix+"/", "")
	sp = strings.NewReplacer("%25", "%", "%00", "\x00").Replace(sp)
	it := f.repo.Iter(d)
	if _, _, err := it.Seek(ctx, sp); err != nil {
		return err
	}
	for {
		n, ok, err := it.Next(ctx)
		if !ok || err != nil {
			return err
		}
		if !strings.HasPrefix(n.Name, sp) {
			return nil
		}
		local, err := f.localName(ctx, d, n)
		if err != nil {
			return err
		}
		if strings.HasPrefix(local, prefix) && !fn(n, local) {
			return nil
		}
	}
}

// lookupPiece looks up name in the folder of prefix ("" for d itself, where
// only pieces are looked up here): the folder of the pieces
// prefix+name+"/", or the entry whose local name is prefix+name. parent
// is that folder's inode.
func (d *dirNode) lookupPiece(ctx context.Context, parent *fs.Inode, prefix, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	path := d.Path(nil) + "/" + prefix + name
	dir, err := d.load(ctx)
	if err != nil {
		return nil, d.fsys.errno("read directory", d.Path(nil), err)
	}
	if strings.HasSuffix(name, pieceSuffix) {
		sub, found := prefix+name+"/", false
		err := d.fsys.withPrefix(ctx, dir, sub, func(*tree.Node, string) bool { found = true; return false })
		if err != nil {
			return nil, d.fsys.errno("lookup", path, err)
		}
		if !found {
			return nil, syscall.ENOENT
		}
		ino := pieceIno(d.StableAttr().Ino, sub)
		fillAttr(d.pieceAttr(), ino, &out.Attr)
		p := &pieceDir{owner: d, prefix: sub}
		return d.fsys.track(parent.NewInode(ctx, p, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), p), 0
	}
	if prefix == "" {
		return nil, syscall.ENOENT
	}
	var n *tree.Node
	err = d.fsys.withPrefix(ctx, dir, prefix, func(e *tree.Node, local string) bool {
		if local == prefix+name {
			n = e
		}
		return n == nil
	})
	if err != nil {
		return nil, d.fsys.errno("lookup", path, err)
	}
	if n == nil {
		return nil, syscall.ENOENT
	}
	return d.child(ctx, parent, name, n, out, 0), 0
}

// pieceAttr is what the folders of pieces in d show: d's owner, mode and
// time.
func (d *dirNode) pieceAttr() *tree.Node {
	return withSnapTime(&tree.Node{Type: tree.TypeDir, Mode: d.n.Mode, MTime: d.n.MTime, UID: d.n.UID, GID: d.n.GID}, d.snap)
}

// OnForget: go-fuse lets the node go.
func (p *pieceDir) OnForget() { p.owner.fsys.forget(p) }

func (p *pieceDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p.touch()
	return p.owner.lookupPiece(ctx, &p.Inode, p.prefix, name, out)
}

func (p *pieceDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	p.touch()
	p.owner.fsys.flushInodes()
	d := p.owner
	dir, err := d.load(ctx)
	if err != nil {
		return nil, d.fsys.errno("read directory", d.Path(nil), err)
	}
	dino := d.StableAttr().Ino
	list := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: p.StableAttr().Ino}, {Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno(&p.Inode)}}
	seen := map[string]bool{}
	err = d.fsys.withPrefix(ctx, dir, p.prefix, func(n *tree.Node, local string) bool {
		name, _, more := strings.Cut(local[len(p.prefix):], "/")
		if seen[name] {
			return true
		}
		seen[name] = true
		if more {
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: pieceIno(dino, p.prefix+name+"/")})
		} else {
			list = append(list, fuse.DirEntry{Name: name, Mode: stableMode(n.Type), Ino: childIno(dino, n.SortKey())})
		}
		return true
	})
	if err != nil {
		return nil, d.fsys.errno("list", d.Path(nil)+"/"+p.prefix, err)
	}
	return fs.NewListDirStream(list), 0
}

func (p *pieceDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(p.owner.pieceAttr(), p.StableAttr().Ino, &out.Attr)
	return 0
}

func (p *pieceDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	p.owner.fsys.statfs(out)
	return 0
}

// --- files ---

// fileNode is a file of a snapshot. Its chunk list is read on the first
// open (or read) and kept with the node; its content is read only when
// read.
//
// When the kernel can (FUSE's no-open support; Mount finds out), Open
// answers ENOSYS once and the kernel then opens every file without
// asking, and sends neither FLUSH (Flush answers ENOSYS too) nor
// RELEASE: reading a small file costs one request instead of four. Reads
// then come without a handle, and go through one reader per node, whose
// read-ahead follows the node's reads.
type fileNode struct {
	entry
	dir    *dirNode      // the directory it is listed in, if not in a piece folder
	pos    atomic.Uint64 // its position in dir counting from 1, once listed
	pushed atomic.Bool   // its content was pushed into the kernel's cache

	mu   sync.Mutex
	file *object.Layout[crypto.ID]
	r    *object.Reader[crypto.ID] // reads without a handle
}

var (
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeReader)((*fileNode)(nil))
	_ = (fs.NodeFlusher)((*fileNode)(nil))
	_ = (fs.NodeGetattrer)((*fileNode)(nil))
	_ = (fs.NodeGetxattrer)((*fileNode)(nil))
	_ = (fs.NodeListxattrer)((*fileNode)(nil))
	_ = (fs.NodeStatfser)((*fileNode)(nil))
)

// layout returns the file's chunks, reading its chunk list once. f.mu
// must be held.
func (f *fileNode) layoutLocked(ctx context.Context) (*object.Layout[crypto.ID], error) {
	if f.file == nil {
		l, err := f.fsys.repo.FileLayout(ctx, &f.n)
		if err != nil {
			return nil, err
		}
		f.file = l
	}
	return f.file, nil
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	f.touch()
	if f.fsys.noOpen.Load() {
		return nil, 0, syscall.ENOSYS // the kernel opens files itself from now on
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.layoutLocked(ctx)
	if err != nil {
		return nil, 0, f.fsys.errno("open", f.Path(nil), err)
	}
	h := &fileHandle{r: object.NewReader(f.fsys.chunks, l, f.fsys.opt.ReadAhead)}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// Read reads through the handle Open made, or, for a file the kernel
// opened itself, through the node's reader.
func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := fh.(*fileHandle); ok {
		return f.read(ctx, h.r, dest, off)
	}
	f.mu.Lock()
	l, err := f.layoutLocked(ctx)
	if err == nil && f.r == nil {
		f.r = object.NewReader(f.fsys.chunks, l, f.fsys.opt.ReadAhead)
	}
	r := f.r
	f.mu.Unlock()
	if err != nil {
		return nil, f.fsys.errno("open", f.Path(nil), err)
	}
	return f.read(ctx, r, dest, off)
}

// Flush answers ENOSYS: there is nothing to flush, and the kernel then
// stops sending FLUSH on every close.
func (f *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

func (f *fileNode) read(ctx context.Context, r *object.Reader[crypto.ID], dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.touch()
	if off == 0 && r.Size() <= f.fsys.small {
		f.fsys.smallReads.Add(1)
		if pos := f.pos.Load(); f.dir != nil && pos != 0 {
			f.dir.smallRead(pos)
		}
	}
	n, err := r.ReadAt(ctx, dest, off)
	if err != nil && n == 0 && off < r.Size() {
		return nil, f.fsys.errno("read", f.Path(nil), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// fileHandle is one open file with its own read-ahead state; fileNode.Read
// reads through it.
type fileHandle struct {
	r *object.Reader[crypto.ID]
}

// --- symlinks ---

type linkNode struct {
	entry
}

var (
	_ = (fs.NodeReadlinker)((*linkNode)(nil))
	_ = (fs.NodeGetattrer)((*linkNode)(nil))
	_ = (fs.NodeGetxattrer)((*linkNode)(nil))
)

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	l.touch()
	return []byte(l.n.Target), 0
}
