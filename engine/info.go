package engine

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
)

// StoreInfo summarizes a store.
type StoreInfo struct {
	Location      string  `json:"location"`
	StoreID       string  `json:"store_id"`
	Version       int     `json:"format_version"`
	Snapshots     int     `json:"snapshots"`
	DataPacks     int     `json:"data_packs"`
	TreePacks     int     `json:"tree_packs"`
	IndexFiles    int     `json:"index_files"`
	DataBlobs     int     `json:"data_blobs"`
	TreeBlobs     int     `json:"tree_blobs"`
	LogicalBytes  uint64  `json:"logical_bytes"`  // file content of all snapshots
	UniqueBytes   uint64  `json:"unique_bytes"`   // plaintext of the data blobs
	BlobBytes     uint64  `json:"blob_bytes"`     // stored (compressed, sealed) data blobs
	StoredBytes   uint64  `json:"stored_bytes"`   // everything under the store root
	DedupRatio    float64 `json:"dedup_ratio"`    // logical / unique
	CompressRatio float64 `json:"compress_ratio"` // unique / blob bytes
	TotalRatio    float64 `json:"total_ratio"`    // logical / stored
}

// Info gathers a store's figures from its snapshots, index and listing.
func (r *Repo) Info(ctx context.Context) (*StoreInfo, error) {
	if err := r.LoadIndex(ctx); err != nil {
		return nil, err
	}
	in := &StoreInfo{Location: r.st.Location(), StoreID: r.Params.StoreID, Version: r.Params.Version}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	in.Snapshots = len(snaps)
	for _, sn := range snaps {
		in.LogicalBytes += sn.Stats.Bytes
	}
	for _, k := range r.Index.Packs() {
		if k == format.BlobData {
			in.DataPacks++
		} else {
			in.TreePacks++
		}
	}
	if err := r.Index.Each(func(b format.BlobLoc, _ crypto.ID) {
		if b.Kind == format.BlobData {
			in.DataBlobs++
			in.UniqueBytes += uint64(b.RawLen)
			in.BlobBytes += uint64(b.Length)
		} else {
			in.TreeBlobs++
		}
	}); err != nil {
		return nil, err
	}
	in.IndexFiles = r.Index.Files()
	for _, k := range store.Kinds {
		if err := r.st.List(ctx, k, func(o store.ObjectInfo) error {
			in.StoredBytes += uint64(o.Size)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	ratio := func(a, b uint64) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	in.DedupRatio = ratio(in.LogicalBytes, in.UniqueBytes)
	in.CompressRatio = ratio(in.UniqueBytes, in.BlobBytes)
	in.TotalRatio = ratio(in.LogicalBytes, in.StoredBytes)
	return in, nil
}
