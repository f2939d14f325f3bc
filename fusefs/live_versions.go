package fusefs

import (
	"context"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/coffer-backup/coffer/engine/object"
)

// The versions of an object, in a live mount with --versions, are files
// in a hidden folder beside it: the object NAME (its local name) has the
// folder ".NAME%25%versions", which holds one read-only file per version,
// "<time>_<versionId>", time its last-modified time in UTC
// (2026-11-28T03-31-28.123Z, so names sort by time), and in the version
// id '%' written "%25" and '/' "%2F". A delete marker is an empty file
// "<time>_<versionId>.deleted" among them (an id that itself ends in
// ".deleted" has that '.' written "%2E", so only markers end so); an
// object whose latest version is a delete marker shows only its folder
// of versions, and so does a key that has only delete markers left.
// Names are collision-free: a key's versions and markers have distinct
// ids, and the escaping is reversible.
//
// No key's local name is ever a folder of versions: the mapping of
// engine/keymap keeps a segment as it is only when it holds no "%25"
// (a plain segment), and otherwise writes every '%' as "%25" (or "%00"
// for NUL), so a local name that holds "%25" has no other '%' save the
// suffixes "%~" and "%+" at its end; "%25%versions" holds "%25" and a
// '%' before "v".

// versionsSuffix ends the name of a folder of versions.
const versionsSuffix = "%25%versions"

// versionsName is the name of the folder of the versions of the object
// of local name local.
func versionsName(local string) string { return "." + local + versionsSuffix }

// versionsOf returns the local name of the object whose folder of
// versions is name, if it is one.
func versionsOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return "", false
	}
	local, ok := strings.CutSuffix(rest, versionsSuffix)
	return local, ok && local != ""
}

// markerSuffix ends the name of a delete marker in a folder of versions.
const markerSuffix = ".deleted"

// versionFileName names one version (or delete marker) in its folder.
func versionFileName(v object.LiveEntry) string {
	id := strings.NewReplacer("%", "%25", "/", "%2F").Replace(v.VersionID)
	if rest, ok := strings.CutSuffix(id, markerSuffix); ok {
		id = rest + "%2E" + markerSuffix[1:]
	}
	name := v.MTime.UTC().Format("2006-01-02T15-04-05.000Z") + "_" + id
	if v.Deleted {
		name += markerSuffix
	}
	return name
}

// liveVersions is the folder of the versions of one object, as the
// listing that found it gave them.
type liveVersions struct {
	fs.Inode
	slot // its place among the nodes the kernel keeps (live_inodes.go)
	fsys *LiveFS
	dir  *liveDir // the folder of the object
	name string   // its local name in dir
	key  string   // the object's key below the tree's prefix

	noXattrs

	mu sync.Mutex
	vs []object.LiveEntry
}

var (
	_ = (fs.NodeLookuper)((*liveVersions)(nil))
	_ = (fs.NodeReaddirer)((*liveVersions)(nil))
	_ = (fs.NodeGetattrer)((*liveVersions)(nil))
	_ = (fs.NodeGetxattrer)((*liveVersions)(nil))
)

func (v *liveVersions) set(e object.LiveEntry) {
	v.mu.Lock()
	v.vs = e.Versions
	v.mu.Unlock()
}

func (v *liveVersions) versions() []object.LiveEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.vs
}

func (v *liveVersions) fill(a *fuse.Attr) { (&liveDir{fsys: v.fsys}).fill(a) }

func (v *liveVersions) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	v.fill(&out.Attr)
	return 0
}

// Readdir lists the versions newest first, as S3 lists them (their names
// sort by time).
func (v *liveVersions) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	v.touch()
	v.fsys.inodes.opened()
	ino := v.StableAttr().Ino
	ents := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: ino}, {Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno(&v.Inode)}}
	for _, e := range v.versions() {
		name := versionFileName(e)
		ents = append(ents, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: inoHash(ino, 3, name)})
	}
	return fs.NewListDirStream(ents), 0
}

func (v *liveVersions) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	v.touch()
	for _, e := range v.versions() {
		if versionFileName(e) != name {
			continue
		}
		ch, fresh := v.node(ctx, name, e, &out.Attr)
		return v.fsys.inodes.track(ch, fresh, v.fsys.done), 0
	}
	return nil, syscall.ENOENT
}

// node returns the node of version e, named name, and whether it is new.
func (v *liveVersions) node(ctx context.Context, name string, e object.LiveEntry, a *fuse.Attr) (*fs.Inode, bool) {
	if ch := v.GetChild(name); ch != nil {
		switch n := ch.Operations().(type) {
		case *liveFile:
			if !e.Deleted {
				n.fill(a)
				return ch, false
			}
		case *liveMarker:
			if e.Deleted {
				n.fill(a)
				return ch, false
			}
		}
	}
	st := fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoHash(v.StableAttr().Ino, 3, name)}
	if e.Deleted {
		m := &liveMarker{fsys: v.fsys, e: e}
		m.fill(a)
		return v.NewInode(ctx, m, st), true
	}
	f := &liveFile{fsys: v.fsys, dir: v.dir, name: v.name, key: v.key}
	f.set(e)
	f.fill(a)
	return v.NewInode(ctx, f, st), true
}

// liveMarker is a delete marker in a folder of versions: an empty file
// of the marker's time, whose only attribute is its version id. Nothing
// is asked of the bucket to read it.
type liveMarker struct {
	fs.Inode
	slot // its place among the nodes the kernel keeps (live_inodes.go)
	fsys *LiveFS
	e    object.LiveEntry
}

var (
	_ = (fs.NodeGetattrer)((*liveMarker)(nil))
	_ = (fs.NodeOpener)((*liveMarker)(nil))
	_ = (fs.NodeReader)((*liveMarker)(nil))
	_ = (fs.NodeGetxattrer)((*liveMarker)(nil))
	_ = (fs.NodeListxattrer)((*liveMarker)(nil))
)

// markerAttrs are a marker's attributes, named as a version's are
// (s3io/attrs.go).
func (m *liveMarker) attrs() []object.LiveAttr {
	return []object.LiveAttr{{Key: "version_id", Value: []byte(m.e.VersionID)}}
}

func (m *liveMarker) fill(a *fuse.Attr) {
	f := liveFile{e: m.e}
	f.fill(a)
	a.Size, a.Blocks = 0, 0
}

func (m *liveMarker) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	m.fill(&out.Attr)
	return 0
}

func (m *liveMarker) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (m *liveMarker) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultData(nil), 0
}

func (m *liveMarker) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	key, ok := strings.CutPrefix(attr, xattrPrefix)
	if !ok {
		return 0, xattrUnsupported(attr)
	}
	return getXattr(m.attrs(), key, dest)
}

func (m *liveMarker) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listXattrs(m.attrs(), dest)
}
