package fusefs

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/coffer-backup/coffer/engine"
)

// SnapshotName is the folder name of a snapshot: its time in UTC, with
// "-" for ":" so that it is easy to type and valid everywhere, and its
// short id: 2026-11-25T01-02-03Z_3fa2b1c0.
func SnapshotName(sn *engine.Snapshot) string {
	return sn.Time.UTC().Format("2006-01-02T15-04-05Z") + "_" + sn.ID.Short()
}

// SourceName turns a source URI into one folder name: "%" becomes "%25"
// and "/" becomes "%2F", so /srv/data shows as %2Fsrv%2Fdata and
// s3://photos/2024/ as s3:%2F%2Fphotos%2F2024%2F; a name that would be
// "", "." or ".." becomes "%_", "%2E" or "%2E%2E". A name longer than 255
// bytes is cut and ends in "%~" and 16 hex digits of a hash of the URI.
func SourceName(uri string) string {
	s := strings.NewReplacer("%", "%25", "/", "%2F").Replace(uri)
	switch s {
	case "":
		return "%_"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	if len(s) > 255 {
		h := fnv.New64a()
		h.Write([]byte(uri))
		cut := 200
		for cut > 0 && (s[cut]&0xc0 == 0x80 || s[cut-1] == '%' || s[cut-2] == '%') {
			cut--
		}
		s = fmt.Sprintf("%s%%~%016x", s[:cut], h.Sum64())
	}
	return s
}

// totals are what statfs reports: the content of the snapshots shown.
type totals struct{ bytes, files uint64 }

func (f *FS) statfs(out *fuse.StatfsOut) {
	const bs = 4096
	t := f.totals.Load()
	if t == nil {
		t = &totals{}
	}
	*out = fuse.StatfsOut{}
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = (t.bytes + bs - 1) / bs
	out.Files = t.files
	out.NameLen = 255
}

// Lister is what the view of every snapshot reads the store again
// through, to show the snapshots made since it was mounted;
// *engine.Repo implements it. A repo without it shows the snapshots
// SnapshotsRoot was given, forever.
type Lister interface {
	// Snapshots lists every snapshot, oldest first (cheaply: the repo
	// keeps those it loaded).
	Snapshots(ctx context.Context) ([]*engine.Snapshot, error)
	// RefreshIndex reads the index files added since, so that the
	// blobs of the new snapshots are found.
	RefreshIndex(ctx context.Context) error
}

var _ Lister = (*engine.Repo)(nil)

// SnapshotsRoot returns the root of the view of every snapshot in snaps
// (oldest first, as engine.Repo.Snapshots returns them):
//
//	<time>_<shortid>/                    one folder per snapshot
//	latest -> <time>_<shortid>           the newest snapshot
//	by-source/<source>/<time>_<shortid>/ the same folders, by source
//	by-source/<source>/latest -> …       the newest of that source
//
// Building it reads no tree: a snapshot's folder loads its root
// directory when it is first looked into. If the repo is a Lister, a
// lookup, listing or stat of the root, by-source/ or a source's folder,
// or of a "latest" link, lists the snapshots again when the list is older
// than Options.Refresh: new snapshots appear, removed ones go, and the
// folders that stay keep their inode numbers.
func (f *FS) SnapshotsRoot(snaps []*engine.Snapshot) fs.InodeEmbedder {
	f.list.mu.Lock()
	f.list.view = f.newView(snaps)
	f.list.at = time.Now()
	f.list.mu.Unlock()
	return &listDir{fsys: f, kind: listRoot}
}

// snapshotList is the snapshot list a view of every snapshot shows, and
// when it was read.
type snapshotList struct {
	mu      sync.Mutex // held while the list is read again
	view    *listView
	at      time.Time
	mounted int64 // the time of folders with no snapshot
}

// listView is one reading of the snapshot list. It does not change.
type listView struct {
	byName  map[string]*engine.Snapshot // by folder name
	newest  string                      // folder name; "" if none
	mtime   int64                       // the newest snapshot's time
	sources map[string]*sourceView      // by SourceName
	names   []string                    // folder names, oldest first
	srcs    []string                    // source folder names, sorted
}

// sourceView is what by-source/<source>/ shows.
type sourceView struct {
	byName map[string]*engine.Snapshot
	names  []string
	newest string
	mtime  int64
}

func (f *FS) newView(snaps []*engine.Snapshot) *listView {
	v := &listView{byName: map[string]*engine.Snapshot{}, sources: map[string]*sourceView{}, mtime: f.list.mounted}
	var t totals
	first := true
	for _, sn := range snaps {
		name, src := SnapshotName(sn), SourceName(sn.Source)
		if v.byName[name] != nil {
			continue // the same snapshot twice: cannot happen but once
		}
		t.bytes += sn.Stats.Bytes
		t.files += sn.Stats.Files + sn.Stats.Dirs
		v.byName[name] = sn
		v.names = append(v.names, name)
		if tm := sn.Time.UnixNano(); first || tm >= v.mtime {
			v.mtime, v.newest, first = tm, name, false
		}
		sv := v.sources[src]
		if sv == nil {
			sv = &sourceView{byName: map[string]*engine.Snapshot{}}
			v.sources[src] = sv
			v.srcs = append(v.srcs, src)
		}
		sv.byName[name] = sn
		sv.names = append(sv.names, name)
		if tm := sn.Time.UnixNano(); sv.newest == "" || tm >= sv.mtime {
			sv.mtime, sv.newest = tm, name
		}
	}
	sort.Strings(v.srcs)
	f.totals.Store(&t)
	return v
}

// view returns the snapshot list, read again first if it is older than
// Options.Refresh. A failure is logged, and the list kept until the next
// refresh is due.
func (f *FS) view(ctx context.Context) *listView {
	l := &f.list
	l.mu.Lock()
	defer l.mu.Unlock()
	lister, ok := f.repo.(Lister)
	if !ok || f.opt.Refresh < 0 || time.Since(l.at) < f.opt.Refresh {
		return l.view
	}
	// The snapshots first: a snapshot is written after its index files,
	// so every snapshot listed finds its blobs in the index read next.
	snaps, err := lister.Snapshots(ctx)
	if err == nil {
		err = lister.RefreshIndex(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			f.errno("refresh", "the snapshot list", err)
			l.at = time.Now()
		}
		return l.view
	}
	l.view, l.at = f.newView(snaps), time.Now()
	return l.view
}

// listTimeout is how long the kernel may keep what the folders of the
// snapshot list show: entries (and their absence) and attributes.
func (f *FS) listTimeout() time.Duration {
	if _, ok := f.repo.(Lister); ok && f.opt.Refresh >= 0 {
		return min(f.opt.Refresh, Timeout)
	}
	return Timeout
}

// snapshotDir is the folder of snapshot sn: its root directory, which
// shows the snapshot's time if the source's root has none (S3).
func (f *FS) snapshotDir(sn *engine.Snapshot) *dirNode {
	return &dirNode{entry: entry{fsys: f, n: *sn.RootNode(), snap: sn.Time.UnixNano()}}
}

// SubtreeRoot returns the root of the view of one directory n of
// snapshot sn (n is sn.RootNode() for the whole snapshot).
func (f *FS) SubtreeRoot(sn *engine.Snapshot, n *tree.Node) (fs.InodeEmbedder, error) {
	if n.Type != tree.TypeDir {
		return nil, fmt.Errorf("%s is a %s, not a directory", n.Name, n.Type)
	}
	f.totals.Store(&totals{bytes: sn.Stats.Bytes, files: sn.Stats.Files + sn.Stats.Dirs})
	return &dirNode{entry: entry{fsys: f, n: *n, snap: sn.Time.UnixNano()}}, nil
}

// listKind says which folder of the snapshot list a listDir is.
type listKind int

const (
	listRoot     listKind = iota // the root
	listBySource                 // by-source/
	listSource                   // by-source/<source>/
)

// listDir is a folder of the snapshot list. It keeps nothing: every
// lookup and listing reads the current list (FS.view), and gives each
// name the same inode number every time.
type listDir struct {
	fs.Inode
	fsys *FS
	kind listKind
	src  string // listSource: the source's folder name
}

var (
	_ = (fs.NodeLookuper)((*listDir)(nil))
	_ = (fs.NodeReaddirer)((*listDir)(nil))
	_ = (fs.NodeGetattrer)((*listDir)(nil))
	_ = (fs.NodeStatfser)((*listDir)(nil))
)

// child is an entry of a listDir.
type child struct {
	name string
	mode uint32
	node func() fs.InodeEmbedder
}

// children returns d's entries in v, sorted by name; ok is false if d is
// gone (a source whose snapshots were all removed).
func (d *listDir) children(v *listView) (cs []child, mtime int64, ok bool) {
	f := d.fsys
	dir := func(sn *engine.Snapshot) func() fs.InodeEmbedder {
		return func() fs.InodeEmbedder { return f.snapshotDir(sn) }
	}
	link := func(src string) func() fs.InodeEmbedder {
		return func() fs.InodeEmbedder { return &latestLink{fsys: f, src: src} }
	}
	switch d.kind {
	case listRoot:
		for _, name := range v.names {
			cs = append(cs, child{name, syscall.S_IFDIR, dir(v.byName[name])})
		}
		cs = append(cs, child{"by-source", syscall.S_IFDIR, func() fs.InodeEmbedder { return &listDir{fsys: f, kind: listBySource} }})
		if v.newest != "" {
			cs = append(cs, child{"latest", syscall.S_IFLNK, link("")})
		}
		mtime = v.mtime
	case listBySource:
		for _, src := range v.srcs {
			cs = append(cs, child{src, syscall.S_IFDIR, func() fs.InodeEmbedder { return &listDir{fsys: f, kind: listSource, src: src} }})
		}
		mtime = v.mtime
	case listSource:
		sv := v.sources[d.src]
		if sv == nil {
			return nil, v.mtime, false
		}
		for _, name := range sv.names {
			cs = append(cs, child{name, syscall.S_IFDIR, dir(sv.byName[name])})
		}
		cs = append(cs, child{"latest", syscall.S_IFLNK, link(d.src)})
		mtime = sv.mtime
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	return cs, mtime, true
}

func (d *listDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	timeout := d.fsys.listTimeout()
	cs, _, _ := d.children(d.fsys.view(ctx))
	i := sort.Search(len(cs), func(i int) bool { return cs[i].name >= name })
	if i == len(cs) || cs[i].name != name {
		out.SetEntryTimeout(timeout) // a snapshot may come by that name
		return nil, syscall.ENOENT
	}
	c := cs[i]
	node := c.node()
	ch := d.NewInode(ctx, node, fs.StableAttr{Mode: c.mode, Ino: childIno(d.StableAttr().Ino, c.name)})
	var ao fuse.AttrOut
	if ga, ok := ch.Operations().(fs.NodeGetattrer); ok {
		ga.Getattr(ctx, nil, &ao)
	}
	out.Attr = ao.Attr
	out.Attr.Ino = ch.StableAttr().Ino
	out.SetEntryTimeout(timeout) // the snapshot may be removed
	out.SetAttrTimeout(timeout)
	return ch, 0
}

func (d *listDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ino := d.StableAttr().Ino
	cs, _, _ := d.children(d.fsys.view(ctx))
	list := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: ino}, {Name: "..", Mode: syscall.S_IFDIR, Ino: 1}}
	for _, c := range cs {
		list = append(list, fuse.DirEntry{Name: c.name, Mode: c.mode, Ino: childIno(ino, c.name)})
	}
	return fs.NewListDirStream(list), 0
}

func (d *listDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	_, mtime, _ := d.children(d.fsys.view(ctx))
	fillAttr(&tree.Node{Type: tree.TypeDir, Mode: 0o555, MTime: mtime}, d.StableAttr().Ino, &out.Attr)
	out.SetTimeout(d.fsys.listTimeout())
	return 0
}

func (d *listDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.fsys.statfs(out)
	return 0
}

// latestLink is a "latest" link: to the newest snapshot, or the newest
// of source src.
type latestLink struct {
	fs.Inode
	fsys *FS
	src  string // "" for every source
}

var (
	_ = (fs.NodeReadlinker)((*latestLink)(nil))
	_ = (fs.NodeGetattrer)((*latestLink)(nil))
)

// target returns the link's target and the time of that snapshot.
func (l *latestLink) target(v *listView) (string, int64) {
	if l.src == "" {
		return v.newest, v.mtime
	}
	if sv := v.sources[l.src]; sv != nil {
		return sv.newest, sv.mtime
	}
	return "", v.mtime
}

func (l *latestLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, _ := l.target(l.fsys.view(ctx))
	if t == "" {
		return nil, syscall.ENOENT
	}
	return []byte(t), 0
}

func (l *latestLink) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t, mtime := l.target(l.fsys.view(ctx))
	fillAttr(&tree.Node{Type: tree.TypeSymlink, Mode: 0o777, MTime: mtime, Target: t}, l.StableAttr().Ino, &out.Attr)
	out.SetTimeout(l.fsys.listTimeout())
	return 0
}
