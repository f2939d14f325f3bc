package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"
)

// Filter selects snapshots by where they come from: every field that is
// set must match. "latest" means the newest snapshot that matches.
type Filter struct {
	Source string   // the source URI, as recorded (a folder's absolute path, s3://BUCKET/PREFIX)
	Host   string   // the host that made it
	Tags   []string // every one of them must be on the snapshot
}

// IsZero reports whether f selects every snapshot.
func (f Filter) IsZero() bool { return f.Source == "" && f.Host == "" && len(f.Tags) == 0 }

// Match reports whether sn is selected.
func (f Filter) Match(sn *Snapshot) bool {
	if f.Source != "" && !sameSource(f.Source, sn.Source) {
		return false
	}
	if f.Host != "" && f.Host != sn.Host {
		return false
	}
	for _, t := range f.Tags {
		if !slices.Contains(sn.Tags, t) {
			return false
		}
	}
	return true
}

// sameSource compares source URIs, forgiving a trailing "/" on a folder
// or a bucket prefix.
func sameSource(a, b string) bool {
	return a == b || strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

func (f Filter) String() string {
	var parts []string
	if f.Source != "" {
		parts = append(parts, "--source "+f.Source)
	}
	if f.Host != "" {
		parts = append(parts, "--host "+f.Host)
	}
	for _, t := range f.Tags {
		parts = append(parts, "--tag "+t)
	}
	return strings.Join(parts, " ")
}

// ErrNoMatch is wrapped by FindSnapshotIn's error when a snapshot exists
// but the filter does not select it, or when none matches "latest".
var ErrNoMatch = errors.New("no snapshot matches")

// SnapshotsIn loads the snapshots f selects, oldest first.
func (r *Repo) SnapshotsIn(ctx context.Context, f Filter) ([]*Snapshot, error) {
	all, err := r.Snapshots(ctx)
	if err != nil || f.IsZero() {
		return all, err
	}
	var out []*Snapshot
	for _, sn := range all {
		if f.Match(sn) {
			out = append(out, sn)
		}
	}
	return out, nil
}

// FindSnapshotIn resolves "latest" (the newest snapshot f selects) or a
// unique hex prefix of a snapshot id, which f must select too.
func (r *Repo) FindSnapshotIn(ctx context.Context, ref string, f Filter) (*Snapshot, error) {
	if strings.EqualFold(ref, "latest") && !f.IsZero() {
		snaps, err := r.SnapshotsIn(ctx, f)
		if err != nil {
			return nil, err
		}
		if len(snaps) == 0 {
			return nil, fmt.Errorf("snapshot latest: %w %s (coffer ls lists them)", ErrNoMatch, f)
		}
		return snaps[len(snaps)-1], nil
	}
	sn, err := r.FindSnapshot(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !f.Match(sn) {
		return nil, fmt.Errorf("snapshot %s: it does not match %s: %w", sn.ID.Short(), f, ErrNoMatch)
	}
	return sn, nil
}

// ReplaceSnapshot writes sn as a new snapshot object (a snapshot is
// named by its bytes, so a change makes a new one) and then removes the
// object of old, in that order: a crash in between leaves both, never
// neither. It returns the new id. On a store with object lock it first
// checks that old can be removed, and changes nothing when it is still
// locked (a *store.LockedError), rather than leave both.
func (r *Repo) ReplaceSnapshot(ctx context.Context, old crypto.ID, sn *Snapshot) (crypto.ID, error) {
	if ret, ok := store.RetainerOf(r.st); ok && r.Params.ObjectLock != nil {
		h := store.Handle{Kind: store.KindSnapshot, Name: old.String()}
		lock, err := ret.Retention(ctx, h)
		if err != nil && !store.IsNotFound(err) {
			return crypto.ID{}, fmt.Errorf("snapshot %s: %w", old.Short(), err)
		}
		if lock.LockedAt(time.Now()) {
			return crypto.ID{}, fmt.Errorf("snapshot %s cannot be changed, it cannot be removed: %w; nothing was changed", old.Short(), &store.LockedError{Handle: h, Retention: lock})
		}
	}
	id, err := r.SaveSnapshot(ctx, sn)
	if err != nil {
		return crypto.ID{}, err
	}
	if err := r.DeleteSnapshot(ctx, old); err != nil {
		return id, fmt.Errorf("snapshot %s replaced by %s, but removing the old one failed: %w", old.Short(), id.Short(), err)
	}
	return id, nil
}

// DeleteSnapshot removes the object of snapshot id, durably, and
// nothing else: the packs and index entries it referenced stay (only a
// prune may remove those). Removing a snapshot already gone is not an
// error.
func (r *Repo) DeleteSnapshot(ctx context.Context, id crypto.ID) error {
	if err := r.st.Delete(ctx, store.Handle{Kind: store.KindSnapshot, Name: id.String()}); err != nil {
		return fmt.Errorf("snapshot %s: remove: %w", id.Short(), err)
	}
	r.snapMu.Lock()
	delete(r.snaps, id)
	r.snapMu.Unlock()
	return nil
}
