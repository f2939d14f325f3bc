package restore

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"errors"
	"strings"

	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// RestoreOptions tune a restore.
type Options struct {
	Concurrency int // blob runs fetched and written at once; default 2×CPUs
	// Warn receives each entry that could not be restored.
	Warn     func(path string, err error)
	Progress *engine.Progress
}

// RestoreStats report a finished restore.
type Stats struct {
	Files  uint64
	Dirs   uint64
	Bytes  uint64
	Failed uint64
}

// maxRun bounds one ranged read of adjacent blobs.
const maxRun = 8 << 20

// RestoreError says some entries could not be restored.
type Error struct{ Failed uint64 }

func (e *Error) Error() string {
	return fmt.Sprintf("restore: %d entries could not be restored (see the messages above); the rest was restored", e.Failed)
}

type restoreFile struct {
	path    string
	node    *tree.Node
	pending atomic.Int64
	failed  atomic.Bool
	errOnce sync.Once

	// The file is created by the first worker to need it, so creating
	// thousands of small files runs on every core, not in the walker.
	createOnce sync.Once
	w          FileWriter
	createErr  error
}

// run is a slice of a file's chunks stored back to back in one pack.
type run struct {
	file   *restoreFile
	pack   crypto.ID
	kind   format.BlobKind
	start  uint32 // offset in the pack
	end    uint32
	blobs  []format.BlobLoc
	fileAt []int64 // where each blob goes in the file
}

// Restore writes node (a directory's contents, or a single entry) from sn
// into dst.
func Restore(ctx context.Context, r *engine.Repo, node *tree.Node, dst Destination, opt Options) (Stats, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 2 * runtime.NumCPU()
	}
	if opt.Warn == nil {
		opt.Warn = func(string, error) {}
	}
	if opt.Progress == nil {
		opt.Progress = &engine.Progress{}
	}
	if err := r.LoadIndex(ctx); err != nil {
		return Stats{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := &restorer{r: r, dst: dst, opt: opt, runs: make(chan *run, opt.Concurrency), cancel: cancel}
	var wg sync.WaitGroup
	for i := 0; i < opt.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var plain []byte // reused for decompressed blobs
			for ru := range rs.runs {
				plain = rs.doRun(ctx, ru, plain)
			}
		}()
	}
	var err error
	if node.Type == tree.TypeDir {
		if err = dst.MkDir(ctx, "", node); err == nil {
			err = rs.walk(ctx, node, "")
			rs.dirs = append(rs.dirs, dirMeta{"", node})
		}
	} else if err = dst.MkDir(ctx, "", &tree.Node{Type: tree.TypeDir, Mode: 0o755}); err == nil {
		err = rs.entry(ctx, "/"+node.Name, node)
	}
	close(rs.runs)
	wg.Wait()
	if rs.fatal != nil {
		return rs.stats, rs.fatal
	}
	if err != nil {
		return rs.stats, err
	}
	// Directory times last, deepest first, after their contents are done.
	for i := len(rs.dirs) - 1; i >= 0; i-- {
		d := rs.dirs[i]
		if err := dst.FinishDir(ctx, d.path, d.node); err != nil {
			rs.fail(d.path, err)
		}
	}
	if n := rs.failed.Load(); n > 0 {
		rs.stats.Failed = uint64(n)
		return rs.stats, &Error{Failed: uint64(n)}
	}
	return rs.stats, nil
}

type dirMeta struct {
	path string
	node *tree.Node
}

type restorer struct {
	r      *engine.Repo
	dst    Destination
	opt    Options
	runs   chan *run
	dirs   []dirMeta
	stats  Stats
	failed atomic.Int64
	warnMu sync.Mutex

	// A permanent error (access denied, bad credentials, a missing
	// bucket) would fail every other entry the same way: it stops the
	// restore instead of being reported once per object.
	cancel func()
	fatal  error
}

func (rs *restorer) fail(path string, err error) {
	rs.warnMu.Lock()
	defer rs.warnMu.Unlock()
	var pe *store.PermanentError
	if errors.As(err, &pe) {
		if rs.fatal == nil {
			rs.fatal = fmt.Errorf("restore stopped at %s: %w", path, err)
			rs.cancel()
		}
		return
	}
	if rs.fatal != nil {
		return // entries failing because the restore was stopped
	}
	rs.failed.Add(1)
	rs.opt.Warn(path, err)
}

func (rs *restorer) walk(ctx context.Context, dir *tree.Node, path string) error {
	d, err := rs.r.LoadDir(ctx, dir.Subtree)
	if err != nil {
		rs.fail(path+"/", fmt.Errorf("directory unreadable: %w", err))
		return nil
	}
	// files holds names of non-directories that are prefixes of the
	// current sort key: a file "x" sorts before the directory "x/" and
	// everything between them starts with "x", so this finds a directory
	// beside a file of the same name without a lookup.
	var files []string
	it := rs.r.Iter(d)
	for {
		n, ok, err := it.Next(ctx)
		if err != nil {
			rs.fail(path+"/", fmt.Errorf("directory partly unreadable: %w", err))
			return nil
		}
		if !ok {
			return nil
		}
		key := n.SortKey()
		for len(files) > 0 && !strings.HasPrefix(key, files[len(files)-1]) {
			files = files[:len(files)-1]
		}
		p := path + "/" + n.Name
		cp := *n
		if n.Type == tree.TypeDir && len(files) > 0 && files[len(files)-1] == n.Name {
			if bf, ok := rs.dst.(BesideFiler); ok {
				bf.BesideFile(p)
			}
		}
		if n.Type != tree.TypeDir {
			files = append(files, n.Name)
		}
		if err := rs.entry(ctx, p, &cp); err != nil {
			return err
		}
	}
}

// entry restores one node; it returns an error only for what stops the
// whole restore (a cancelled context).
func (rs *restorer) entry(ctx context.Context, p string, n *tree.Node) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch n.Type {
	case tree.TypeDir:
		if err := rs.dst.MkDir(ctx, p, n); err != nil {
			rs.fail(p, err)
			return nil
		}
		rs.stats.Dirs++
		if err := rs.walk(ctx, n, p); err != nil {
			return err
		}
		rs.dirs = append(rs.dirs, dirMeta{p, n})
	case tree.TypeSymlink:
		if err := rs.dst.Symlink(ctx, p, n); err != nil {
			rs.fail(p, err)
		}
		rs.opt.Progress.Files.Add(1)
	case tree.TypeFile:
		rs.file(ctx, p, n)
	}
	return nil
}

func (rs *restorer) file(ctx context.Context, p string, n *tree.Node) {
	// The file as the mount and cat see it: pieces named by blob id, each
	// at its offset. A restore fetches them by pack instead of in order.
	l, err := rs.r.FileLayout(ctx, n)
	if err != nil {
		rs.fail(p, err)
		return
	}
	// Plan the runs before creating the file, so a missing blob fails
	// before anything is written.
	var runs []*run
	for i := 0; i < l.Len(); i++ {
		c := l.Piece(i)
		loc, pack, ok := rs.r.Index.Lookup(c.Key)
		if !ok {
			rs.fail(p, &engine.BlobError{ID: c.Key, Err: engine.ErrMissingBlob})
			return
		}
		if int64(loc.RawLen) != c.Size {
			rs.fail(p, &engine.BlobError{ID: c.Key, Pack: pack, Err: fmt.Errorf("%w: index says %d bytes, tree says %d", format.ErrCorrupt, loc.RawLen, c.Size)})
			return
		}
		last := len(runs) - 1
		if last >= 0 && runs[last].pack == pack && runs[last].end == loc.Offset && loc.Offset+loc.Length-runs[last].start <= maxRun {
			runs[last].end += loc.Length
		} else {
			runs = append(runs, &run{pack: pack, kind: loc.Kind, start: loc.Offset, end: loc.Offset + loc.Length})
			last++
		}
		runs[last].blobs = append(runs[last].blobs, loc)
		runs[last].fileAt = append(runs[last].fileAt, l.Start(i))
	}
	rs.stats.Files++
	rs.stats.Bytes += n.Size
	f := &restoreFile{path: p, node: n}
	if len(runs) == 0 {
		runs = append(runs, &run{}) // an empty file: just create it
	}
	f.pending.Store(int64(len(runs)))
	for _, ru := range runs {
		ru.file = f
		select {
		case rs.runs <- ru:
		case <-ctx.Done():
			return
		}
	}
}

func (rs *restorer) doRun(ctx context.Context, ru *run, plain []byte) []byte {
	f := ru.file
	f.createOnce.Do(func() { f.w, f.createErr = rs.dst.CreateFile(ctx, f.path, f.node) })
	if f.createErr != nil {
		f.failed.Store(true)
		f.errOnce.Do(func() { rs.fail(f.path, f.createErr) })
	}
	if !f.failed.Load() && len(ru.blobs) > 0 {
		var err error
		if plain, err = rs.fetchRun(ctx, ru, plain); err != nil {
			f.failed.Store(true)
			f.errOnce.Do(func() { rs.fail(f.path, err) })
		}
	}
	if f.pending.Add(-1) == 0 {
		rs.finish(f)
	}
	return plain
}

func (rs *restorer) fetchRun(ctx context.Context, ru *run, scratch []byte) ([]byte, error) {
	data, err := rs.r.LoadPackRange(ctx, ru.kind, ru.pack, int64(ru.start), int64(ru.end-ru.start))
	if err != nil {
		return scratch, &engine.BlobError{ID: ru.blobs[0].ID, Pack: ru.pack, Err: err}
	}
	for i, loc := range ru.blobs {
		off := loc.Offset - ru.start
		var plain []byte
		plain, scratch, err = rs.r.OpenBlobInPlace(data[off:off+loc.Length], loc, ru.pack, scratch)
		if err != nil {
			return scratch, err
		}
		if _, err := ru.file.w.WriteAt(plain, ru.fileAt[i]); err != nil {
			return scratch, fmt.Errorf("write: %w", err)
		}
		rs.opt.Progress.Bytes.Add(int64(len(plain)))
	}
	return scratch, nil
}

func (rs *restorer) finish(f *restoreFile) {
	if f.w == nil {
		return // never created; already reported
	}
	failed := f.failed.Load()
	if err := f.w.Close(failed); err != nil && !failed {
		rs.fail(f.path, err)
	}
	rs.opt.Progress.Files.Add(1)
}
