package restore

import (
	"syscall"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"errors"

	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Overwrite says what a restore does with a file or symlink that already
// exists where the snapshot has one.
type Overwrite int

const (
	// OverwriteNever keeps every existing entry: the default, which
	// never destroys a local edit.
	OverwriteNever Overwrite = iota
	// OverwriteIfChanged replaces an entry unless it already matches the
	// snapshot (a file: size, mtime and mode; a symlink: its target).
	OverwriteIfChanged
	// OverwriteIfNewer replaces an entry only when the snapshot's mtime
	// is newer than the entry's.
	OverwriteIfNewer
	// OverwriteAlways replaces every entry, and a file, symlink or
	// special file where the snapshot has a directory.
	OverwriteAlways
)

var overwriteNames = []string{"never", "if-changed", "if-newer", "always"}

func (o Overwrite) String() string {
	if int(o) < len(overwriteNames) {
		return overwriteNames[o]
	}
	return fmt.Sprintf("Overwrite(%d)", int(o))
}

// ParseOverwrite parses "always", "if-changed", "if-newer" or "never".
func ParseOverwrite(s string) (Overwrite, error) {
	for i, n := range overwriteNames {
		if s == n {
			return Overwrite(i), nil
		}
	}
	return 0, fmt.Errorf("unknown overwrite mode %q (always, if-changed, if-newer or never)", s)
}

// Action is what a restore does, or would do, with one entry.
type Action int

const (
	Create    Action = iota // nothing was there
	Replace                 // an existing entry is replaced
	Unchanged               // an existing entry already matches the snapshot
	Keep                    // an existing entry differs and is kept (Overwrite)
	Delete                  // an entry the snapshot does not have is removed (Delete)
)

var actionNames = []string{"create", "replace", "unchanged", "keep", "delete"}

func (a Action) String() string { return actionNames[a] }

// Options tune a restore.
type Options struct {
	Concurrency int // blob runs fetched and written at once; default 2×CPUs
	// Warn receives each entry that could not be restored.
	Warn     func(path string, err error)
	Progress *engine.Progress

	// Overwrite says what to do with existing files and symlinks. A
	// directory where the snapshot has a file or symlink is a conflict
	// unless Overwrite is OverwriteAlways and Delete is set; a
	// non-directory where the snapshot has a directory is one unless
	// Overwrite is OverwriteAlways. A conflict fails that entry (and what
	// it holds) and nothing of it is touched.
	Overwrite Overwrite
	// Delete removes, from each directory the restore writes, the
	// entries the snapshot does not have there.
	Delete bool
	// DryRun writes nothing: Report and Stats say what would be done.
	DryRun bool
	// Report, if set, is told of each entry's Action (in the order the
	// restore meets them, from one goroutine); path is the entry's path,
	// for Delete the directory's path and "/" and the local name.
	Report func(a Action, path string, detail string)

	// Memory, if set, bounds the bytes the restore holds: before a
	// worker starts a job it reserves everything the job will hold (the
	// pack range it reads, a decompression buffer, and what the
	// destination's writers of its files hold, Buffered), and gives it
	// back when the job is done. A worker never waits for memory while
	// it holds some, so the reservations cannot deadlock; the workers
	// at work are as many as the budget allows. A file whose blobs come
	// from more than one read is then one job, read and written in
	// order by one worker, so that its writer holds one part at a time.
	Memory Budget
	// Closes bounds the files whose Close (an S3 PUT) runs at once, on
	// destinations that are not a SerialCreator: a worker finishing a
	// read of many small files closes them in parallel, up to this many
	// across the restore. Default DefaultCloses.
	Closes int
}

// Budget is a byte budget shared by the jobs of a restore (s3io.Memory).
type Budget interface {
	// Size is the budget in bytes.
	Size() int64
	// Acquire waits until n bytes fit, first come first served, or ctx
	// ends (the restore never asks more than Size).
	Acquire(ctx context.Context, n int64) error
	// Release gives back n bytes taken by Acquire.
	Release(n int64)
}

// Buffered is implemented by destinations whose writers hold a file's
// bytes in memory (a bucket: the body of a small object, a part of a
// large one). FileBuffer is the most a writer of n holds when its bytes
// come in ascending order.
type Buffered interface {
	FileBuffer(n *tree.Node) int64
}

// DefaultCloses is Options.Closes when unset: enough PUTs at once to keep
// an S3 server busy with small objects (docs/PERFORMANCE.md, issue 10).
const DefaultCloses = 64

// ErrNeedsInspector says Options ask for what the destination cannot do.
var ErrNeedsInspector = errors.New("overwrite modes other than always, delete and dry run need a destination that can be inspected (a folder)")

// ConflictError says the target has a directory where the snapshot has
// something else, or the other way round.
type ConflictError struct {
	Path     string
	Existing string // kind of what is there
	Snapshot string // kind of what the snapshot has
	Remedy   string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the target has a %s where the snapshot has a %s; nothing was changed there: %s",
		e.Existing, e.Snapshot, e.Remedy)
}

// Stats report a finished restore.
type Stats struct {
	Files  uint64 // files written (or, in a dry run, to be written)
	Dirs   uint64
	Bytes  uint64
	Failed uint64

	// Entries by Action (files, symlinks and directories; Deleted counts
	// the top entries removed, not what they held).
	Created, Replaced, Unchanged, Kept, Deleted uint64
}

// maxRun bounds one ranged read of adjacent blobs.
const maxRun = 8 << 20

// entries is "1 entry could not be restored", "2 entries could not …".
func (e *Error) entries() string {
	if e.Failed == 1 {
		return "1 entry could not be restored"
	}
	return fmt.Sprintf("%d entries could not be restored", e.Failed)
}

// Error says some entries could not be restored.
type Error struct {
	Failed uint64
	DryRun bool
}

func (e *Error) Error() string {
	if e.DryRun {
		return fmt.Sprintf("restore: %s (see the messages above); dry run: nothing was written", e.entries())
	}
	return fmt.Sprintf("restore: %s (see the messages above); the rest was restored", e.entries())
}

type restoreFile struct {
	path    string
	node    *tree.Node
	pending atomic.Int64 // runs not yet written
	failed  atomic.Bool
	errOnce sync.Once

	// A SerialCreator destination's files are created by one creator,
	// ahead of the workers, which wait for created. Other
	// destinations' are created by the first worker to need them, so
	// creating thousands of small objects runs on every core, not in the
	// walker.
	createOnce sync.Once
	created    chan struct{} // SerialCreator only: closed once created (or failed)
	w          FileWriter
}

// run is a slice of one file's chunks stored back to back in one pack.
type run struct {
	file   *restoreFile
	pack   crypto.ID
	kind   format.BlobKind
	start  uint32 // offset in the pack
	end    uint32
	blobs  []format.BlobLoc
	fileAt []int64 // where each blob goes in the file
}

// fetch is one ranged read of a pack and the runs it feeds: the runs of
// many small files stored side by side share one, so that one read
// restores them all. A fetch of empty files only reads nothing.
type fetch struct {
	pack  crypto.ID
	kind  format.BlobKind
	start uint32
	end   uint32
	runs  []*run
	// serial: the runs are all of one file, in file order, each read on
	// its own (Options.Memory only); ahead: the next run is read while
	// one is written (when the budget holds both).
	serial, ahead bool
}

// maxGap is the most bytes of other blobs a fetch reads and skips to
// join a run to it: cheaper than a request of its own.
const maxGap = 256 << 10

// maxFetchFiles bounds the files one fetch feeds, and maxOpenFetches the
// fetches being planned at once (one per pack the last files came
// from: a backup fills a few packs at once); together they bound the
// files open at once: a file is created after the walker has met it and
// finished by the worker of its last fetch, so the files open are at
// most those of the fetches being planned, queued for the workers
// (Concurrency) and being written (Concurrency), plus one.
const (
	maxFetchFiles  = 128
	maxOpenFetches = 4
)

// openReserve is what a restore leaves of the open-file limit for
// reading the store and everything else.
const openReserve = 64

// sizeFetches returns the files a fetch may feed, and the workers, so
// that the files open at once stay within limit (0: none known).
func sizeFetches(limit, workers int) (files, w int) {
	files = maxFetchFiles
	if limit <= 0 {
		return files, workers
	}
	avail := max(limit-openReserve-workers, 8)
	for {
		files = min(maxFetchFiles, avail/(2*workers+maxOpenFetches+1))
		if files >= 1 || workers == 1 {
			return max(files, 1), workers
		}
		workers = max(1, workers/2)
	}
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
	insp, _ := dst.(Inspector)
	if insp == nil && (opt.Overwrite != OverwriteAlways || opt.Delete || opt.DryRun) {
		return Stats{}, fmt.Errorf("restore to %s: %w", dst.URI(), ErrNeedsInspector)
	}
	if err := r.LoadIndex(ctx); err != nil {
		return Stats{}, err
	}
	// fresh: the target does not exist yet, so nothing below it needs a
	// look.
	fresh := insp == nil
	if insp != nil {
		ex, err := insp.Lstat(ctx, "", true)
		if err != nil {
			return Stats{}, err
		}
		if ex != nil && ex.Type != tree.TypeDir {
			return Stats{}, fmt.Errorf("restore: %s exists and is a %s, not a directory", dst.URI(), ex.Kind())
		}
		fresh = ex == nil
		if ex != nil {
			// An empty folder is as good as none: nothing to look at
			// before each entry.
			if fresh, err = insp.Empty(ctx, ""); err != nil {
				return Stats{}, err
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc, _ := dst.(SerialCreator)
	perFetch := maxFetchFiles
	if sc != nil {
		perFetch, opt.Concurrency = sizeFetches(sc.MaxOpen(), opt.Concurrency)
	}
	rs := &restorer{r: r, dst: dst, insp: insp, opt: opt, fetches: make(chan *fetch, opt.Concurrency), fetchFiles: perFetch, cancel: cancel}
	rs.buffered, _ = dst.(Buffered)
	if sc == nil {
		if opt.Closes < 1 {
			opt.Closes = DefaultCloses
		}
		rs.closes = make(chan struct{}, opt.Closes)
	}
	// The walker plans fetches; workers read, open and write them. For a
	// SerialCreator, one creator creates the files the walker meets.
	var cwg, wg sync.WaitGroup
	if sc != nil {
		rs.creates = make(chan *restoreFile, 4*maxFetchFiles)
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			rs.creator(ctx)
		}()
	}
	for i := 0; i < opt.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scratch []byte // reused for decompressed blobs
			for fe := range rs.fetches {
				scratch = rs.job(ctx, fe, scratch)
			}
		}()
	}
	var err error
	root := node
	if node.Type != tree.TypeDir {
		root = &tree.Node{Type: tree.TypeDir, Mode: 0o755}
	}
	if !opt.DryRun {
		err = dst.MkDir(ctx, "", root)
	}
	if err == nil && node.Type == tree.TypeDir {
		if sc != nil && fresh && !opt.DryRun {
			rs.mkDirsAhead(ctx, sc, node, "")
		}
		err = rs.walk(ctx, node, "", fresh)
		if !opt.DryRun {
			rs.dirs = append(rs.dirs, dirMeta{"", node})
		}
	} else if err == nil {
		err = rs.entry(ctx, "/"+node.Name, node, fresh)
	}
	rs.flushAll()
	if rs.creates != nil {
		close(rs.creates)
	}
	close(rs.fetches)
	cwg.Wait()
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
		return rs.stats, &Error{Failed: uint64(n), DryRun: opt.DryRun}
	}
	return rs.stats, nil
}

type dirMeta struct {
	path string
	node *tree.Node
}

type restorer struct {
	r    *engine.Repo
	dst  Destination
	insp Inspector // nil: the destination cannot be inspected
	opt  Options
	// fetches carries the walker's plan to the workers; creates its
	// files, in order, to the creator (SerialCreator only). open holds
	// the fetches being planned, oldest first, and last the one the last
	// run joined (walker only).
	fetches    chan *fetch
	fetchFiles int // the most files a fetch feeds
	creates    chan *restoreFile
	open       []*fetch
	last       *fetch
	dirs       []dirMeta
	stats      Stats
	failed     atomic.Int64
	warnMu     sync.Mutex

	// A permanent error (access denied, bad credentials, a missing
	// bucket) would fail every other entry the same way: it stops the
	// restore instead of being reported once per object.
	cancel func()
	fatal  error

	buffered Buffered      // nil: the destination's writers hold nothing
	closes   chan struct{} // nil: files are closed by their worker, in turn
}

func (rs *restorer) fail(path string, err error) {
	rs.warnMu.Lock()
	defer rs.warnMu.Unlock()
	var pe *store.PermanentError
	// A permanent destination error, or a full disk or quota, fails every
	// entry after it the same way: stop with one message instead of one
	// line per remaining file.
	if errors.As(err, &pe) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
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

// walk restores the entries of directory dir at path; fresh says the
// restore has just created it (or, in a dry run, would), so nothing in it
// needs a look.
func (rs *restorer) walk(ctx context.Context, dir *tree.Node, path string, fresh bool) error {
	d, err := rs.r.LoadDir(ctx, dir.Subtree)
	if err != nil {
		rs.fail(path+"/", fmt.Errorf("directory unreadable: %w", err))
		return nil
	}
	var b besides
	deleting := rs.opt.Delete && !fresh
	var children []Child
	it := rs.r.Iter(d)
	for {
		n, ok, err := it.Next(ctx)
		if err != nil {
			rs.fail(path+"/", fmt.Errorf("directory partly unreadable: %w", err))
			return nil // and nothing deleted from it
		}
		if !ok {
			break
		}
		p := path + "/" + n.Name
		cp := *n
		if b.next(n) {
			if bf, ok := rs.dst.(BesideFiler); ok {
				bf.BesideFile(p)
			}
		}
		if deleting {
			children = append(children, Child{Name: n.Name, Dir: n.Type == tree.TypeDir})
		}
		if err := rs.entry(ctx, p, &cp, fresh); err != nil {
			return err
		}
	}
	if !deleting {
		return nil
	}
	extras, err := rs.insp.Extras(ctx, path, children)
	if err != nil {
		rs.fail(path+"/", fmt.Errorf("cannot list what to delete: %w", err))
		return nil
	}
	for _, x := range extras {
		rs.report(Delete, path+"/"+x, "")
		if !rs.opt.DryRun {
			if err := rs.insp.RemoveExtra(ctx, path, x); err != nil {
				rs.fail(path+"/"+x, err)
				continue
			}
		}
		rs.stats.Deleted++
	}
	return nil
}

func (rs *restorer) report(a Action, path, detail string) {
	if rs.opt.Report != nil {
		rs.opt.Report(a, path, detail)
	}
}

// decide says what to do with ex, an existing non-directory where the
// snapshot has n, a file or symlink.
func (rs *restorer) decide(n *tree.Node, ex *Existing) (Action, string) {
	var same bool
	switch {
	case ex.Type != n.Type:
	case n.Type == tree.TypeSymlink:
		same = ex.Target == n.Target
	default:
		same = ex.Size == n.Size && ex.MTime == n.MTime && ex.Mode&0o7777 == n.Mode&0o7777
	}
	switch {
	case rs.opt.Overwrite == OverwriteAlways:
		return Replace, ""
	case same:
		return Unchanged, ""
	case rs.opt.Overwrite == OverwriteIfChanged:
		return Replace, "differs from the snapshot"
	case rs.opt.Overwrite == OverwriteIfNewer && n.MTime > ex.MTime:
		return Replace, "older than the snapshot"
	case rs.opt.Overwrite == OverwriteIfNewer:
		return Keep, "differs from the snapshot and is not older than it"
	}
	return Keep, "differs from the snapshot"
}

// entry restores one node; it returns an error only for what stops the
// whole restore (a cancelled context). fresh: its directory is new.
func (rs *restorer) entry(ctx context.Context, p string, n *tree.Node, fresh bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var ex *Existing
	if !fresh {
		var err error
		if ex, err = rs.insp.Lstat(ctx, p, n.Type == tree.TypeDir); err != nil {
			rs.fail(p, err)
			return nil
		}
	}
	dry := rs.opt.DryRun
	if n.Type == tree.TypeDir {
		switch {
		case ex == nil:
			rs.report(Create, p, "")
			rs.stats.Created++
		case ex.Type != tree.TypeDir && rs.opt.Overwrite != OverwriteAlways:
			rs.fail(p, &ConflictError{Path: p, Existing: ex.Kind(), Snapshot: "directory",
				Remedy: "move it away, or restore with --overwrite always to replace it"})
			return nil
		case ex.Type != tree.TypeDir:
			rs.report(Replace, p, "a "+ex.Kind()+" where the snapshot has a directory")
			rs.stats.Replaced++
			if !dry {
				if err := rs.insp.Remove(ctx, p, true); err != nil {
					rs.fail(p, err)
					return nil
				}
			}
		}
		created := ex == nil || ex.Type != tree.TypeDir
		if !dry {
			if err := rs.dst.MkDir(ctx, p, n); err != nil {
				rs.fail(p, err)
				return nil
			}
		}
		rs.stats.Dirs++
		if err := rs.walk(ctx, n, p, fresh || created); err != nil {
			return err
		}
		if !dry {
			rs.dirs = append(rs.dirs, dirMeta{p, n})
		}
		return nil
	}
	if n.Type != tree.TypeFile && n.Type != tree.TypeSymlink {
		return nil
	}
	what := kindName(n.Type)
	switch {
	case ex == nil:
		rs.report(Create, p, "")
		rs.stats.Created++
	case ex.Type == tree.TypeDir && !(rs.opt.Overwrite == OverwriteAlways && rs.opt.Delete):
		rs.fail(p, &ConflictError{Path: p, Existing: "directory", Snapshot: what,
			Remedy: "move it away, or restore with --overwrite always --delete to remove the directory and all it holds"})
		return nil
	case ex.Type == tree.TypeDir:
		rs.report(Replace, p, "a directory where the snapshot has a "+what+", removed with all it holds")
		rs.stats.Replaced++
		if !dry {
			if err := rs.insp.Remove(ctx, p, false); err != nil {
				rs.fail(p, err)
				return nil
			}
		}
	default:
		a, why := rs.decide(n, ex)
		if ex.Type != n.Type && why != "" {
			why = "a " + ex.Kind() + " where the snapshot has a " + what
		}
		rs.report(a, p, why)
		switch a {
		case Unchanged:
			rs.stats.Unchanged++
			return nil
		case Keep:
			rs.stats.Kept++
			return nil
		}
		rs.stats.Replaced++
	}
	if n.Type == tree.TypeSymlink {
		if !dry {
			if err := rs.dst.Symlink(ctx, p, n); err != nil {
				rs.fail(p, err)
			}
		}
		rs.opt.Progress.Files.Add(1)
		return nil
	}
	if dry {
		rs.stats.Files++
		rs.stats.Bytes += n.Size
		return nil
	}
	rs.file(ctx, p, n)
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
	f := &restoreFile{path: p, node: n}
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
			runs = append(runs, &run{file: f, pack: pack, kind: loc.Kind, start: loc.Offset, end: loc.Offset + loc.Length})
			last++
		}
		runs[last].blobs = append(runs[last].blobs, loc)
		runs[last].fileAt = append(runs[last].fileAt, l.Start(i))
	}
	rs.stats.Files++
	rs.stats.Bytes += n.Size
	if rs.creates != nil {
		f.created = make(chan struct{})
		rs.creates <- f // the creator always drains creates
	}
	if len(runs) == 0 {
		// An empty file: just created, with the last fetch planned.
		f.pending.Store(1)
		rs.plan(&run{file: f})
		return
	}
	if rs.opt.Memory != nil && len(runs) > 1 {
		// One job, in order: its writer holds one part at a time, and
		// no worker holding memory waits for another's job.
		f.pending.Store(1)
		rs.send(&fetch{runs: runs, serial: true})
		return
	}
	f.pending.Store(int64(len(runs)))
	for _, ru := range runs {
		rs.plan(ru)
	}
}

// plan adds ru to the fetch being planned for its pack if it lies within
// maxGap of it (before, after or inside: the blob workers of a backup
// pack nearby files in any order) and the fetch stays within maxRun and
// fetchFiles; otherwise it hands that fetch on and starts a new one.
// Files are planned in tree order, and a backup packs them in about that
// order, so the small files of a folder mostly come out of a few reads.
// An empty file (no blobs) joins the last fetch.
func (rs *restorer) plan(ru *run) {
	if len(ru.blobs) == 0 {
		if c := rs.last; c != nil && len(c.runs) < rs.fetchFiles {
			c.runs = append(c.runs, ru)
			return
		}
		rs.send(&fetch{runs: []*run{ru}})
		return
	}
	for i, c := range rs.open {
		if c.pack != ru.pack || c.kind != ru.kind {
			continue
		}
		start, end := min(c.start, ru.start), max(c.end, ru.end)
		if ru.start <= c.end+maxGap && ru.end+maxGap >= c.start && end-start <= maxRun && len(c.runs) < rs.fetchFiles {
			c.start, c.end = start, end
			c.runs = append(c.runs, ru)
			rs.last = c
			return
		}
		rs.open = append(rs.open[:i], rs.open[i+1:]...)
		rs.send(c)
		break
	}
	if len(rs.open) == maxOpenFetches {
		c := rs.open[0]
		rs.open = rs.open[1:]
		rs.send(c)
	}
	c := &fetch{pack: ru.pack, kind: ru.kind, start: ru.start, end: ru.end, runs: []*run{ru}}
	rs.open = append(rs.open, c)
	rs.last = c
}

// send hands fe on to the workers. It blocks until one takes it, even if
// the restore is cancelled: every planned run must reach a worker, which
// fails it, so that each file created is closed (and, if incomplete,
// removed).
func (rs *restorer) send(fe *fetch) {
	if fe == rs.last {
		rs.last = nil
	}
	rs.fetches <- fe
}

// flushAll hands on every fetch being planned.
func (rs *restorer) flushAll() {
	for _, c := range rs.open {
		rs.send(c)
	}
	rs.open = nil
}

// create creates f once; a failure fails f.
func (rs *restorer) create(ctx context.Context, f *restoreFile) {
	f.createOnce.Do(func() {
		var err error
		if err = ctx.Err(); err == nil {
			f.w, err = rs.dst.CreateFile(ctx, f.path, f.node)
		}
		if err != nil {
			rs.failFile(f, err)
		}
	})
}

// created returns once f is created (or failed): it creates f unless a
// creator does.
func (rs *restorer) created(ctx context.Context, f *restoreFile) {
	if f.created != nil {
		<-f.created
		return
	}
	rs.create(ctx, f)
}

func (rs *restorer) failFile(f *restoreFile, err error) {
	f.failed.Store(true)
	f.errOnce.Do(func() { rs.fail(f.path, err) })
}

// need is what job fe holds at most: the bytes it reads at once, a
// decompression buffer for its largest compressed blob, and what the
// writers of its files hold. A serial job reads ahead when the budget
// holds two reads. (A job larger than the whole budget, which only a
// budget under a blob and a part can meet, takes all of it and so runs
// alone.)
func (rs *restorer) need(fe *fetch) int64 {
	var n, read, raw int64
	seen := map[*restoreFile]bool{}
	for _, ru := range fe.runs {
		if fe.serial {
			read = max(read, int64(ru.end-ru.start))
		}
		for _, b := range ru.blobs {
			if b.Comp != format.CompNone {
				raw = max(raw, int64(b.RawLen))
			}
		}
		if rs.buffered != nil && !seen[ru.file] {
			seen[ru.file] = true
			n += rs.buffered.FileBuffer(ru.file.node)
		}
	}
	if !fe.serial {
		read = int64(fe.end - fe.start)
	}
	if fe.serial && n+2*read+raw <= rs.opt.Memory.Size() {
		fe.ahead = true
		read *= 2
	}
	return n + read + raw
}

// job runs fe within the memory budget, if there is one: it reserves
// what fe holds before starting it (holding nothing while it waits) and
// gives it back after.
func (rs *restorer) job(ctx context.Context, fe *fetch, scratch []byte) []byte {
	if rs.opt.Memory == nil {
		return rs.doFetch(ctx, fe, scratch)
	}
	n := min(rs.need(fe), rs.opt.Memory.Size())
	if err := rs.opt.Memory.Acquire(ctx, n); err != nil {
		// Cancelled: doFetch fails the runs without reading.
		return rs.doFetch(ctx, fe, scratch)
	}
	rs.doFetch(ctx, fe, scratch)
	rs.opt.Memory.Release(n)
	return nil // the next job reserves its own decompression buffer
}

// doFetch reads fe's range once (a serial fe: each run in turn) and
// writes its runs to their files, finishing every file whose last run
// this was.
func (rs *restorer) doFetch(ctx context.Context, fe *fetch, scratch []byte) []byte {
	if fe.serial {
		return rs.doSerial(ctx, fe, scratch)
	}
	var data []byte
	var err error
	for _, ru := range fe.runs {
		rs.created(ctx, ru.file)
	}
	// Nothing to read if every file fed failed, or all are empty.
	need := false
	for _, ru := range fe.runs {
		need = need || (len(ru.blobs) > 0 && !ru.file.failed.Load())
	}
	switch {
	case !need:
	case ctx.Err() != nil:
		err = ctx.Err()
	default:
		data, err = rs.r.LoadPackRange(ctx, fe.kind, fe.pack, int64(fe.start), int64(fe.end-fe.start))
	}
	if err != nil {
		for _, ru := range fe.runs {
			if len(ru.blobs) > 0 && !ru.file.failed.Load() {
				rs.failFile(ru.file, &engine.BlobError{ID: ru.blobs[0].ID, Pack: fe.pack, Err: err})
			}
		}
	} else if data != nil {
		scratch = rs.writeFetch(fe, data, scratch)
	}
	data = nil
	var done []*restoreFile
	for _, ru := range fe.runs {
		if f := ru.file; f.pending.Add(-1) == 0 {
			done = append(done, f)
		}
	}
	rs.finishAll(done)
	return scratch
}

// doSerial reads and writes the runs of one file in order, reading the
// next run while it writes one when fe.ahead (need counts two reads).
func (rs *restorer) doSerial(ctx context.Context, fe *fetch, scratch []byte) []byte {
	f := fe.runs[0].file
	rs.created(ctx, f)
	type read struct {
		data []byte
		err  error
	}
	load := func(ru *run) chan read {
		ch := make(chan read, 1)
		if f.failed.Load() {
			ch <- read{err: errSkipped}
			return ch
		}
		go func() {
			err := ctx.Err()
			var data []byte
			if err == nil {
				data, err = rs.r.LoadPackRange(ctx, ru.kind, ru.pack, int64(ru.start), int64(ru.end-ru.start))
			}
			ch <- read{data, err}
		}()
		return ch
	}
	var next chan read
	for i, ru := range fe.runs {
		if next == nil {
			next = load(ru)
		}
		rd := <-next
		next = nil
		if fe.ahead && i+1 < len(fe.runs) {
			next = load(fe.runs[i+1])
		}
		if f.failed.Load() {
			continue // drain the read ahead
		}
		if rd.err != nil {
			rs.failFile(f, &engine.BlobError{ID: ru.blobs[0].ID, Pack: ru.pack, Err: rd.err})
			continue
		}
		one := &fetch{pack: ru.pack, kind: ru.kind, start: ru.start, end: ru.end, runs: []*run{ru}}
		scratch = rs.writeFetch(one, rd.data, scratch)
	}
	if f.pending.Add(-1) == 0 {
		rs.finish(f)
	}
	return scratch
}

// errSkipped stands for a read not made because its file already failed.
var errSkipped = errors.New("skipped")

// finishAll finishes fs: in turn, or, when closes is set, up to its
// capacity at once across the workers (small objects' PUTs).
func (rs *restorer) finishAll(fs []*restoreFile) {
	if rs.closes == nil || len(fs) < 2 {
		for _, f := range fs {
			rs.finish(f)
		}
		return
	}
	var wg sync.WaitGroup
	for _, f := range fs {
		rs.closes <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-rs.closes; wg.Done() }()
			rs.finish(f)
		}()
	}
	wg.Wait()
}

// target is one place a blob of a fetch goes: blob i of run ru.
type target struct {
	ru *run
	i  int
}

// writeFetch opens each blob of fe, whose sealed bytes are data, once, in
// place, and writes it to every file that holds it: files with the same
// content share their blobs, and so the bytes of one read.
func (rs *restorer) writeFetch(fe *fetch, data, scratch []byte) []byte {
	var ts []target
	for _, ru := range fe.runs {
		for i := range ru.blobs {
			ts = append(ts, target{ru, i})
		}
	}
	sort.SliceStable(ts, func(a, b int) bool { return ts[a].ru.blobs[ts[a].i].Offset < ts[b].ru.blobs[ts[b].i].Offset })
	for len(ts) > 0 {
		loc := ts[0].ru.blobs[ts[0].i]
		n := 1
		for n < len(ts) && ts[n].ru.blobs[ts[n].i].Offset == loc.Offset {
			n++
		}
		same := ts[:n]
		ts = ts[n:]
		need := false
		for _, t := range same {
			need = need || !t.ru.file.failed.Load()
		}
		if !need {
			continue
		}
		off := loc.Offset - fe.start
		plain, s, err := rs.r.OpenBlobInPlace(data[off:off+loc.Length], loc, fe.pack, scratch)
		scratch = s
		for _, t := range same {
			f := t.ru.file
			if f.failed.Load() {
				continue
			}
			if err != nil {
				rs.failFile(f, err)
				continue
			}
			if _, werr := f.w.WriteAt(plain, t.ru.fileAt[t.i]); werr != nil {
				rs.failFile(f, fmt.Errorf("write: %w", werr))
				continue
			}
			rs.opt.Progress.Bytes.Add(int64(len(plain)))
		}
	}
	return scratch
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
