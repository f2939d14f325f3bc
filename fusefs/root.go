package fusefs

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"syscall"

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
	*out = fuse.StatfsOut{}
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = (f.totals.bytes + bs - 1) / bs
	out.Files = f.totals.files
	out.NameLen = 255
}

// SnapshotsRoot returns the root of the view of every snapshot in snaps
// (oldest first, as engine.Repo.Snapshots returns them):
//
//	<time>_<shortid>/                    one folder per snapshot
//	latest -> <time>_<shortid>           the newest snapshot
//	by-source/<source>/<time>_<shortid>/ the same folders, by source
//	by-source/<source>/latest -> …       the newest of that source
//
// Building it reads no tree: a snapshot's folder loads its root
// directory when it is first looked into.
func (f *FS) SnapshotsRoot(snaps []*engine.Snapshot) fs.InodeEmbedder {
	var newest int64
	f.totals = totals{}
	for _, sn := range snaps {
		newest = max(newest, sn.Time.UnixNano())
		f.totals.bytes += sn.Stats.Bytes
		f.totals.files += sn.Stats.Files + sn.Stats.Dirs
	}
	root := &staticDir{fsys: f, mtime: newest}
	bySource := &staticDir{fsys: f}
	sources := map[string]*staticDir{}
	for _, sn := range snaps {
		name := SnapshotName(sn)
		root.add(name, f.snapshotDir(sn))
		src := SourceName(sn.Source)
		sd := sources[src]
		if sd == nil {
			sd = &staticDir{fsys: f}
			sources[src] = sd
			bySource.add(src, sd)
		}
		sd.add(name, f.snapshotDir(sn))
		sd.mtime = max(sd.mtime, sn.Time.UnixNano())
		sd.setLink("latest", name)
		bySource.mtime = max(bySource.mtime, sn.Time.UnixNano())
	}
	root.add("by-source", bySource)
	if len(snaps) > 0 {
		root.setLink("latest", SnapshotName(snaps[len(snaps)-1]))
	}
	return root
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
	f.totals = totals{bytes: sn.Stats.Bytes, files: sn.Stats.Files + sn.Stats.Dirs}
	return &dirNode{entry: entry{fsys: f, n: *n, snap: sn.Time.UnixNano()}}, nil
}

// staticDir is a folder of the snapshot list: its children are fixed when
// the tree is built.
type staticDir struct {
	fs.Inode
	fsys     *FS
	mtime    int64
	children []staticChild
}

type staticChild struct {
	name string
	node fs.InodeEmbedder
	mode uint32
}

var (
	_ = (fs.NodeOnAdder)((*staticDir)(nil))
	_ = (fs.NodeReaddirer)((*staticDir)(nil))
	_ = (fs.NodeGetattrer)((*staticDir)(nil))
	_ = (fs.NodeStatfser)((*staticDir)(nil))
)

func (d *staticDir) add(name string, node fs.InodeEmbedder) {
	mode := uint32(syscall.S_IFDIR)
	if _, ok := node.(*staticLink); ok {
		mode = syscall.S_IFLNK
	}
	d.children = append(d.children, staticChild{name: name, node: node, mode: mode})
}

func (d *staticDir) setLink(name, target string) {
	for i := range d.children {
		if d.children[i].name == name {
			d.children[i].node = &staticLink{fsys: d.fsys, target: target, mtime: d.mtime}
			return
		}
	}
	d.add(name, &staticLink{fsys: d.fsys, target: target, mtime: d.mtime})
}

func (d *staticDir) OnAdd(ctx context.Context) {
	sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
	ino := d.StableAttr().Ino
	for _, c := range d.children {
		ch := d.NewPersistentInode(ctx, c.node, fs.StableAttr{Mode: c.mode, Ino: childIno(ino, c.name)})
		d.AddChild(c.name, ch, false)
	}
}

func (d *staticDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ino := d.StableAttr().Ino
	list := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: ino}, {Name: "..", Mode: syscall.S_IFDIR, Ino: 1}}
	for _, c := range d.children {
		list = append(list, fuse.DirEntry{Name: c.name, Mode: c.mode, Ino: childIno(ino, c.name)})
	}
	return fs.NewListDirStream(list), 0
}

func (d *staticDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&tree.Node{Type: tree.TypeDir, Mode: 0o555, MTime: d.mtime}, d.StableAttr().Ino, &out.Attr)
	return 0
}

func (d *staticDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.fsys.statfs(out)
	return 0
}

// staticLink is a "latest" link.
type staticLink struct {
	fs.Inode
	fsys   *FS
	target string
	mtime  int64
}

var (
	_ = (fs.NodeReadlinker)((*staticLink)(nil))
	_ = (fs.NodeGetattrer)((*staticLink)(nil))
)

func (l *staticLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.target), 0
}

func (l *staticLink) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&tree.Node{Type: tree.TypeSymlink, Mode: 0o777, MTime: l.mtime, Target: l.target}, l.StableAttr().Ino, &out.Attr)
	return 0
}
