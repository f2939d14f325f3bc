package fusefs

import (
	"context"
	"errors"
	"io"
	"log"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/coffer-backup/coffer/cache"
	"github.com/coffer-backup/coffer/engine/keymap"
	"github.com/coffer-backup/coffer/engine/object"
)

// The live mount shows a bucket as it is now (object.LiveTree), with the
// names a snapshot of it has (engine/keymap). A folder is listed, a page
// at a time as the reader reaches it, and a complete listing kept for
// LiveOptions.TTL; a lookup of one name in a folder not listed asks for
// that name alone (LiveTree.Stat) and keeps the answer, found or not,
// as long. File content is read in blocks of LiveBlock bytes through a
// byte-bounded cache.LRU and engine/object's Reader (read-ahead), as
// the snapshot mount reads chunks; a block's key holds the object's
// ETag and every block is read with If-Match on it, so one open file
// never mixes the bytes of two versions: a read that finds the object
// changed fails with ESTALE, and the next lookup sees the new object.
// An archived object that is not restored fails with EREMOTE. The
// user.s3.* attributes are those of a snapshot (live_xattr.go); in a
// tree of versions (--versions) each object has a hidden folder of its
// versions (live_versions.go).

// LiveBlock is the size of the blocks of a live mount's files: what a
// read outside a sequential run fetches (one ranged GET a block it
// covers), small, so that a random read costs little more than its
// bytes. A sequential run's read-ahead fetches many blocks with one GET
// (object.NewRunReader).
const LiveBlock = 256 << 10

// LiveForever is the TTL that keeps listings until unmount.
const LiveForever = time.Duration(-1)

// LiveOptions tune a live mount.
type LiveOptions struct {
	// TTL is how long a listing or a lookup is kept: 0 asks the
	// bucket every time, LiveForever never again.
	TTL time.Duration
	// CacheSize bounds the memory of file blocks. Default 256 MiB.
	CacheSize int64
	// ReadAhead bounds how far ahead of a sequential reader blocks are
	// fetched, per open file. Default min(32 MiB, CacheSize/4);
	// negative turns it off.
	ReadAhead int64
	// Parallel bounds the read-ahead loads running at once. Default 4.
	Parallel int
	// Name tells blocks of one tree from another's (the bucket).
	Name string
	// MaxInodes bounds the nodes the mount lets the kernel keep, as
	// Options.MaxInodes does for snapshots (live_inodes.go). Default
	// DefaultMaxInodes; negative: no bound.
	MaxInodes int
	// DiskDir is the folder of the blocks kept on disk (live_disk.go);
	// "" keeps them in memory only.
	DiskDir string
	// DiskSize bounds the blocks kept on disk. Default 1 GiB.
	DiskSize int64
	// Log receives the errors the mount turns into EIO or ESTALE.
	Log *log.Logger
}

// liveBlock is the cache key of a block: which tree, which object at
// which ETag, which bytes.
type liveBlock struct {
	tree   string
	o      object.LiveObject
	off, n int64
}

// LiveFS is the shared state of a live mount.
type LiveFS struct {
	t      object.LiveTree
	opt    LiveOptions
	blocks *cache.LRU[liveBlock, []byte]
	disk   *cache.Disk[liveBlock] // nil: blocks are kept in memory only
	fills  chan struct{}          // bounds the requests of whole-object fills
	start  time.Time

	log onceLog // errors turned into EIO or ESTALE

	inodes *inodes         // the nodes the kernel keeps; nil: no bound
	ctx    context.Context // ends with Close (stop)
	done   <-chan struct{} // ctx.Done()
	stop   context.CancelFunc
}

// NewLive returns the state of a live mount of t.
func NewLive(t object.LiveTree, opt LiveOptions) *LiveFS {
	readDefaults(&opt.CacheSize, &opt.ReadAhead, &opt.Parallel)
	if opt.Log == nil {
		opt.Log = log.New(io.Discard, "", 0)
	}
	f := &LiveFS{t: t, opt: opt, start: time.Now(), inodes: boundInodes(opt.MaxInodes)}
	ctx, stop := context.WithCancel(context.Background())
	f.ctx, f.done, f.stop = ctx, ctx.Done(), stop
	f.openDisk()
	f.blocks = cache.NewBytes(opt.CacheSize, opt.Parallel, f.loadBlock)
	return f
}

// Close stops the loads in flight, and the sending of evictions, and
// gives the disk cache's space back.
func (f *LiveFS) Close() {
	f.blocks.Close()
	f.stop()
	if f.disk != nil {
		f.disk.Close()
	}
}

// MemoryLimit is a heap bound for the mount's process: the block cache
// and 64 MiB.
func (f *LiveFS) MemoryLimit() int64 { return f.opt.CacheSize + 64<<20 }

// Root returns the root folder of the tree, to Mount.
func (f *LiveFS) Root() Root { return &liveDir{fsys: f} }

// kernelTimeout is how long the kernel may keep entries, attributes and
// failed lookups: the TTL.
func (f *LiveFS) kernelTimeout() time.Duration {
	if f.opt.TTL < 0 {
		return Timeout
	}
	return f.opt.TTL
}

// fresh says whether something fetched at t may still be used.
func (f *LiveFS) fresh(t time.Time) bool {
	switch {
	case t.IsZero():
		return false
	case f.opt.TTL < 0:
		return true
	}
	return time.Since(t) < f.opt.TTL
}

func (f *LiveFS) errno(op, path string, err error) syscall.Errno {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return syscall.EINTR
	}
	e := syscall.EIO
	switch {
	case errors.Is(err, object.ErrChanged):
		e = syscall.ESTALE
	case errors.Is(err, object.ErrNotRestored):
		// As s3fs answers: the bytes are elsewhere (the log line says
		// how to restore them).
		e = syscall.EREMOTE
	}
	f.log.print(f.opt.Log, op+" "+path+": "+err.Error())
	return e
}

// liveName is one entry of a listed folder under its local name;
// versions says it is the folder of the versions of object e.
type liveName struct {
	local    string
	e        object.LiveEntry
	versions bool
}

// lookupAnswer is a kept answer to a lookup of one name: n nil if it is
// not there.
type lookupAnswer struct {
	n  *liveName
	at time.Time
}

// liveDir is a folder: the level under prefix ("" or ending in "/").
type liveDir struct {
	fs.Inode
	slot   // its place among the nodes the kernel keeps (live_inodes.go)
	fsys   *LiveFS
	prefix string

	noXattrs

	mu      sync.Mutex
	listed  []liveName // the last listing, in key order
	byName  map[string]liveName
	at      time.Time // when it was listed
	lookups map[string]lookupAnswer
}

var (
	_ = (fs.NodeLookuper)((*liveDir)(nil))
	_ = (fs.NodeOpendirHandler)((*liveDir)(nil))
	_ = (fs.NodeGetattrer)((*liveDir)(nil))
	_ = (fs.NodeGetxattrer)((*liveDir)(nil))
)

// localName names entry e as a snapshot does; files holds the objects
// listed so far in the folder (an object sorts before the folder of its
// name, so it is there when the folder comes): a folder beside an object
// of its name gets "%~". Names longer than NAME_MAX (which a snapshot
// nests as pieces) are left out, with a log line: ok is false.
func (d *liveDir) localName(e object.LiveEntry, files map[string]bool) (string, bool) {
	if !e.Dir && !e.Deleted {
		files[e.Name] = true
	}
	local := keymap.LocalName(e.Name, e.Dir && files[e.Name])
	if strings.Contains(local, "/") {
		d.fsys.errno("list", d.prefix, errors.New("a key segment longer than 255 bytes is not shown by a live mount: "+e.Name[:64]+"…"))
		return "", false
	}
	return local, true
}

// cached returns the folder's listing if it is fresh.
func (d *liveDir) cached() ([]liveName, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.listed, d.fsys.fresh(d.at)
}

// keep keeps a complete listing, which answers lookups from now on.
func (d *liveDir) keep(names []liveName) {
	byName := make(map[string]liveName, len(names))
	for _, n := range names {
		byName[n.local] = n
	}
	d.mu.Lock()
	d.listed, d.byName, d.at, d.lookups = names, byName, time.Now(), nil
	d.mu.Unlock()
}

// list lists the folder, every page, unless its listing is fresh.
func (d *liveDir) list(ctx context.Context) ([]liveName, error) {
	if names, ok := d.cached(); ok {
		return names, nil
	}
	h := &liveDirHandle{d: d, files: map[string]bool{}}
	for !h.done {
		if err := h.page(ctx); err != nil {
			return nil, err
		}
	}
	return h.names, nil
}

// forget drops what the folder keeps about name (its object changed).
func (d *liveDir) forget(name string) {
	d.mu.Lock()
	d.at = time.Time{}
	delete(d.lookups, name)
	d.mu.Unlock()
}

// find answers a lookup of name from the listing or a kept answer if
// fresh, else with a Stat of that name alone.
func (d *liveDir) find(ctx context.Context, name string) (*liveName, error) {
	d.mu.Lock()
	if d.fsys.fresh(d.at) {
		n, ok := d.byName[name]
		d.mu.Unlock()
		if !ok {
			return nil, nil
		}
		return &n, nil
	}
	if a, ok := d.lookups[name]; ok && d.fsys.fresh(a.at) {
		d.mu.Unlock()
		return a.n, nil
	}
	d.mu.Unlock()
	e, err := d.stat(ctx, name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.lookups == nil {
		d.lookups = map[string]lookupAnswer{}
	}
	if len(d.lookups) > 4096 {
		clear(d.lookups)
	}
	d.lookups[name] = lookupAnswer{n: e, at: time.Now()}
	d.mu.Unlock()
	return e, nil
}

// stat maps a local name back to its key segment and asks for it.
func (d *liveDir) stat(ctx context.Context, name string) (*liveName, error) {
	of, versions := versionsOf(name)
	if versions {
		name = of
	}
	seg, beside, err := keymap.SegmentFromLocal(name)
	if err != nil || keymap.LocalName(seg, beside) != name || versions && beside {
		return nil, nil // no key has this name
	}
	obj, dir, err := d.fsys.t.Stat(ctx, d.prefix, seg)
	switch {
	case err != nil:
		return nil, err
	case versions:
		if obj != nil && len(obj.Versions) > 0 {
			return &liveName{local: versionsName(name), e: *obj, versions: true}, nil
		}
	case beside:
		if obj != nil && !obj.Deleted && dir {
			return &liveName{local: name, e: object.LiveEntry{Name: seg, Dir: true}}, nil
		}
	case obj != nil && !obj.Deleted:
		return &liveName{local: name, e: *obj}, nil
	case dir:
		return &liveName{local: name, e: object.LiveEntry{Name: seg, Dir: true}}, nil
	}
	return nil, nil
}

func (d *liveDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d.touch()
	n, err := d.find(ctx, name)
	if err != nil {
		return nil, d.fsys.errno("lookup", d.prefix+name, err)
	}
	if n == nil {
		return nil, syscall.ENOENT
	}
	return d.child(ctx, *n, &out.Attr), 0
}

// child returns the node of entry ln under its local name, the one the
// kernel has if it has one (brought up to date), and fills its
// attributes; the node bound counts it.
func (d *liveDir) child(ctx context.Context, ln liveName, a *fuse.Attr) *fs.Inode {
	ch, fresh := d.node(ctx, ln, a)
	return d.fsys.inodes.track(ch, fresh, d.fsys.done)
}

// node returns the node of entry ln, and whether it is new.
func (d *liveDir) node(ctx context.Context, ln liveName, a *fuse.Attr) (*fs.Inode, bool) {
	name, e := ln.local, ln.e
	if ch := d.GetChild(name); ch != nil {
		switch n := ch.Operations().(type) {
		case *liveFile:
			if !e.Dir && !ln.versions {
				n.set(e)
				n.fill(a)
				return ch, false
			}
		case *liveDir:
			if e.Dir {
				n.fill(a)
				return ch, false
			}
		case *liveVersions:
			if ln.versions {
				n.set(e)
				n.fill(a)
				return ch, false
			}
		}
	}
	parent := d.StableAttr().Ino
	if ln.versions {
		n := &liveVersions{fsys: d.fsys, dir: d, name: name, key: d.prefix + e.Name}
		n.set(e)
		n.fill(a)
		return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoHash(parent, 4, name)}), true
	}
	if e.Dir {
		n := &liveDir{fsys: d.fsys, prefix: d.prefix + e.Name + "/"}
		n.fill(a)
		return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoHash(parent, 2, name)}), true
	}
	n := &liveFile{fsys: d.fsys, dir: d, name: name, key: d.prefix + e.Name}
	n.set(e)
	n.fill(a)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoHash(parent, 3, name)}), true
}

// OpendirHandle lists the folder as it is read: a page is fetched when
// the reader reaches it, so a huge folder starts listing at once. A
// fresh listing is served from memory.
func (d *liveDir) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	d.touch()
	d.fsys.inodes.opened()
	h := &liveDirHandle{d: d, files: map[string]bool{}}
	if names, ok := d.cached(); ok {
		h.names, h.done = names, true
	}
	return h, 0, 0
}

// liveDirHandle is one listing of a folder. Offsets are positions: 1 and
// 2 are "." and "..", 2+i+1 follows entry i; the entries fetched so far
// stay, so a seek back costs nothing. A listing read to its end is kept
// by the folder.
type liveDirHandle struct {
	d     *liveDir
	names []liveName // the entries fetched so far
	token string
	done  bool
	files map[string]bool
	pos   uint64
	last  *liveName // the entry last produced, for READDIRPLUS
}

var (
	_ = (fs.FileReaddirenter)((*liveDirHandle)(nil))
	_ = (fs.FileSeekdirer)((*liveDirHandle)(nil))
	_ = (fs.FileLookuper)((*liveDirHandle)(nil))
)

// page fetches the next page of the listing.
func (h *liveDirHandle) page(ctx context.Context) error {
	pg, err := h.d.fsys.t.List(ctx, h.d.prefix, h.token)
	if err != nil {
		return err
	}
	for _, e := range pg.Entries {
		local, ok := h.d.localName(e, h.files)
		if !ok {
			continue
		}
		if !e.Deleted {
			h.names = append(h.names, liveName{local: local, e: e})
		}
		if len(e.Versions) > 0 && !e.Dir {
			if v := versionsName(local); len(v) <= keymap.NameMax {
				h.names = append(h.names, liveName{local: v, e: e, versions: true})
			}
		}
	}
	h.token, h.done = pg.Next, pg.Next == ""
	if h.done {
		h.d.keep(h.names)
	}
	return nil
}

func (h *liveDirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	// Not cut short by an interrupt: the kernel drops a reply it no
	// longer waits for (see dirHandle.Readdirent).
	ctx = context.WithoutCancel(ctx)
	ino := h.d.StableAttr().Ino
	h.pos++
	if e := dotEntry(h.pos, &h.d.Inode); e != nil {
		return e, 0
	}
	i := int(h.pos - 3)
	for i >= len(h.names) && !h.done {
		if err := h.page(ctx); err != nil {
			h.pos--
			return nil, h.d.fsys.errno("list", h.d.prefix, err)
		}
	}
	if i >= len(h.names) {
		h.pos--
		h.last = nil
		return nil, 0
	}
	n := &h.names[i]
	h.last = n
	mode, dom := uint32(syscall.S_IFREG), byte(3)
	switch {
	case n.versions:
		mode, dom = syscall.S_IFDIR, 4
	case n.e.Dir:
		mode, dom = syscall.S_IFDIR, 2
	}
	return &fuse.DirEntry{Name: n.local, Mode: mode, Ino: inoHash(ino, dom, n.local), Off: h.pos}, 0
}

func (h *liveDirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos, h.last = off, nil
	return 0
}

// Lookup serves the lookups of READDIRPLUS from the entry just listed,
// before the listing is complete and kept.
func (h *liveDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n := h.last; n != nil && n.local == name {
		return h.d.child(ctx, *n, &out.Attr), 0
	}
	return h.d.Lookup(ctx, name, out)
}

func (d *liveDir) liveFS() *LiveFS { return d.fsys }

// fill gives a folder the mount's start time: S3 prefixes have none.
func (d *liveDir) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Nlink = 1
	a.Blksize = blksize
	t := d.fsys.start
	a.Mtime, a.Mtimensec = uint64(t.Unix()), uint32(t.Nanosecond())
	a.Atime, a.Atimensec, a.Ctime, a.Ctimensec = a.Mtime, a.Mtimensec, a.Mtime, a.Mtimensec
}

func (d *liveDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	return 0
}

// liveFile is an object; e is what the last listing or lookup said.
type liveFile struct {
	fs.Inode
	slot // its place among the nodes the kernel keeps (live_inodes.go)
	fsys *LiveFS
	dir  *liveDir
	name string // its local name in dir
	key  string // below the tree's prefix

	mu sync.Mutex
	e  object.LiveEntry
	// The attributes last fetched, of which object, when.
	attrs   []object.LiveAttr
	attrsOf object.LiveObject
	attrsAt time.Time
	// What the kernel's cached pages of the file may hold (Open): the
	// version it was last told to drop them for, whether pages of
	// another may have come in since, and the handles open by version.
	pagesOf object.LiveObject
	mixed   bool
	opens   map[object.LiveObject]int
}

var (
	_ = (fs.NodeGetxattrer)((*liveFile)(nil))
	_ = (fs.NodeListxattrer)((*liveFile)(nil))
	_ = (fs.NodeOpener)((*liveFile)(nil))
	_ = (fs.NodeReader)((*liveFile)(nil))
	_ = (fs.NodeGetattrer)((*liveFile)(nil))
)

func (f *liveFile) set(e object.LiveEntry) {
	f.mu.Lock()
	f.e = e
	f.mu.Unlock()
}

func (f *liveFile) entry() object.LiveEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.e
}

func (f *liveFile) fill(a *fuse.Attr) {
	e := f.entry()
	a.Mode = syscall.S_IFREG | 0o644
	a.Size = uint64(e.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = blksize
	a.Nlink = 1
	sec, nsec := uint64(max(e.MTime.Unix(), 0)), uint32(e.MTime.Nanosecond())
	a.Mtime, a.Mtimensec = sec, nsec
	a.Atime, a.Atimensec, a.Ctime, a.Ctimensec = sec, nsec, sec, nsec
}

func (f *liveFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*liveHandle); ok {
		// An open file keeps the size of the version it reads.
		f.fill(&out.Attr)
		out.Size, out.Blocks = uint64(h.r.Size()), (uint64(h.r.Size())+511)/512
		return 0
	}
	f.fill(&out.Attr)
	return 0
}

// liveHandle reads one version of an object: its blocks are keyed, and
// read, with the ETag it had when it was opened.
type liveHandle struct {
	r    *object.Reader[liveBlock]
	file *liveFile
	o    object.LiveObject

	mu       sync.Mutex
	released bool
	stopFill context.CancelFunc // the whole-object fill, if one runs
}

var _ = (fs.FileReleaser)((*liveHandle)(nil))

// Release stops the fill of the object to disk, if one runs: nobody
// reads it any more through this handle.
func (h *liveHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	if !h.released {
		h.file.closed(h.o)
	}
	h.released = true
	if h.stopFill != nil {
		h.stopFill()
	}
	h.mu.Unlock()
	return 0
}

// opened counts a handle of version o, and says whether the kernel may
// keep its cached pages of the file: only if they can be of o alone (no
// handle of another version open, and none since the kernel last
// dropped them for o).
func (f *liveFile) opened(o object.LiveObject) (keep bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	other := false
	for v, n := range f.opens {
		other = other || v != o && n > 0
	}
	// (Without an ETag or version id, nothing tells versions apart.)
	keep = f.pagesOf == o && !f.mixed && !other && (o.ETag != "" || o.VersionID != "")
	if !keep {
		// The kernel drops them now; a handle of another version still
		// open may read some in.
		f.pagesOf, f.mixed = o, other
	}
	if f.opens == nil {
		f.opens = map[object.LiveObject]int{}
	}
	f.opens[o]++
	return keep
}

// closed counts a handle of version o gone.
func (f *liveFile) closed(o object.LiveObject) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opens[o]--; f.opens[o] <= 0 {
		delete(f.opens, o)
	}
}

// Open pins the object's version, as the last lookup saw it. The kernel
// keeps its cached pages of the file (FOPEN_KEEP_CACHE) only if they
// can be of that version alone (liveFile.opened); otherwise it drops
// them.
func (f *liveFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	f.touch() // recently used: the node bound evicts it last
	e := f.entry()
	o := e.Object(f.key)
	var pieces []object.Piece[liveBlock]
	for off := int64(0); off < e.Size; off += LiveBlock {
		n := min(LiveBlock, e.Size-off)
		pieces = append(pieces, object.Piece[liveBlock]{
			Key: liveBlock{tree: f.fsys.opt.Name, o: o, off: off, n: n}, Size: n})
	}
	r := object.NewRunReader(f.fsys.blocks, object.NewLayout(pieces), f.fsys.opt.ReadAhead, f.fsys.runLoader(e.Size))
	h := &liveHandle{r: r, file: f, o: o}
	if d := f.fsys.disk; d != nil {
		r.ReadBeside(d.ReadAt)
	}
	f.fsys.fillWhenRandom(h, pieces)
	var fl uint32
	if f.opened(o) {
		fl = fuse.FOPEN_KEEP_CACHE
	}
	return h, fl, 0
}

func (f *liveFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*liveHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	f.touch()
	n, err := h.r.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		if errors.Is(err, object.ErrChanged) {
			// The next lookup asks the bucket again.
			f.dir.forget(f.name)
		}
		return nil, f.fsys.errno("read", f.key, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
