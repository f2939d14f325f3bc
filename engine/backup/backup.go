package backup

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

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

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
	"golang.org/x/sync/semaphore"
)

// BackupOptions tune a backup.
type Options struct {
	Concurrency int // files read at once; default: the CPU count
	Uploaders   int // packs uploaded at once; default: what the storage asks for
	Tags        []string
	Host        string
	// Parent overrides the automatic choice of the newest snapshot of the
	// same source; NoParent reads every file.
	Parent   *crypto.ID
	NoParent bool
	// Warn receives entries that were left out and why.
	Warn func(path string, err error)
	// Progress, if set, is updated as the backup runs.
	Progress *engine.Progress
}

// BackupResult reports a finished backup.
type Result struct {
	Snapshot *engine.Snapshot
	Parent   *engine.Snapshot
}

type fileJob struct {
	item   *Item
	done   chan struct{}
	err    error
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
	if err := r.LoadIndex(ctx); err != nil {
		return nil, err
	}
	var parent *engine.Snapshot
	var err error
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
	sn := &engine.Snapshot{
		Time: start.UTC(), Source: src.URI(), Host: opt.Host, Tags: opt.Tags, Root: root,
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
	if _, err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, err
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
// pack; buf is returned to chunkBufs when it is stored.
type blobTask struct {
	id  crypto.ID
	buf *[]byte
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// run drives the pipeline: one walker; Concurrency file workers that
// read, chunk, hash and dedup; Concurrency blob workers that compress,
// seal and pack new chunks (so one large file uses every core); and the
// assembler in this goroutine, which builds directories in walk order.
func (b *backup) run() (crypto.ID, tree.Node, tree.DirStats, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	items := make(chan *fileJob, 256)
	jobs := make(chan *fileJob, b.opt.Concurrency)
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
				chunkBufs.Put(t.buf)
			}
		}()
	}
	// Every chunk handed to the blob workers is in the saver before run
	// returns (and so before Finish makes it durable).
	defer blobWG.Wait()

	ar, _ := b.src.(AttrReuser)
	if ar != nil {
		ar.DeferAttrs()
	}
	var walkErr error
	go func() {
		defer close(items)
		defer close(jobs)
		walkErr = b.src.Walk(ctx, func(it *Item) error {
			j := &fileJob{item: it}
			if it.Node.Type == tree.TypeFile {
				if prev, ok, err := b.pcur.find(ctx, it); err != nil {
					return err
				} else if ok && unchanged(prev, &it.Node) && b.allStored(prev) {
					j.chunks, j.list = prev.Chunks, prev.ChunkList
					if ar != nil {
						ar.ReuseAttrs(prev, &it.Node)
					}
					b.unchanged.Add(1)
				} else {
					j.done = make(chan struct{})
					select {
					case jobs <- j:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
			select {
			case items <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		}, func(p string, err error) {
			b.skip(p, err)
		})
	}()

	var wg sync.WaitGroup
	defer func() { wg.Wait(); close(b.blobs) }()
	for i := 0; i < b.opt.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for j := range jobs {
				if buf == nil {
					buf = make([]byte, b.r.Params.Chunker.Max)
				}
				j.err = b.saveFile(ctx, j, buf)
				close(j.done)
			}
		}()
	}

	root, rootNode, stats, err := b.assemble(items)
	if err != nil {
		cancel()
		for range items { // let the walker finish
		}
		return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
	}
	if walkErr != nil {
		return crypto.ID{}, tree.Node{}, tree.DirStats{}, walkErr
	}
	return root, rootNode, stats, nil
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

func (b *backup) newChunker(rd io.Reader, buf []byte) (*chunkers.Chunker, error) {
	c := b.r.Params.Chunker
	return chunkers.NewChunkerBuffer(c.Algorithm, rd, &chunkers.ChunkerOpts{
		MinSize: c.Min, NormalSize: c.Normal, MaxSize: c.Max, Key: b.r.Keys().ChunkerKey,
	}, buf)
}

// errChanged says a file's size changed while it was read.
var errChanged = errors.New("file changed size while it was read")

func (b *backup) saveFile(ctx context.Context, j *fileJob, buf []byte) error {
	f, err := b.src.Open(ctx, j.item)
	if err != nil {
		return err
	}
	defer f.Close()
	ch, err := b.newChunker(f, buf)
	if err != nil {
		return err
	}
	var total uint64
	for {
		data, err := ch.Next()
		if err != nil && err != io.EOF {
			return err
		}
		if len(data) > 0 {
			id := b.r.Keys().BlobID(data)
			if serr := b.saver.Err(); serr != nil {
				return serr
			}
			if !b.saver.Has(id) {
				if err := b.inflight.Acquire(ctx, int64(len(data))); err != nil {
					return err
				}
				buf := chunkBufs.Get().(*[]byte)
				*buf = append((*buf)[:0], data...)
				select {
				case b.blobs <- blobTask{id: id, buf: buf}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			j.chunks = append(j.chunks, tree.Chunk{ID: id, Size: uint32(len(data))})
			total += uint64(len(data))
			b.readBytes.Add(int64(len(data)))
			b.opt.Progress.Bytes.Add(int64(len(data)))
		}
		if err == io.EOF {
			break
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
	}
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

// assemble consumes walk items in order and builds the tree bottom-up.
func (b *backup) assemble(items <-chan *fileJob) (crypto.ID, tree.Node, tree.DirStats, error) {
	stack := []*openDir{{node: tree.Node{Type: tree.TypeDir, Mode: 0o755}, builder: tree.NewBuilder(b.saveTree)}}
	pop := func() error {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		id, st, err := top.builder.Finish()
		if err != nil {
			return err
		}
		top.node.Subtree = id
		b.opt.Progress.Files.Add(1)
		return stack[len(stack)-1].builder.Add(&top.node, st)
	}
	for j := range items {
		if err := b.saver.Err(); err != nil {
			return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
		}
		it := j.item
		segs := Segments(it.Path)
		if len(segs) == 0 { // the root's own metadata
			stack[0].node = it.Node
			stack[0].node.Name = ""
			continue
		}
		parent := segs[:len(segs)-1]
		// Close directories that are not ancestors of this item.
		common := 0
		for common < len(parent) && common+1 < len(stack) && stack[common+1].name == parent[common] {
			common++
		}
		for len(stack)-1 > common {
			if err := pop(); err != nil {
				return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
			}
		}
		// Open implicit directories (S3 prefixes).
		for _, s := range parent[common:] {
			stack = append(stack, &openDir{name: s, node: tree.Node{Name: s, Type: tree.TypeDir, Mode: 0o755}, builder: tree.NewBuilder(b.saveTree)})
		}
		if j.done != nil {
			// Wait for the file's worker before reading its node: Open
			// may fill in the attributes (AttrReuser sources).
			select {
			case <-j.done:
			case <-b.ctx.Done():
				return crypto.ID{}, tree.Node{}, tree.DirStats{}, b.ctx.Err()
			}
			if j.err != nil {
				if errors.Is(j.err, context.Canceled) || b.saver.Err() != nil {
					return crypto.ID{}, tree.Node{}, tree.DirStats{}, j.err
				}
				b.skip(it.Path, j.err)
				continue
			}
		}
		n := it.Node
		n.Name = segs[len(segs)-1]
		switch n.Type {
		case tree.TypeDir:
			stack = append(stack, &openDir{name: n.Name, node: n, builder: tree.NewBuilder(b.saveTree)})
			continue
		case tree.TypeFile:
			n.Chunks, n.ChunkList = j.chunks, j.list
		}
		if err := stack[len(stack)-1].builder.Add(&n, tree.DirStats{}); err != nil {
			return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
		}
		b.opt.Progress.Files.Add(1)
	}
	for len(stack) > 1 {
		if err := pop(); err != nil {
			return crypto.ID{}, tree.Node{}, tree.DirStats{}, err
		}
	}
	id, st, err := stack[0].builder.Finish()
	return id, stack[0].node, st, err
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
		if err != nil {
			return nil, false, fmt.Errorf("parent snapshot: %w", err)
		}
		c.iters = []*tree.Iter{c.r.Iter(d)}
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
			if err != nil {
				return nil, false, err
			}
			if ok {
				d, err := c.r.LoadDir(ctx, n.Subtree)
				if err != nil {
					return nil, false, err
				}
				next = c.r.Iter(d)
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
	return top.Seek(ctx, n.SortKey())
}
