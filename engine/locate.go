package engine

import (
	"context"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// Locate says where blob id is stored, from the index: its place in its
// pack and the pack's id. A reader that fetches a range of a pack around
// the blob (LoadPackRange) opens it with OpenBlobInPlace.
func (r *Repo) Locate(id crypto.ID) (loc format.BlobLoc, pack crypto.ID, ok bool) {
	return r.Index.Lookup(id)
}

// PackSize is the stored size of a pack of blobs of kind k, so that a
// range read around a blob stays inside the pack.
func (r *Repo) PackSize(ctx context.Context, k format.BlobKind, pack crypto.ID) (int64, error) {
	info, err := r.st.Stat(ctx, PackHandle(k, pack))
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}
