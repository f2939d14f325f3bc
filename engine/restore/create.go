package restore

import (
	"context"
	"strings"

	"github.com/coffer-backup/coffer/engine/tree"
)

// Creating the files and folders of a local folder: see SerialCreator
// and docs/PERFORMANCE.md, "Restore on a busy disk".

// besides finds, as a directory's entries go by in sort order, a
// directory that shares its name with a file: a file "x" sorts before the
// directory "x/" and everything between them starts with "x", so a stack
// of the names of files that are prefixes of the current sort key finds
// it without a lookup.
type besides struct{ files []string }

// next takes the next entry and says whether it is a directory beside a
// file of the same name.
func (b *besides) next(n *tree.Node) bool {
	key := n.SortKey()
	for len(b.files) > 0 && !strings.HasPrefix(key, b.files[len(b.files)-1]) {
		b.files = b.files[:len(b.files)-1]
	}
	if n.Type != tree.TypeDir {
		b.files = append(b.files, n.Name)
		return false
	}
	return len(b.files) > 0 && b.files[len(b.files)-1] == n.Name
}

// mkDirsAhead creates every directory below dir (at path) before the
// walk creates any file: made together, the folders land near their
// parent instead of wherever the files created before them left room.
// It reports nothing and stops at the first problem; the walk meets the
// same problem and reports it. It reads a folder's pages only until it
// has met all the folders its totals count (none for a folder of files
// only), so the walk is, in the main, the only reader of the pages of
// files. It returns how many folders its totals count below dir, and
// whether it met them all.
func (rs *restorer) mkDirsAhead(ctx context.Context, sc SerialCreator, dir *tree.Node, path string) (uint64, bool) {
	d, err := rs.r.LoadDir(ctx, dir.Subtree)
	if err != nil {
		return 0, false
	}
	left := d.Stats.Dirs // folders below, not yet met
	if left == 0 {
		return 0, true
	}
	bf, _ := rs.dst.(BesideFiler)
	var b besides
	it := rs.r.Iter(d)
	for {
		n, ok, err := it.Next(ctx)
		if err != nil || !ok || ctx.Err() != nil {
			return 0, false
		}
		beside := b.next(n)
		if n.Type != tree.TypeDir {
			continue
		}
		p := path + "/" + n.Name
		if beside && bf != nil {
			bf.BesideFile(p)
		}
		if sc.MkDirAhead(ctx, p) != nil {
			return 0, false
		}
		below, ok := rs.mkDirsAhead(ctx, sc, n, p)
		if !ok || below+1 > left {
			return 0, false // totals that do not add up: the walk reads on
		}
		if left -= below + 1; left == 0 {
			return d.Stats.Dirs, true
		}
	}
}

// creator creates the files the walker queues, ahead of the workers that
// wait for them. It takes what has queued up, up to the queue's size, and
// creates it round-robin over the folders the files are in: consecutive
// files in different folders spread over more of the file system's inode
// groups than a folder's files one after another (SerialCreator).
func (rs *restorer) creator(ctx context.Context) {
	batch := make([]*restoreFile, 0, cap(rs.creates))
	for f := range rs.creates {
		batch = append(batch[:0], f)
	more:
		for len(batch) < cap(batch) {
			select {
			case f, ok := <-rs.creates:
				if !ok {
					break more
				}
				batch = append(batch, f)
			default:
				break more
			}
		}
		for _, f := range roundRobin(batch) {
			rs.create(ctx, f)
			close(f.created)
		}
	}
}

// roundRobin orders files by their turn in their folder, and folders as
// they first appear: a/1 a/2 a/3 b/1 b/2 c/1 becomes a/1 b/1 c/1 a/2 b/2
// a/3.
func roundRobin(files []*restoreFile) []*restoreFile {
	if len(files) < 2 {
		return files
	}
	type folder struct{ files []*restoreFile }
	var folders []*folder
	at := map[string]*folder{}
	for _, f := range files {
		dir := f.path[:strings.LastIndexByte(f.path, '/')+1]
		fo := at[dir]
		if fo == nil {
			fo = &folder{}
			at[dir] = fo
			folders = append(folders, fo)
		}
		fo.files = append(fo.files, f)
	}
	if len(folders) == 1 {
		return files
	}
	out := make([]*restoreFile, 0, len(files))
	for turn := 0; len(out) < len(files); turn++ {
		for _, fo := range folders {
			if turn < len(fo.files) {
				out = append(out, fo.files[turn])
			}
		}
	}
	return out
}
