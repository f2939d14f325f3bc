package check

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/index"
	"github.com/coffer-backup/coffer/engine/tree"

	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// CheckOptions choose what a check covers.
type Options struct {
	// Snapshots to check; none means the whole store, including packs no
	// snapshot uses.
	Snapshots   []*engine.Snapshot
	Concurrency int
	Progress    *engine.Progress
	// Subset chooses which of those packs are read; the zero value reads
	// them all. Trees are walked and the index is compared with the pack
	// listing whatever it is.
	Subset Subset
}

// Problem is one thing check found wrong.
type Problem struct {
	Snapshot string `json:"snapshot,omitempty"` // short id
	Path     string `json:"path,omitempty"`     // the affected file or directory
	Pack     string `json:"pack,omitempty"`
	Blob     string `json:"blob,omitempty"`
	Message  string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Snapshot != "" {
		fmt.Fprintf(&b, "snapshot %s: ", p.Snapshot)
	}
	if p.Path != "" {
		fmt.Fprintf(&b, "%s: ", p.Path)
	}
	b.WriteString(p.Message)
	return b.String()
}

// CheckResult reports a check.
type Result struct {
	Snapshots int `json:"snapshots"`
	// Packs, Blobs and Bytes count what was read and verified.
	Packs int   `json:"packs"`
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes_read"`
	// PacksTotal and BytesTotal count the packs the check covers (the
	// store's, or the chosen snapshots'), of which Subset chose Packs.
	PacksTotal int       `json:"packs_total"`
	BytesTotal int64     `json:"bytes_total"`
	Subset     string    `json:"subset"`
	Problems   []Problem `json:"problems"`
	// Warnings do not fail a check: packs no index names (left by an
	// interrupted backup), which later maintenance may remove.
	Warnings []string `json:"warnings"`
}

// OK reports whether the check found no problem.
func (c *Result) OK() bool { return len(c.Problems) == 0 }

// Run reads every pack the chosen snapshots use (every pack of the store
// if none are chosen), or the part of them opt.Subset chooses, verifies
// each pack's hash, its trailer against the index, and every blob's MAC
// and id; then walks the snapshots' trees (reading every tree blob,
// whatever the subset) and names each file or directory a bad or missing
// blob belongs to. When not every pack is read, the index is compared
// with the pack listing, so a pack the index names and the store lacks is
// reported even if it is not read.
func Run(ctx context.Context, r *engine.Repo, opt Options) (*Result, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = runtime.NumCPU()
	}
	if opt.Progress == nil {
		opt.Progress = &engine.Progress{}
	}
	res := &Result{}
	var mu sync.Mutex
	problem := func(p Problem) {
		mu.Lock()
		res.Problems = append(res.Problems, p)
		mu.Unlock()
	}
	// Check reads the index for itself, tolerating damaged index files:
	// r.Index is shared with whatever else uses r (a mount, a restore),
	// and check must not change what they see. cr finds blobs through it.
	idx := index.New()
	defer idx.Close()
	if err := loadIndexTolerant(ctx, r, idx, problem); err != nil {
		return nil, err
	}
	cr := r.WithIndex(idx)

	snaps := opt.Snapshots
	whole := len(snaps) == 0
	if whole {
		ids, err := r.SnapshotIDs(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			sn, err := r.LoadSnapshot(ctx, id)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				problem(Problem{Snapshot: id.Short(), Message: fmt.Sprintf("snapshot unreadable: %v", err)})
				continue
			}
			snaps = append(snaps, sn)
		}
	}
	res.Snapshots = len(snaps)

	// Which packs the check covers, and which of them it reads.
	indexed := idx.Packs()
	packs := map[crypto.ID]format.BlobKind{}
	if whole {
		packs = indexed
	} else {
		need := map[crypto.ID]bool{}
		for _, sn := range snaps {
			if err := walkBlobs(ctx, cr, sn, func(id crypto.ID) { need[id] = true }, func(string, *tree.Node, error) {}); err != nil {
				return nil, err
			}
		}
		for id := range need {
			if _, pack, ok := idx.Lookup(id); ok {
				packs[pack] = indexed[pack]
			}
		}
	}
	partial := opt.Subset.Mode != ReadAll
	var listed map[crypto.ID]int64 // pack -> size, if listed
	if whole || partial {
		listed = map[crypto.ID]int64{}
		for _, k := range []format.BlobKind{format.BlobData, format.BlobTree} {
			err := r.ListPacks(ctx, k, func(id crypto.ID, size int64) error {
				listed[id] = size
				if _, ok := indexed[id]; !ok && whole {
					res.Warnings = append(res.Warnings, fmt.Sprintf("pack %s is in no index (left by an interrupted backup?); its blobs are unused", id.Short()))
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	res.Subset = opt.Subset.String()
	res.PacksTotal = len(packs)
	all := make([]crypto.ID, 0, len(packs))
	for id := range packs {
		all = append(all, id)
		res.BytesTotal += listed[id]
	}
	read := packs
	if partial {
		read = map[crypto.ID]format.BlobKind{}
		for _, id := range opt.Subset.choose(all) {
			read[id] = packs[id]
		}
	}
	res.Packs = len(read)

	// Verify packs.
	bad := map[crypto.ID]string{} // blob -> reason
	byPack := map[crypto.ID][]format.BlobLoc{}
	// A pack that is not read is still looked for in the listing: one the
	// index names but the store lacks is damage whichever packs are read.
	missing := map[crypto.ID]bool{}
	if partial {
		for id := range packs {
			if _, ok := read[id]; ok {
				continue
			}
			if _, ok := listed[id]; !ok {
				missing[id] = true
				problem(Problem{Pack: id.Short(), Message: fmt.Sprintf("pack %s: named by the index but not in the store", id.Short())})
			}
		}
	}
	idx.Each(func(b format.BlobLoc, pack crypto.ID) {
		if _, ok := read[pack]; ok {
			byPack[pack] = append(byPack[pack], b)
		}
		if missing[pack] {
			bad[b.ID] = fmt.Sprintf("blob %s: pack %s is missing", b.ID.Short(), pack.Short())
		}
	})
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Concurrency)
	for pack, kind := range read {
		g.Go(func() error {
			errs, n, err := checkPack(gctx, r, kind, pack, byPack[pack])
			if err != nil && gctx.Err() != nil {
				return gctx.Err() // not damage: the check was cancelled
			}
			mu.Lock()
			res.Blobs += len(byPack[pack])
			res.Bytes += n
			if err != nil {
				res.Problems = append(res.Problems, Problem{Pack: pack.Short(), Message: fmt.Sprintf("pack %s: %v", pack.Short(), err)})
			}
			for id, e := range errs {
				bad[id] = e
			}
			mu.Unlock()
			opt.Progress.Bytes.Add(n)
			opt.Progress.Files.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if listed == nil {
		res.BytesTotal = res.Bytes // every pack covered was read
	}

	// Name what the bad blobs belong to.
	for _, sn := range snaps {
		seen := map[string]bool{}
		err := walkBlobs(ctx, cr, sn, nil, func(path string, n *tree.Node, err error) {
			if err != nil {
				problem(Problem{Snapshot: sn.ID.Short(), Path: path, Message: err.Error()})
				return
			}
			for _, c := range n.Chunks {
				if why, ok := bad[c.ID]; ok && !seen[path] {
					seen[path] = true
					problem(Problem{Snapshot: sn.ID.Short(), Path: path, Blob: c.ID.Short(), Message: why})
				} else if !idx.Has(c.ID) && !seen[path] {
					seen[path] = true
					problem(Problem{Snapshot: sn.ID.Short(), Path: path, Blob: c.ID.Short(), Message: fmt.Sprintf("blob %s: %v", c.ID.Short(), engine.ErrMissingBlob)})
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(res.Problems, func(i, j int) bool {
		a, b := res.Problems[i], res.Problems[j]
		if a.Snapshot != b.Snapshot {
			return a.Snapshot < b.Snapshot
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Message < b.Message // found concurrently: keep the output stable
	})
	return res, nil
}

// loadIndexTolerant reads every index file into idx. A damaged one is a
// problem to report, not a reason to stop; any other error stops it.
func loadIndexTolerant(ctx context.Context, r *engine.Repo, idx *index.Master, problem func(Problem)) error {
	names, err := r.IndexFiles(ctx)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, h := range names {
		g.Go(func() error {
			packs, err := r.ReadIndexFile(gctx, h)
			if gctx.Err() != nil {
				return gctx.Err() // not damage: the check was cancelled
			}
			if err != nil && (errors.Is(err, crypto.ErrAuth) || errors.Is(err, format.ErrCorrupt)) {
				name := h.Name
				if id, perr := crypto.ParseID(name); perr == nil {
					name = id.Short()
				}
				problem(Problem{Message: fmt.Sprintf("index file %s unreadable, the blobs it lists count as missing: %v", name, err)})
				return nil
			}
			if err != nil {
				return err
			}
			return idx.Add(packs)
		})
	}
	return g.Wait()
}

// checkPack reads a whole pack and verifies it; it returns the blobs that
// failed, with why, and the bytes read.
func checkPack(ctx context.Context, r *engine.Repo, kind format.BlobKind, pack crypto.ID, blobs []format.BlobLoc) (map[crypto.ID]string, int64, error) {
	bad := map[crypto.ID]string{}
	data, err := r.LoadPackRange(ctx, kind, pack, 0, -1)
	if err != nil {
		for _, b := range blobs {
			bad[b.ID] = fmt.Sprintf("blob %s: pack %s unreadable: %v", b.ID.Short(), pack.Short(), err)
		}
		return bad, 0, fmt.Errorf("unreadable: %w", err)
	}
	var packErr error
	if crypto.Hash(data) != pack {
		packErr = fmt.Errorf("content does not match its name (the pack file is damaged)")
	}
	if sealed, start, err := format.SplitPack(data); err != nil {
		packErr = errors.Join(packErr, err)
	} else if trailer, err := r.OpenTrailer(sealed, start); err != nil {
		packErr = errors.Join(packErr, err)
	} else {
		inTrailer := make(map[crypto.ID]format.BlobLoc, len(trailer))
		for _, b := range trailer {
			inTrailer[b.ID] = b
		}
		for _, b := range blobs {
			if t, ok := inTrailer[b.ID]; !ok || t != b {
				packErr = errors.Join(packErr, fmt.Errorf("index entry for blob %s disagrees with the pack trailer", b.ID.Short()))
			}
		}
	}
	var plain []byte
	for _, b := range blobs {
		if int64(b.Offset)+int64(b.Length) > int64(len(data)) {
			bad[b.ID] = fmt.Sprintf("blob %s: beyond the end of pack %s", b.ID.Short(), pack.Short())
			continue
		}
		plain, err = r.OpenBlob(plain[:0], data[b.Offset:b.Offset+b.Length], b, pack)
		if err != nil {
			bad[b.ID] = err.Error()
		}
	}
	return bad, int64(len(data)), packErr
}

// walkBlobs walks a snapshot's tree. blob, if set, receives every blob id
// the snapshot uses; file receives every file (with its chunks loaded) and
// every directory or file that could not be read. Once ctx is done it
// stops and returns ctx's error; a read that failed because of it is not
// given to file.
func walkBlobs(ctx context.Context, r *engine.Repo, sn *engine.Snapshot, blob func(crypto.ID), file func(string, *tree.Node, error)) error {
	if blob == nil {
		blob = func(crypto.ID) {}
	}
	fail := func(path string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		file(path, nil, err)
		return nil
	}
	var walk func(id crypto.ID, path string) error
	walk = func(id crypto.ID, path string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		blob(id)
		d, err := r.LoadDir(ctx, id)
		if err != nil {
			return fail(path+"/", fmt.Errorf("directory unreadable, its contents are lost: %v", err))
		}
		// An unreadable index page stops the listing below where it is
		// reached, not before: the entries ahead of it are still walked,
		// and the error is reported once, by whichever meets it.
		pagesErr := r.PageIDs(ctx, d, blob)
		it := r.Iter(d)
		for {
			n, ok, err := it.Next(ctx)
			if !ok && err == nil {
				err = pagesErr
			}
			if err != nil {
				return fail(path+"/", fmt.Errorf("directory partly unreadable: %v", err))
			}
			if !ok {
				return nil
			}
			p := path + "/" + n.Name
			switch n.Type {
			case tree.TypeDir:
				if err := walk(n.Subtree, p); err != nil {
					return err
				}
			case tree.TypeFile:
				if !n.ChunkList.IsZero() {
					blob(n.ChunkList)
				}
				cs, err := r.FileChunks(ctx, n)
				if err != nil {
					if err := fail(p, fmt.Errorf("chunk list unreadable: %v", err)); err != nil {
						return err
					}
					continue
				}
				for _, c := range cs {
					blob(c.ID)
				}
				cp := *n
				cp.Chunks = cs
				file(p, &cp, nil)
			}
		}
	}
	return walk(sn.Root, "")
}
