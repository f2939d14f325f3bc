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
	sorted  []string                    // the root's entries, sorted
	srcs    []string                    // source folder names, sorted
}

// sourceView is what by-source/<source>/ shows.
type sourceView struct {
	byName map[string]*engine.Snapshot
	sorted []string // entries, sorted
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
			continue // one snapshot listed twice: shown once
		}
		t.bytes += sn.Stats.Bytes
		t.files += sn.Stats.Files + sn.Stats.Dirs
		v.byName[name] = sn
		v.sorted = append(v.sorted, name)
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
		sv.sorted = append(sv.sorted, name)
		if tm := sn.Time.UnixNano(); sv.newest == "" || tm >= sv.mtime {
			sv.mtime, sv.newest = tm, name
		}
	}
	v.sorted = append(v.sorted, "by-source")
	if v.newest != "" {
		v.sorted = append(v.sorted, "latest")
	}
	sort.Strings(v.sorted)
	for _, sv := range v.sources {
		sv.sorted = append(sv.sorted, "latest")
		sort.Strings(sv.sorted)
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

func (l *listDir) owner() *FS { return l.fsys }

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
	noXattrs
	fsys *FS
	kind listKind
	src  string // listSource: the source's folder name
}

var (
	_ = (fs.NodeLookuper)((*listDir)(nil))
	_ = (fs.NodeReaddirer)((*listDir)(nil))
	_ = (fs.NodeGetattrer)((*listDir)(nil))
	_ = (fs.NodeStatfser)((*listDir)(nil))
	_ = (fs.NodeGetxattrer)((*listDir)(nil))
)

// entries returns the names in d in v, sorted, and d's mtime; ok is
// false if d is gone (a source whose snapshots were all removed).
func (d *listDir) entries(v *listView) (names []string, mtime int64, ok bool) {
	switch d.kind {
	case listRoot:
		return v.sorted, v.mtime, true
	case listBySource:
		return v.srcs, v.mtime, true
	}
	sv := v.sources[d.src]
	if sv == nil {
		return nil, v.mtime, false
	}
	return sv.sorted, sv.mtime, true
}

// child returns the node of entry name of d in v, and its type.
func (d *listDir) child(v *listView, name string) (fs.InodeEmbedder, uint32, bool) {
	f := d.fsys
	switch d.kind {
	case listRoot:
		if sn := v.byName[name]; sn != nil {
			return f.snapshotDir(sn), syscall.S_IFDIR, true
		}
		switch {
		case name == "by-source":
			return &listDir{fsys: f, kind: listBySource}, syscall.S_IFDIR, true
		case name == "latest" && v.newest != "":
			return &latestLink{fsys: f}, syscall.S_IFLNK, true
		}
	case listBySource:
		if v.sources[name] != nil {
			return &listDir{fsys: f, kind: listSource, src: name}, syscall.S_IFDIR, true
		}
	case listSource:
		sv := v.sources[d.src]
		if sv == nil {
			break
		}
		if sn := sv.byName[name]; sn != nil {
			return f.snapshotDir(sn), syscall.S_IFDIR, true
		}
		if name == "latest" {
			return &latestLink{fsys: f, src: d.src}, syscall.S_IFLNK, true
		}
	}
	return nil, 0, false
}

func (d *listDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	timeout := d.fsys.listTimeout()
	node, mode, ok := d.child(d.fsys.view(ctx), name)
	if !ok {
		out.SetEntryTimeout(timeout) // a snapshot may come by that name
		return nil, syscall.ENOENT
	}
	ch := d.NewInode(ctx, node, fs.StableAttr{Mode: mode, Ino: childIno(d.StableAttr().Ino, name)})
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
	v := d.fsys.view(ctx)
	names, _, _ := d.entries(v)
	list := make([]fuse.DirEntry, 0, 2+len(names))
	list = append(list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: ino}, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno(&d.Inode)})
	for _, name := range names {
		mode := uint32(syscall.S_IFDIR)
		if name == "latest" && d.kind != listBySource {
			mode = syscall.S_IFLNK
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: mode, Ino: childIno(ino, name)})
	}
	return fs.NewListDirStream(list), 0
}

func (d *listDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	_, mtime, _ := d.entries(d.fsys.view(ctx))
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
	noXattrs
	fsys *FS
	src  string // "" for every source
}

var (
	_ = (fs.NodeReadlinker)((*latestLink)(nil))
	_ = (fs.NodeGetattrer)((*latestLink)(nil))
	_ = (fs.NodeGetxattrer)((*latestLink)(nil))
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
