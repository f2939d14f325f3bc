package tree

import (
	"context"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// TreeCache keeps decoded directories and pages (the mount's LRU); the
// loaders it is given read and decode them on a miss. Index pages are
// kept by Dir too, as a Dir with IndexLevel set: a blob decodes as one or
// the other, never both, and readers check which they got. Cached values
// are shared: callers must not modify them.
type Cache interface {
	Dir(ctx context.Context, id crypto.ID, load func(context.Context) (*Dir, error)) (*Dir, error)
	Page(ctx context.Context, id crypto.ID, load func(context.Context) ([]Node, error)) ([]Node, error)
}
