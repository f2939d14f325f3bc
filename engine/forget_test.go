package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"
)

// vanishing is a storage where one snapshot is removed right after it
// is listed, as when a forget runs between a listing and the loads.
type vanishing struct {
	store.Storage
	victim string
}

func (v *vanishing) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	err := v.Storage.List(ctx, k, fn)
	if k == store.KindSnapshot && v.victim != "" {
		v.Storage.Delete(ctx, store.Handle{Kind: store.KindSnapshot, Name: v.victim})
	}
	return err
}

// TestDeleteSnapshot: DeleteSnapshot removes one snapshot and nothing
// else, twice is no error, and a snapshot removed between the listing and
// its load is left out of Snapshots instead of failing it.
func TestDeleteSnapshot(t *testing.T) {
	ctx := context.Background()
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	var ids []crypto.ID
	for i := range 4 {
		id, err := r.SaveSnapshot(ctx, &engine.Snapshot{Time: time.Date(2026, 1, i+1, 0, 0, 0, 0, time.UTC), Source: "/s"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := r.Snapshots(ctx); err != nil { // cached in r
		t.Fatal(err)
	}
	for range 2 {
		if err := r.DeleteSnapshot(ctx, ids[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.FindSnapshot(ctx, ids[1].String()); !store.IsNotFound(err) {
		t.Fatalf("FindSnapshot of a removed snapshot: %v", err)
	}
	got, err := r.Snapshots(ctx)
	if err != nil || len(got) != 3 || got[0].ID != ids[0] || got[1].ID != ids[2] || got[2].ID != ids[3] {
		t.Fatalf("after DeleteSnapshot: %v, %v", got, err)
	}

	v := &vanishing{Storage: folderStore(t, path), victim: ids[2].String()}
	r2 := openRepo(t, v)
	got, err = r2.Snapshots(ctx)
	if err != nil || len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[3] {
		t.Fatalf("a snapshot removed while listing: %v, %v", got, err)
	}
}
