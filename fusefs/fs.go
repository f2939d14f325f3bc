// Package fusefs shows snapshots as read-only go-fuse node trees: every
// snapshot of a store under one root (by time, and by source, with
// "latest" links), or one snapshot or subtree. It reads only through the
// engine's API (directories, pages, chunk lists, blobs, ranges of packs
// that the engine opens), reads file content with engine/object through
// a cache.LRU of chunks, and decrypts and decodes nothing itself.
//
// Everything is lazy: a snapshot's tree is read when its folder is first
// looked into, a paged directory loads only the pages a lookup or a
// listing reaches, and opening a file reads no content. Small blobs
// (small files, directories) are read from windows of their pack, so
// that the ones stored beside them come in the same ranged read
// (chunks.go).
package fusefs

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/cache"
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/object"
	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/hanwen/go-fuse/v2/fs"
)

// Repo is what the mount reads through; *engine.Repo implements it. The
// mount walks directories with the engine's own Lookup and Iter, and
// keeps what they decode in its tree cache (SetTreeCache, with the
// mount's loader of their blobs). It reads a
// large blob with LoadBlob, and a small one from a window of its pack
// (Locate, PackSize, LoadPackRange) that the engine opens
// (OpenBlobInPlace), so that its neighbours come with it.
type Repo interface {
	LoadBlob(ctx context.Context, id crypto.ID) ([]byte, error)
	Locate(id crypto.ID) (loc format.BlobLoc, pack crypto.ID, ok bool)
	PackSize(ctx context.Context, k format.BlobKind, pack crypto.ID) (int64, error)
	LoadPackRange(ctx context.Context, k format.BlobKind, pack crypto.ID, off, n int64) ([]byte, error)
	OpenBlobInPlace(sealed []byte, loc format.BlobLoc, pack crypto.ID, scratch []byte) (plain, _ []byte, err error)
	LoadDir(ctx context.Context, id crypto.ID) (*tree.Dir, error)
	Lookup(ctx context.Context, d *tree.Dir, key string) (n *tree.Node, ok bool, err error)
	Iter(d *tree.Dir) *tree.Iter
	FileLayout(ctx context.Context, n *tree.Node) (*object.Layout[crypto.ID], error)
	SetTreeCache(c tree.Cache, load func(ctx context.Context, id crypto.ID) ([]byte, error))
}

var _ Repo = (*engine.Repo)(nil)

// Options tune a mounted tree.
type Options struct {
	// CacheSize bounds the memory of file content, shared by every open
	// file: the windows of packs that small blobs are read from (a
	// sixteenth of it, at most 16 MiB), the garbage that loads leave
	// until it is collected (an eighth, at most 32 MiB), and decrypted
	// chunks, held or being loaded and read ahead (the rest). Default
	// 256 MiB.
	CacheSize int64
	// ReadAhead bounds how far ahead of a sequential reader chunks are
	// fetched, per open file. Default min(32 MiB, CacheSize/4); negative
	// turns read-ahead off.
	ReadAhead int64
	// Parallel bounds the read-ahead loads running at once. Default 4.
	Parallel int
	// MetaCacheSize bounds the decoded directories and pages kept in
	// memory (an estimate; the engine loads them through this cache).
	// An open file's chunk list stays with the file. Default 16 MiB.
	MetaCacheSize int64
	// Refresh is how old the snapshot list of SnapshotsRoot may get
	// before a lookup or listing of its folders reads it again (and the
	// index files added since), if the repo is a Lister. It also bounds
	// how long the kernel keeps those folders' entries. Default 1
	// minute; negative: never.
	Refresh time.Duration
	// MaxInodes bounds the nodes of snapshot trees that the mount lets
	// the kernel keep (inodes.go): past it, the entries of the least
	// recently used are invalidated. Default DefaultMaxInodes; negative:
	// no bound.
	MaxInodes int
	// Log receives the errors the mount turns into EIO. Default: discard.
	Log *log.Logger
}

// Timeout is how long the kernel may cache entries, attributes and
// failed lookups: snapshots never change. The folders of the snapshot
// list, which do, use Options.Refresh.
const Timeout = time.Hour

// DefaultRefresh is how old the snapshot list may get by default.
const DefaultRefresh = time.Minute

// FS is the shared state of a mounted tree: the repo and the caches.
type FS struct {
	repo Repo
	opt  Options

	chunks  *cache.LRU[crypto.ID, []byte] // decrypted chunks by blob id
	windows *object.Windows[packRef]      // sealed windows of packs, for small blobs
	packs   *cache.LRU[packRef, int64]    // pack sizes
	small   int64                         // a blob up to this sealed size is read from a window

	smallReads atomic.Int64 // reads of small files so far
	listReads  atomic.Int64 // smallReads when the last listing ended
	pushed     atomic.Int64 // small files pushed into the kernel's cache (push.go)
	pushing    atomic.Int32 // folders being pushed now
	noPush     atomic.Bool  // push nothing: the kernel cannot take it (or a test of the rest)
	trees      *trees

	baseCtx context.Context // background fetches; cancelled by Close
	cancel  context.CancelFunc

	// noOpen: the kernel reads files without opening them here (Open
	// answers ENOSYS once; see fileNode.Open). Set by Mount.
	noOpen atomic.Bool

	totals atomic.Pointer[totals] // what statfs reports, set with the root
	list   snapshotList           // what SnapshotsRoot shows

	log onceLog // errors turned into EIO

	inodes *inodes // the nodes the kernel keeps; nil: no bound
}

// New returns the shared state of a tree reading through repo, and makes
// repo keep its decoded directories and pages in the tree's cache
// (engine.Repo.SetTreeCache): call it before the repo is in use, and
// give each mount a repo of its own.
func New(repo Repo, opt Options) *FS {
	readDefaults(&opt.CacheSize, &opt.ReadAhead, &opt.Parallel)
	if opt.MetaCacheSize <= 0 {
		opt.MetaCacheSize = 16 << 20
	}
	if opt.Refresh == 0 {
		opt.Refresh = DefaultRefresh
	}
	if opt.Log == nil {
		opt.Log = log.New(io.Discard, "", 0)
	}
	f := &FS{repo: repo, opt: opt}
	f.inodes = boundInodes(opt.MaxInodes)
	f.list.mounted = time.Now().UnixNano()
	f.baseCtx, f.cancel = context.WithCancel(context.Background())
	// CacheSize is split: windows of packs, room for the garbage
	// that loads leave (the sealed bytes of a decompressed blob) until
	// the collector frees it, and the chunks.
	win := min(max(opt.CacheSize/64, 64<<10), 1<<20)
	winBytes := max(2*win, min(opt.CacheSize/16, 16<<20))
	slack := min(opt.CacheSize/8, 32<<20)
	f.small = win / 8
	f.windows = object.NewWindows(winBytes, win, opt.Parallel, f.loadWindow)
	f.chunks = cache.NewBytes(opt.CacheSize-winBytes-slack, opt.Parallel, f.loadChunk)
	f.packs = cache.New[packRef, int64](4096, func(int64) int64 { return 1 }, 1, nil)
	f.trees = &trees{
		fsys:  f,
		dirs:  cache.New[crypto.ID, *tree.Dir](opt.MetaCacheSize/2, dirSize, opt.Parallel, nil),
		pages: cache.New[crypto.ID, []tree.Node](opt.MetaCacheSize/2, nodesSize, opt.Parallel, nil),
	}
	repo.SetTreeCache(f.trees, f.treeBlob)
	return f
}

// Close stops the loads in flight. The repo's tree cache then loads
// without keeping anything.
func (f *FS) Close() {
	f.cancel()
	f.chunks.Close()
	f.windows.Close()
	f.packs.Close()
	f.trees.dirs.Close()
	f.trees.pages.Close()
}

// trees is the mount's tree.Cache: byte-bounded LRUs of decoded
// directories and pages, in which concurrent loads of one blob are
// merged.
type trees struct {
	fsys  *FS
	dirs  *cache.LRU[crypto.ID, *tree.Dir]
	pages *cache.LRU[crypto.ID, []tree.Node]
}

var _ tree.Cache = (*trees)(nil)

// Dir and Page keep what the engine's load decodes; the engine reads
// the blob with treeBlob.
func (t *trees) Dir(ctx context.Context, id crypto.ID, load func(context.Context) (*tree.Dir, error)) (*tree.Dir, error) {
	if t.fsys.baseCtx.Err() != nil {
		return load(ctx) // closed
	}
	return t.dirs.GetWith(ctx, id, load)
}

func (t *trees) Page(ctx context.Context, id crypto.ID, load func(context.Context) ([]tree.Node, error)) ([]tree.Node, error) {
	if t.fsys.baseCtx.Err() != nil {
		return load(ctx) // closed
	}
	return t.pages.GetWith(ctx, id, load)
}

// treeBlob is the engine's loader of the blobs of trees: the way the
// mount reads small blobs, from a window of their tree pack (a folder's
// subfolders and pages were written beside it), or alone once the mount
// is closed.
func (f *FS) treeBlob(ctx context.Context, id crypto.ID) ([]byte, error) {
	if f.baseCtx.Err() != nil {
		return f.repo.LoadBlob(ctx, id)
	}
	return f.loadBlob(ctx, id)
}

// track counts in the node bound the inode go-fuse returned for a
// lookup that made node: node itself, or one go-fuse already had.
func (f *FS) track(in *fs.Inode, node fs.InodeEmbedder) *fs.Inode {
	return f.inodes.track(in, in.Operations() == node, f.baseCtx.Done())
}

// flushInodes sends the evictions of the node bound now: a folder is
// being opened, and no listing of it is in flight yet.
func (f *FS) flushInodes() { f.inodes.opened() }

// forget is called when go-fuse lets node go.
func (f *FS) forget(node fs.InodeEmbedder) { f.inodes.forgotten(node) }

// Stats describe what the caches did.
type Stats struct {
	Chunks, Windows, Dirs, Pages cache.Stats
	// Pushed counts the small files pushed into the kernel's cache
	// ahead of a reader.
	Pushed int64
	// Inodes is how many nodes of snapshot trees the mount holds for
	// the kernel now, and Invalidated how many entries it asked the
	// kernel to drop to keep to Options.MaxInodes.
	Inodes, Invalidated int64
}

// Stats returns the caches' counters.
func (f *FS) Stats() Stats {
	s := Stats{Chunks: f.chunks.Stats(), Windows: f.windows.Stats(), Dirs: f.trees.dirs.Stats(), Pages: f.trees.pages.Stats(),
		Pushed: f.pushed.Load()}
	s.Inodes, s.Invalidated = f.inodes.counts()
	return s
}

// memoryAllowance is what a mount needs besides its caches: the runtime,
// the index, go-fuse's buffers, the nodes the kernel holds.
const memoryAllowance = 32 << 20

// MemoryLimit is the memory a process that only serves this mount should
// keep to (runtime/debug.SetMemoryLimit): the caches' budgets plus a
// fixed allowance. With it, the garbage collector frees the buffers that
// loads leave behind before the heap grows past the caches, instead of
// letting it double.
//
// The nodes the kernel keeps (up to MaxInodes, about 1 KiB each)
// are not added: with them the limit rose by 50 MiB and a mount reading
// 242 MiB of files through a 192 MiB cache peaked at 286 MiB instead of
// staying under the cache + 64 MiB (TestMountMemory). A listing that
// fills the node bound leaves the chunk cache mostly empty, and when
// both are full the collector works harder instead of the heap growing.
func (f *FS) MemoryLimit() int64 {
	return f.opt.CacheSize + f.opt.MetaCacheSize + memoryAllowance
}

// nodeSize estimates the memory of a decoded node.
func nodeSize(n *tree.Node) int64 {
	s := int64(200 + len(n.Name) + len(n.Target) + 40*len(n.Chunks))
	for _, a := range n.Attrs {
		s += int64(32 + len(a.Key) + len(a.Value))
	}
	return s
}

func nodesSize(ns []tree.Node) int64 {
	s := int64(64)
	for i := range ns {
		s += nodeSize(&ns[i])
	}
	return s
}

func dirSize(d *tree.Dir) int64 {
	s := nodesSize(d.Inline) + 128
	for _, p := range d.Pages {
		s += int64(80 + len(p.First))
	}
	return s
}

// errno turns an error at the FUSE edge into an errno, logging the cause
// of an EIO once.
func (f *FS) errno(op, path string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	}
	f.log.print(f.opt.Log, op+" "+path+": "+err.Error())
	return syscall.EIO
}

// readDefaults fills in the content cache's options shared by the
// snapshot and the live mount: CacheSize 256 MiB, ReadAhead min(32 MiB,
// CacheSize/4) (negative: none), Parallel 4.
func readDefaults(cacheSize, readAhead *int64, parallel *int) {
	if *cacheSize <= 0 {
		*cacheSize = 256 << 20
	}
	if *readAhead == 0 {
		*readAhead = min(32<<20, *cacheSize/4)
	}
	if *readAhead < 0 {
		*readAhead = 0
	}
	if *parallel < 1 {
		*parallel = 4
	}
}

// onceLog prints each distinct message once (a failing entry is asked
// for again and again), remembering at most 10,000 of them.
type onceLog struct {
	mu   sync.Mutex
	said map[string]bool
}

func (o *onceLog) print(l *log.Logger, msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.said == nil {
		o.said = map[string]bool{}
	}
	if !o.said[msg] && len(o.said) < 10000 {
		o.said[msg] = true
		l.Print(msg)
	}
}

// childIno derives a stable inode number from the parent's and the
// child's name (its sort key, or a fixed name in the snapshot list), so
// the same path has the same number in every mount.
func childIno(parent uint64, key string) uint64 { return inoHash(parent, 0, key) }

// pieceIno is the stable inode number of the folder that the pieces
// prefix ("AAA…%+/", "AAA…%+/BBB…%+/") of a long name make in the
// directory with inode number parent (see pieceDir). It hashes apart from
// the sort keys of childIno.
func pieceIno(parent uint64, prefix string) uint64 { return inoHash(parent, 1, prefix) }

func inoHash(parent uint64, domain byte, key string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(parent >> (8 * i))
	}
	h.Write(b[:])
	h.Write([]byte{domain})
	h.Write([]byte(key))
	ino := h.Sum64()
	if ino < 2 {
		ino += 2 // 1 is the root
	}
	return ino
}
