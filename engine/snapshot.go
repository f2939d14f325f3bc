package engine

import (
	"errors"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"time"

	"golang.org/x/sync/errgroup"
)

// Snapshot is the small object that names a backup: written last, after
// every pack and index it needs is durable.
type Snapshot struct {
	ID crypto.ID `json:"-"`

	Time     time.Time     `json:"time"`
	Source   string        `json:"source"`
	Host     string        `json:"host,omitempty"`
	User     string        `json:"user,omitempty"`
	Tags     []string      `json:"tags,omitempty"`
	Root     crypto.ID     `json:"root"`
	RootMeta RootMeta      `json:"root_meta"`
	Parent   *crypto.ID    `json:"parent,omitempty"`
	Stats    SnapshotStats `json:"stats"`
	Partial  bool          `json:"partial,omitempty"`
	// SkippedEntries names entries left out and why (archived S3
	// objects, unreadable files), at most MaxSkippedListed of them;
	// Stats.Skipped counts them all.
	SkippedEntries []SkippedEntry `json:"skipped_entries,omitempty"`
	Info           []tree.Attr    `json:"source_info,omitempty"` // e.g. bucket name, region, owner
	Duration       float64        `json:"duration_seconds"`
	// Original is set on a snapshot written by 'repair snapshots': the
	// snapshot it was repaired from (which may since be removed). Absent
	// otherwise; readers that predate it ignore it.
	Original *crypto.ID `json:"original,omitempty"`
}

// SkippedEntry is an entry a backup left out.
type SkippedEntry struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// MaxSkippedListed bounds the skipped entries a snapshot names.
const MaxSkippedListed = 1000

// RootMeta is the metadata of the source's root directory, which has no
// entry of its own in any directory.
type RootMeta struct {
	Mode  uint32 `json:"mode"`
	MTime int64  `json:"mtime"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
}

// RootNode returns the root directory as a node.
func (sn *Snapshot) RootNode() *tree.Node {
	m := sn.RootMeta
	return &tree.Node{Name: "", Type: tree.TypeDir, Mode: m.Mode, MTime: m.MTime, UID: m.UID, GID: m.GID, Subtree: sn.Root}
}

// SnapshotStats describe what a backup saw and added.
type SnapshotStats struct {
	Files       uint64 `json:"files"`
	Dirs        uint64 `json:"dirs"`
	Bytes       uint64 `json:"bytes"`        // content bytes of all files
	ReadBytes   uint64 `json:"read_bytes"`   // content bytes read from the source
	NewBlobs    uint64 `json:"new_blobs"`    // blobs added to the store
	NewBytes    uint64 `json:"new_bytes"`    // plaintext bytes of those blobs
	StoredBytes uint64 `json:"stored_bytes"` // bytes of the packs written
	Skipped     uint64 `json:"skipped"`      // entries left out (unreadable, unsupported)
	Unchanged   uint64 `json:"unchanged"`    // files reused from the parent unread
	// Entries left out by the user's exclusions (an excluded directory
	// counts once, whatever it holds). Absent when 0: readers before
	// exclusions ignore them.
	ExcludedFiles uint64 `json:"excluded_files,omitempty"`
	ExcludedDirs  uint64 `json:"excluded_dirs,omitempty"`
}

// SaveSnapshot writes sn and returns its id.
func (r *Repo) SaveSnapshot(ctx context.Context, sn *Snapshot) (crypto.ID, error) {
	b, err := json.Marshal(sn)
	if err != nil {
		return crypto.ID{}, err
	}
	id, err := r.SaveObject(ctx, store.KindSnapshot, b, format.AADSnapshot)
	if err != nil {
		return crypto.ID{}, err
	}
	sn.ID = id
	return id, nil
}

// LoadSnapshot reads one snapshot.
func (r *Repo) LoadSnapshot(ctx context.Context, id crypto.ID) (*Snapshot, error) {
	// Snapshots never change: one fetch per process, however many
	// command's steps (parent choice, progress totals, latest) list them.
	r.snapMu.Lock()
	cached, ok := r.snaps[id]
	r.snapMu.Unlock()
	if ok {
		cp := *cached
		return &cp, nil
	}
	p, err := r.loadObject(ctx, store.Handle{Kind: store.KindSnapshot, Name: id.String()}, format.AADSnapshot)
	if err != nil {
		return nil, err
	}
	var sn Snapshot
	if err := json.Unmarshal(p, &sn); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %v", id.Short(), format.ErrCorrupt, err)
	}
	sn.ID = id
	r.snapMu.Lock()
	if r.snaps == nil {
		r.snaps = map[crypto.ID]*Snapshot{}
	}
	r.snaps[id] = &sn
	r.snapMu.Unlock()
	cp := sn
	return &cp, nil
}

// SnapshotIDs lists the ids of every snapshot.
func (r *Repo) SnapshotIDs(ctx context.Context) ([]crypto.ID, error) {
	var ids []crypto.ID
	err := r.st.List(ctx, store.KindSnapshot, func(o store.ObjectInfo) error {
		id, err := crypto.ParseID(o.Handle.Name)
		if err != nil {
			return nil // not ours; ignore
		}
		ids = append(ids, id)
		return nil
	})
	return ids, err
}

// Snapshots loads every snapshot, oldest first. A snapshot listed but
// gone when loaded (a forget or rm ran in between) is left out.
func (r *Repo) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Snapshot, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, id := range ids {
		g.Go(func() error {
			sn, err := r.LoadSnapshot(gctx, id)
			if store.IsNotFound(err) && gctx.Err() == nil {
				return nil
			}
			out[i] = sn
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out = slices.DeleteFunc(out, func(sn *Snapshot) bool { return sn == nil })
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out, nil
}

// ErrBadSnapshotRef is wrapped by FindSnapshot's error for a reference
// that cannot name a snapshot (neither hex digits nor "latest"): a
// mistake in the command, not a missing snapshot.
var ErrBadSnapshotRef = errors.New(`not a snapshot id (hex digits) or "latest"`)

// FindSnapshot resolves "latest" (in any case) or a unique hex prefix of
// a snapshot id.
func (r *Repo) FindSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	if strings.EqualFold(ref, "latest") {
		all, err := r.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("snapshot latest: the store has no snapshots yet")
		}
		return all[len(all)-1], nil
	}
	ref = strings.ToLower(ref)
	if ref == "" || strings.Trim(ref, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("snapshot %q: %w", ref, ErrBadSnapshotRef)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var match []crypto.ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("snapshot %s: no such snapshot (coffer ls lists them): %w", ref, store.ErrNotFound)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot %s: prefix matches %d snapshots; give more digits", ref, len(match))
}

// LatestOf returns the newest snapshot of source (preferring complete
// ones); ok is false if source has none.
func (r *Repo) LatestOf(ctx context.Context, source string) (*Snapshot, bool, error) {
	all, err := r.Snapshots(ctx)
	if err != nil {
		return nil, false, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Source == source && !all[i].Partial {
			return all[i], true, nil
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Source == source {
			return all[i], true, nil
		}
	}
	return nil, false, nil
}

// ResolvePath finds the node at a slash-separated path in sn ("/" or ""
// is the root directory). A path segment that names both a file and a
// directory resolves to the directory, unless it is the last segment and
// preferFile is set.
func (r *Repo) ResolvePath(ctx context.Context, sn *Snapshot, p string, preferFile bool) (*tree.Node, error) {
	root := sn.RootNode()
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return root, nil
	}
	segs := strings.Split(strings.TrimSuffix(p, "/"), "/")
	cur := root
	for i, s := range segs {
		if cur.Type != tree.TypeDir {
			return nil, fmt.Errorf("%s: not a directory", "/"+strings.Join(segs[:i], "/"))
		}
		d, err := r.LoadDir(ctx, cur.Subtree)
		if err != nil {
			return nil, err
		}
		last := i == len(segs)-1
		var n *tree.Node
		var ok bool
		if last && preferFile {
			n, ok, err = r.Lookup(ctx, d, s)
		}
		if !ok && err == nil {
			n, ok, err = r.Lookup(ctx, d, s+"/")
		}
		if !ok && err == nil && !(last && preferFile) {
			n, ok, err = r.Lookup(ctx, d, s)
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s: no such file or directory in snapshot %s: %w", "/"+strings.Join(segs[:i+1], "/"), sn.ID.Short(), store.ErrNotFound)
		}
		cp := *n
		cur = &cp
	}
	return cur, nil
}
