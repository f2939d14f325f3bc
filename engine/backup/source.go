package backup

import (
	"context"
	"io"
	"strings"

	"github.com/coffer-backup/coffer/engine/tree"
)

// Item is one entry a Source walks: its path below the source root and
// what the source knows about it.
type Item struct {
	// Path is the entry's segments joined by "/"; "" is the root. A
	// segment may be empty (S3 keys like "a//b"), so Path is split, never
	// cleaned.
	Path string
	Node tree.Node
}

// Segments splits a path into its segments; the root has none.
func Segments(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Source is something to back up: a folder, a bucket.
type Source interface {
	// URI names the source; backups of the same URI form a chain of
	// parents.
	URI() string
	// Walk calls fn for every entry, depth first: a directory before its
	// contents, and the entries of a directory in ascending sort-key order
	// (Node.SortKey). Directories may be left implicit, as S3 prefixes are;
	// the backup creates them. Entries it cannot read are reported to warn
	// and left out.
	Walk(ctx context.Context, fn func(*Item) error, warn func(path string, err error)) error
	// Open returns the content of a file item. It may complete
	// it.Node.Attrs (an S3 source fills headers from the GET that reads a
	// changed object); the backup reads the node only after the content.
	Open(ctx context.Context, it *Item) (io.ReadCloser, error)
}

// AttrReuser is implemented by sources whose per-entry attributes cost a
// request each (S3 HEAD and tagging calls). The backup calls DeferAttrs
// once before Walk, so the walk lists without fetching attributes; for a
// file it reuses unchanged from the parent snapshot it calls ReuseAttrs,
// and for any other file the source fills Attrs in Open. An unchanged
// bucket then costs its LIST and nothing else.
type AttrReuser interface {
	DeferAttrs()
	ReuseAttrs(prev, cur *tree.Node)
}

// SourceInfo is implemented by sources that describe themselves in the
// snapshot (a bucket's name, region, creation date, owner).
type SourceInfo interface {
	Info(ctx context.Context) ([]tree.Attr, error)
}
