package backup

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"
	"github.com/coffer-backup/coffer/internal/bufpool"
	"github.com/coffer-backup/coffer/internal/pipeline"

	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// BackupOptions tune a backup.
type Options struct {
	Concurrency int // files read at once; default: the CPU count
	Uploaders   int // packs uploaded at once; default: what the storage asks for
	// Windows bounds the chunker windows (Chunker.Max bytes each, 8 MiB
	// by default) in use at once: a file worker takes one before it
	// reads a file, holding nothing else, and gives it back after.
	// Default: one per file worker. Files of at most Chunker.Min bytes
	// need none: they are one chunk, read into a recycled buffer of Chunker.Min+1 bytes.
	Windows int
	Tags    []string
	Host    string
	// Time, if set, is the snapshot's time instead of the backup's start
	// (to import old backups, or to test retention policies).
	Time time.Time
	// Parent overrides the automatic choice of the newest snapshot of the
	// same source; NoParent reads every file.
	Parent   *crypto.ID
	NoParent bool
	// Warn receives entries that were left out and why.
	Warn func(path string, err error)
	// Progress, if set, is updated as the backup runs.
	Progress *engine.Progress
	// Lease tunes the marker the backup keeps under locks/ while it runs
	// (docs/FORMAT.md §9): a prune deletes nothing it may reference.
	Lease lease.Options
}

// BackupResult reports a finished backup.
type Result struct {
	Snapshot *engine.Snapshot
	Parent   *engine.Snapshot
}

// fileJob is one walk item on its way to the assembler; a changed file's
// worker fills chunks and list, an unchanged file has its parent's.
type fileJob struct {
	item   *Item
	chunks []tree.Chunk
	list   crypto.ID
}

// Backup walks src and writes a snapshot of it. The snapshot object is
// written only after every pack and index file it needs is durable.
func Run(ctx context.Context, r *engine.Repo, src Source, opt Options) (*Result, error) {
	start := time.Now()
	if opt.Concurrency < 1 {
		opt.Concurrency = runtime.NumCPU()
	}
	if opt.Windows < 1 || opt.Windows > opt.Concurrency {
		opt.Windows = opt.Concurrency
	}
	if opt.Uploaders < 1 {
		opt.Uploaders = store.Uploads(r.Storage())
	}
	if opt.Host == "" {
		opt.Host, _ = os.Hostname()
	}
	if opt.Warn == nil {
		opt.Warn = func(string, error) {}
	}
	if opt.Progress == nil {
		opt.Progress = &engine.Progress{}
	}
	// The marker goes first, before the index is read: a prune that
	// stops indexing a pack after this point waits for it (FORMAT.md §9).
	if opt.Lease.Command == "" {
		opt.Lease.Command = "backup " + src.URI()
	}
	mark, err := lease.Mark(ctx, r.Storage(), r.Keys(), lease.KindBackup, opt.Lease)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer mark.Release(context.WithoutCancel(ctx))
	if err := r.LoadIndex(ctx); err != nil {
		return nil, err
	}
	var parent *engine.Snapshot
	switch {
	case opt.NoParent:
	case opt.Parent != nil:
		parent, err = r.LoadSnapshot(ctx, *opt.Parent)
	default:
		latest, ok, lerr := r.LatestOf(ctx, src.URI())
		if ok { // else this is the source's first backup
			parent = latest
		}
		err = lerr
	}
	if err != nil {
		return nil, fmt.Errorf("backup: parent snapshot: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &backup{
		r: r, ctx: ctx, src: src, opt: opt,
		saver: r.NewSaver(ctx, opt.Uploaders),
	}
	if parent != nil {
		b.pcur = &parentCursor{r: r, root: parent.Root}
	}
	root, rootNode, stats, err := b.run()
	if err != nil {
		b.saver.Abort()
		return nil, err
	}
	// Durability barrier: packs, then the index naming them, then the
	// snapshot naming the root.
	if err := b.saver.Finish(); err != nil {
		return nil, err
	}
	snapTime := start
	if !opt.Time.IsZero() {
		snapTime = opt.Time
	}
	sn := &engine.Snapshot{
		Time: snapTime.UTC(), Source: src.URI(), Host: opt.Host, Tags: opt.Tags, Root: root,
		RootMeta: engine.RootMeta{Mode: rootNode.Mode, MTime: rootNode.MTime, UID: rootNode.UID, GID: rootNode.GID},
		Stats: engine.SnapshotStats{
			Files: stats.Files, Dirs: stats.Dirs, Bytes: stats.Bytes,
			ReadBytes: uint64(b.readBytes.Load()), Skipped: uint64(b.skipped.Load()),
			Unchanged: uint64(b.unchanged.Load()),
			NewBlobs:  uint64(b.saver.NewBlobs.Load()), NewBytes: uint64(b.saver.NewRawBytes.Load()),
			StoredBytes: uint64(b.saver.StoredBytes.Load()),
		},
		Partial:        b.skipped.Load() > 0,
		SkippedEntries: b.skippedList,
	}
	if ex, ok := src.(Excluder); ok {
		c := ex.ExcludedCounts()
		sn.Stats.ExcludedFiles, sn.Stats.ExcludedDirs = c.Files, c.Dirs
	}
	if u, err := user.Current(); err == nil {
		sn.User = u.Username
	}
	if parent != nil {
		pid := parent.ID
		sn.Parent = &pid
	}
	if si, ok := src.(SourceInfo); ok {
		if sn.Info, err = si.Info(ctx); err != nil {
			return nil, err
		}
	}
	sn.Duration = time.Since(start).Seconds()
	// A marker that lapsed (a paused process, a sleeping laptop) no
	// longer kept a prune from deleting packs this snapshot may name.
	if err := mark.Check(); err != nil {
		return nil, fmt.Errorf("backup: not writing the snapshot: %w; its packs and index files are durable, so running the backup again is fast", err)
	}
	if _, err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, err
	}
	// Still under the marker: if a prune rewrote the index meanwhile,
	// index again the packs this snapshot deduplicated against.
	if _, err := r.KeepIndexed(ctx, root); err != nil {
		return nil, fmt.Errorf("backup: snapshot %s written, but checking that the index still names all it uses failed: %w (the next prune indexes what it lacks)", sn.ID.Short(), err)
	}
	return &Result{Snapshot: sn, Parent: parent}, nil
}

type backup struct {
	r     *engine.Repo
	ctx   context.Context
	src   Source
	opt   Options
	saver *engine.Saver
	pcur  *parentCursor
	cdc   *cdc          // the store's chunker
	blobs chan blobTask // new chunks for the blob workers
	// inflight bounds the bytes of chunks queued for or in the blob
	// workers, whatever their number and size.
	inflight *semaphore.Weighted

	readBytes atomic.Int64
	skipped   atomic.Int64
	unchanged atomic.Int64

	skipMu      sync.Mutex
	skippedList []engine.SkippedEntry
}

// skip records an entry left out, for the warning and the snapshot.
func (b *backup) skip(path string, err error) {
	b.skipped.Add(1)
	b.skipMu.Lock()
	if len(b.skippedList) < engine.MaxSkippedListed {
		b.skippedList = append(b.skippedList, engine.SkippedEntry{Path: "/" + path, Reason: err.Error()})
	}
	b.skipMu.Unlock()
	b.opt.Warn(path, err)
}

// blobTask is a new chunk on its way to compression, encryption and a
// pack; buf (from bufpool, sized to the chunk) is returned when it is
// stored.
type blobTask struct {
	id  crypto.ID
	buf *[]byte
}

// walkAhead bounds the walk items queued ahead of the assembler.
const walkAhead = 256

// run drives the pipeline (internal/pipeline.Ordered): the source's walk;
// Concurrency file workers that read, chunk, hash and dedup changed files;
// Concurrency blob workers that compress, seal and pack new chunks (so one
// large file uses every core); and the assembler in this goroutine, which
// builds directories in walk order.
func (b *backup) run() (crypto.ID, tree.Node, tree.DirStats, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	b.blobs = make(chan blobTask, b.opt.Concurrency)
	b.inflight = semaphore.NewWeighted(int64(b.r.Params.Chunker.Max))
	var blobWG sync.WaitGroup
	for i := 0; i < b.opt.Concurrency; i++ {
		blobWG.Add(1)
		go func() {
			defer blobWG.Done()
			for t := range b.blobs {
				if _, err := b.saver.Save(format.BlobData, t.id, *t.buf); err != nil {
					b.saver.Fail(err)
				}
				b.inflight.Release(int64(len(*t.buf)))
				bufpool.Put(t.buf)
			}
		}()
	}
	// Every chunk handed to the blob workers is in the saver before run
	// returns (and so before Finish makes it durable). Ordered returns
	// only after every file worker has, so nothing sends after the close.
	defer func() { close(b.blobs); blobWG.Wait() }()

	ar, _ := b.src.(AttrReuser)
	if ar != nil {
		ar.DeferAttrs()
	}
	cp := b.r.Params.Chunker
	if cp.Algorithm != "fastcdc-v1.0.0" {
		return crypto.ID{}, tree.Node{}, tree.DirStats{}, fmt.Errorf("backup: chunker %q is not supported", cp.Algorithm)
	}
	var err error
	if b.cdc, err = newCDC(cp.Min, cp.Normal, cp.Max, b.r.Keys().ChunkerKey); err != nil {
		return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
	}
	// The chunker's scan buffer, one per large file being read, at most
	// Windows at once.
	scanBufs := sync.Pool{New: func() any { buf := make([]byte, b.r.Params.Chunker.Max); return &buf }}
	windows := semaphore.NewWeighted(int64(b.opt.Windows))
	// Small files' buffers (Chunker.Min + 1 bytes, 512 KiB by default),
	// one per file worker reading one: recycled, not allocated per file.
	smallBufs := sync.Pool{New: func() any { buf := make([]byte, b.r.Params.Chunker.Min+1); return &buf }}
	asm := b.newAssembler()
	err = pipeline.Ordered(ctx, pipeline.Options{Workers: b.opt.Concurrency, Window: walkAhead},
		func(ctx context.Context, emit func(*fileJob, bool) error) error {
			return b.src.Walk(ctx, func(it *Item) error {
				j := &fileJob{item: it}
				if it.Node.Type != tree.TypeFile {
					return emit(j, false) // directories, links: no worker
				}
				prev, ok, err := b.pcur.find(ctx, it)
				if err != nil {
					return err
				}
				if ok && unchanged(prev, &it.Node) && b.allStored(prev) {
					j.chunks, j.list = prev.Chunks, prev.ChunkList
					if ar != nil {
						ar.ReuseAttrs(prev, &it.Node)
					}
					b.unchanged.Add(1)
					return emit(j, false) // unchanged: not read
				}
				return emit(j, true)
			}, b.skip)
		},
		func(ctx context.Context, j *fileJob) error {
			if j.item.Node.Size <= uint64(b.r.Params.Chunker.Min) {
				buf := smallBufs.Get().(*[]byte)
				defer smallBufs.Put(buf)
				return b.saveSmall(ctx, j, *buf)
			}
			if err := windows.Acquire(ctx, 1); err != nil {
				return err
			}
			defer windows.Release(1)
			buf := scanBufs.Get().(*[]byte)
			defer scanBufs.Put(buf) // the chunker's slices alias it; saveFile copies first
			return b.saveFile(ctx, j, *buf)
		},
		asm.add)
	if err != nil {
		return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
	}
	return asm.finish()
}

// unchanged says whether a file may reuse its parent's content unread.
func unchanged(prev, cur *tree.Node) bool {
	return prev.Type == tree.TypeFile && prev.Size == cur.Size && prev.MTime == cur.MTime &&
		prev.Inode == cur.Inode && prev.CTime == cur.CTime
}

// allStored checks that the parent's content for a file is still indexed.
func (b *backup) allStored(n *tree.Node) bool {
	if !n.ChunkList.IsZero() {
		return b.r.Index.Has(n.ChunkList)
	}
	for _, c := range n.Chunks {
		if !b.r.Index.Has(c.ID) {
			return false
		}
	}
	return true
}

// errChanged says a file's size changed while it was read.
var errChanged = errors.New("file changed size while it was read")

func (b *backup) saveFile(ctx context.Context, j *fileJob, buf []byte) error {
	f, err := b.src.Open(ctx, j.item)
	if err != nil {
		return err
	}
	defer f.Close()
	ch := b.cdc.scanner(f, buf)
	var total uint64
	for {
		data, err := ch.next()
		if err != nil && err != io.EOF {
			return err
		}
		if len(data) > 0 {
			if err := b.addChunk(ctx, j, data); err != nil {
				return err
			}
			total += uint64(len(data))
		}
		if err == io.EOF {
			break
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
	}
	return b.endFile(j, total)
}

// saveSmall saves a file of at most Chunker.Min bytes, which the chunker
// would return whole as one chunk, read into buf (Chunker.Min+1 bytes,
// no chunker window). A file that grew past its scanned size fails as
// in saveFile.
func (b *backup) saveSmall(ctx context.Context, j *fileJob, buf []byte) error {
	f, err := b.src.Open(ctx, j.item)
	if err != nil {
		return err
	}
	defer f.Close()
	size := j.item.Node.Size
	n, err := io.ReadFull(f, buf[:size+1])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return err
	}
	if n > 0 && uint64(n) == size {
		if err := b.addChunk(ctx, j, buf[:n]); err != nil {
			return err
		}
	}
	return b.endFile(j, uint64(n))
}

// addChunk dedups one chunk of j's file, handing it to the blob workers
// (copied) unless it is stored already.
func (b *backup) addChunk(ctx context.Context, j *fileJob, data []byte) error {
	id := b.r.Keys().BlobID(data)
	if serr := b.saver.Err(); serr != nil {
		return serr
	}
	if !b.saver.Has(id) {
		if err := b.inflight.Acquire(ctx, int64(len(data))); err != nil {
			return err
		}
		buf := bufpool.Get(len(data))
		*buf = append(*buf, data...)
		select {
		case b.blobs <- blobTask{id: id, buf: buf}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	j.chunks = append(j.chunks, tree.Chunk{ID: id, Size: uint32(len(data))})
	b.readBytes.Add(int64(len(data)))
	b.opt.Progress.Bytes.Add(int64(len(data)))
	return nil
}

// endFile checks that total bytes were read of j's file and stores its
// chunk list, when long, as a blob of its own.
func (b *backup) endFile(j *fileJob, total uint64) error {
	if total != j.item.Node.Size {
		return fmt.Errorf("%w (%d bytes at scan, %d read)", errChanged, j.item.Node.Size, total)
	}
	if len(j.chunks) > tree.MaxInlineChunks {
		e := format.Encoder{}
		tree.EncodeChunks(&e, j.chunks)
		id := b.r.Keys().BlobID(e.B)
		if _, err := b.saver.Save(format.BlobTree, id, e.B); err != nil {
			return err
		}
		j.list, j.chunks = id, nil
	}
	return nil
}

// saveTree stores a tree blob (page, directory).
func (b *backup) saveTree(p []byte) (crypto.ID, error) {
	id := b.r.Keys().BlobID(p)
	_, err := b.saver.Save(format.BlobTree, id, p)
	return id, err
}

type openDir struct {
	name    string
	node    tree.Node
	builder *tree.Builder
}

// assembler takes walk items in order and builds the tree bottom-up,
// keeping the directories from the root to the current item open.
type assembler struct {
	b     *backup
	stack []*openDir
}

func (b *backup) newAssembler() *assembler {
	return &assembler{b: b, stack: []*openDir{{node: tree.Node{Type: tree.TypeDir, Mode: 0o755}, builder: b.r.NewTreeBuilder(b.saveTree)}}}
}

// pop finishes the innermost open directory and adds it to its parent.
func (a *assembler) pop() error {
	top := a.stack[len(a.stack)-1]
	a.stack = a.stack[:len(a.stack)-1]
	id, st, err := top.builder.Finish()
	if err != nil {
		return err
	}
	top.node.Subtree = id
	a.b.opt.Progress.Files.Add(1)
	return a.stack[len(a.stack)-1].builder.Add(&top.node, st)
}

// add places the next walk item, after its file worker (if any) is done;
// workErr is that worker's error. A file that could not be read is
// skipped, unless the backup as a whole is failing.
func (a *assembler) add(_ context.Context, j *fileJob, workErr error) error {
	b := a.b
	if err := b.saver.Err(); err != nil {
		return err
	}
	it := j.item
	segs := Segments(it.Path)
	if len(segs) == 0 { // the root's own metadata
		a.stack[0].node = it.Node
		a.stack[0].node.Name = ""
		return nil
	}
	parent := segs[:len(segs)-1]
	// Close directories that are not ancestors of this item.
	common := 0
	for common < len(parent) && common+1 < len(a.stack) && a.stack[common+1].name == parent[common] {
		common++
	}
	for len(a.stack)-1 > common {
		if err := a.pop(); err != nil {
			return err
		}
	}
	// Open implicit directories (S3 prefixes).
	for _, s := range parent[common:] {
		a.stack = append(a.stack, &openDir{name: s, node: tree.Node{Name: s, Type: tree.TypeDir, Mode: 0o755}, builder: b.r.NewTreeBuilder(b.saveTree)})
	}
	if workErr != nil {
		if errors.Is(workErr, context.Canceled) || b.saver.Err() != nil {
			return workErr
		}
		b.skip(it.Path, workErr)
		return nil
	}
	// The node is read only now, after the file's worker: Open may fill
	// in the attributes (AttrReuser sources).
	n := it.Node
	n.Name = segs[len(segs)-1]
	switch n.Type {
	case tree.TypeDir:
		a.stack = append(a.stack, &openDir{name: n.Name, node: n, builder: b.r.NewTreeBuilder(b.saveTree)})
		return nil
	case tree.TypeFile:
		n.Chunks, n.ChunkList = j.chunks, j.list
	}
	if err := a.stack[len(a.stack)-1].builder.Add(&n, tree.DirStats{}); err != nil {
		return err
	}
	b.opt.Progress.Files.Add(1)
	return nil
}

// finish closes the open directories and returns the root's tree.
func (a *assembler) finish() (crypto.ID, tree.Node, tree.DirStats, error) {
	for len(a.stack) > 1 {
		if err := a.pop(); err != nil {
			return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
		}
	}
	id, st, err := a.stack[0].builder.Finish()
	return id, a.stack[0].node, st, err
}

// parentCursor follows the walk through the parent snapshot's tree, so
// each file is compared with its previous version in one merge pass.
type parentCursor struct {
	r     *engine.Repo
	root  crypto.ID
	names []string     // directory path of iters[1:]
	iters []*tree.Iter // nil where the parent has no such directory
}

// find returns the parent's node for item; ok is false if the parent
// has none (or there is no parent).
func (c *parentCursor) find(ctx context.Context, it *Item) (*tree.Node, bool, error) {
	if c == nil {
		return nil, false, nil
	}
	if c.iters == nil {
		d, err := c.r.LoadDir(ctx, c.root)
		if err != nil && !engine.IsDamage(err) {
			return nil, false, fmt.Errorf("parent snapshot: %w", err)
		}
		// A damaged parent must not stop the backup: what it cannot
		// tell is read again.
		var it *tree.Iter
		if err == nil {
			it = c.r.Iter(d)
		}
		c.iters = []*tree.Iter{it}
	}
	segs := Segments(it.Path)
	parent := segs[:len(segs)-1]
	common := 0
	for common < len(parent) && common < len(c.names) && c.names[common] == parent[common] {
		common++
	}
	c.names, c.iters = c.names[:common], c.iters[:common+1]
	for _, s := range parent[common:] {
		var next *tree.Iter
		if top := c.iters[len(c.iters)-1]; top != nil {
			n, ok, err := top.Seek(ctx, s+"/")
			if err != nil && !engine.IsDamage(err) {
				return nil, false, err
			}
			if ok && err == nil {
				d, err := c.r.LoadDir(ctx, n.Subtree)
				if err != nil && !engine.IsDamage(err) {
					return nil, false, err
				}
				if err == nil {
					next = c.r.Iter(d)
				}
			}
		}
		c.names = append(c.names, s)
		c.iters = append(c.iters, next)
	}
	top := c.iters[len(c.iters)-1]
	if top == nil {
		return nil, false, nil
	}
	n := it.Node
	n.Name = segs[len(segs)-1]
	p, ok, err := top.Seek(ctx, n.SortKey())
	if err != nil && engine.IsDamage(err) {
		return nil, false, nil // a damaged page of the parent: read the file again
	}
	return p, ok, err
}
