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

// BesideFiler is implemented by destinations that must know, before
// MkDir, that a directory shares its name with a file in the same
// directory (S3 keys "a" and "a/b" restored into a folder).
type BesideFiler interface {
	BesideFile(path string)
}
