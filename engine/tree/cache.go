package tree

import (
	"context"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// TreeCache keeps decoded directories and pages (the mount's LRU); the
// loaders it is given read and decode them on a miss. Cached values are
// shared: callers must not modify them.
type Cache interface {
	Dir(ctx context.Context, id crypto.ID, load func(context.Context) (*Dir, error)) (*Dir, error)
	Page(ctx context.Context, id crypto.ID, load func(context.Context) ([]Node, error)) ([]Node, error)
}
