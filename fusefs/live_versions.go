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
// id '%' written "%25" and '/' "%2F". Delete markers are left out; an
// object whose latest version is a delete marker shows only its folder
// of versions.
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

// versionFileName names one version in its folder.
func versionFileName(v object.LiveEntry) string {
	id := strings.NewReplacer("%", "%25", "/", "%2F").Replace(v.VersionID)
	return v.MTime.UTC().Format("2006-01-02T15-04-05.000Z") + "_" + id
}

// liveVersions is the folder of the versions of one object, as the
// listing that found it gave them.
type liveVersions struct {
	fs.Inode
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

func (v *liveVersions) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ino := v.StableAttr().Ino
	var ents []fuse.DirEntry
	for _, e := range v.versions() {
		name := versionFileName(e)
		ents = append(ents, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: inoHash(ino, 3, name)})
	}
	return fs.NewListDirStream(ents), 0
}

func (v *liveVersions) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	for _, e := range v.versions() {
		if versionFileName(e) != name {
			continue
		}
		if ch := v.GetChild(name); ch != nil {
			if f, ok := ch.Operations().(*liveFile); ok {
				f.fill(&out.Attr)
				return ch, 0
			}
		}
		f := &liveFile{fsys: v.fsys, dir: v.dir, name: v.name, key: v.key}
		f.set(e)
		f.fill(&out.Attr)
		return v.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoHash(v.StableAttr().Ino, 3, name)}), 0
	}
	return nil, syscall.ENOENT
}
