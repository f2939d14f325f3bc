package restore

import (
	"context"
	"io"

	"github.com/coffer-backup/coffer/engine/tree"
)

// Destination is where a restore writes: a folder, a bucket. A path is
// "" for the restore target itself and otherwise "/" followed by the
// entry's segments joined by "/" ("/a/b"; an entry with an empty name at
// the top, from the S3 key "/x", is "/" and its child "//x"). The leading
// slash keeps the target and such an entry apart.
type Destination interface {
	URI() string
	// MkDir creates a directory (path "" is the target itself).
	MkDir(ctx context.Context, path string, n *tree.Node) error
	// CreateFile starts a file of n.Size bytes; the restore writes every
	// byte through WriteAt and then calls Close, which applies metadata.
	CreateFile(ctx context.Context, path string, n *tree.Node) (FileWriter, error)
	// Symlink creates a symbolic link.
	Symlink(ctx context.Context, path string, n *tree.Node) error
	// FinishDir applies a directory's metadata after its contents.
	FinishDir(ctx context.Context, path string, n *tree.Node) error
}

// FileWriter receives a file's content, possibly out of order.
type FileWriter interface {
	io.WriterAt
	// Close finishes the file; abort discards what was written.
	Close(abort bool) error
}

// SerialCreator is implemented by destinations on a local file system
// (a folder), whose files are best created by one creator ahead of the
// workers that write them, and whose directories, in a fresh restore, are
// best all created before any file. There, creators in one directory
// queue on its lock, and on ext4 without a journal each new inode scans
// the inodes of its group freed in the last minute: after "rm -rf" of a
// tree, a restore that puts thousands of files into the groups the
// deleted tree used scans thousands of inodes per file. Directories made
// first land together near their parent, and files created round-robin
// over their folders spread over many groups instead of filling the
// freed ones (see docs/PERFORMANCE.md, "Restore on a busy disk"). Other
// destinations have each file created by the first worker that needs it.
type SerialCreator interface {
	// MkDirAhead creates the directory at path (its parent exists)
	// before the walk reaches it, reporting nothing; the walk's MkDir
	// then finds it there. An error is ignored: MkDir reports it.
	MkDirAhead(ctx context.Context, path string) error
	// MaxOpen says how many files the process may hold open at once (0:
	// no limit known). The restore keeps the files it has created and
	// not finished well below it.
	MaxOpen() int
}

// BesideFiler is implemented by destinations that must know, before
// MkDir, that a directory shares its name with a file in the same
// directory (S3 keys "a" and "a/b" restored into a folder).
type BesideFiler interface {
	BesideFile(path string)
}

// Existing is what a destination already holds at a path.
type Existing struct {
	Type   tree.NodeType // 0: neither a file, a directory nor a symlink (a fifo, a device)
	Size   uint64
	MTime  int64  // nanoseconds
	Mode   uint32 // permission bits and setuid, setgid, sticky as in tree.Node
	Target string // of a symlink
}

// Kind names e's type for messages.
func (e *Existing) Kind() string { return kindName(e.Type) }

func kindName(t tree.NodeType) string {
	switch t {
	case tree.TypeFile:
		return "file"
	case tree.TypeDir:
		return "directory"
	case tree.TypeSymlink:
		return "symlink"
	}
	return "special file"
}

// Child names an entry of a restored directory, for Inspector.Extras.
type Child struct {
	Name string
	Dir  bool
}

// Inspector is implemented by destinations that can say what is already
// there and remove it (folders). Options.Overwrite other than
// OverwriteAlways, Options.Delete and Options.DryRun need it.
type Inspector interface {
	// Lstat returns what is at path, nil if nothing, without following a
	// symlink. dir says the snapshot has a directory there.
	Lstat(ctx context.Context, path string, dir bool) (*Existing, error)
	// Empty says whether the directory at path holds nothing, so that a
	// restore into it need not look before each entry.
	Empty(ctx context.Context, path string) (bool, error)
	// Remove removes what is at path: a directory with all it holds.
	// dir is as for Lstat.
	Remove(ctx context.Context, path string, dir bool) error
	// Extras returns the local names of the entries of directory path
	// that are none of children.
	Extras(ctx context.Context, path string, children []Child) ([]string, error)
	// RemoveExtra removes the entry local (a name Extras returned) of
	// directory path, with all it holds.
	RemoveExtra(ctx context.Context, path, local string) error
}
