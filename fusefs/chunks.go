package fusefs

import (
	"context"
	"fmt"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/tree"
)

// packRef names a pack: its blobs' kind says where it is stored.
type packRef struct {
	kind format.BlobKind
	id   crypto.ID
}

func (p packRef) String() string { return "pack " + p.id.Short() }

// loadChunk is the chunk cache's loader. A blob of at most f.small
// sealed bytes is cut from a window of its pack, which the blobs stored
// beside it (the other small files of its folder, backed up together)
// are then read from too; a larger one is read alone. Either way the
// bytes it holds while loading are reserved in the chunk cache, so loads
// and read-ahead in flight are inside the cache's budget.
func (f *FS) loadChunk(ctx context.Context, id crypto.ID) ([]byte, error) {
	loc, pack, ok := f.repo.Locate(id)
	if !ok {
		return f.repo.LoadBlob(ctx, id) // says what is missing
	}
	hold := int64(loc.Length)
	if loc.Comp != format.CompNone {
		hold += int64(loc.RawLen)
	}
	release := f.chunks.Reserve(hold)
	defer release()
	return f.readBlob(ctx, id, loc, pack)
}

// loadBlob reads blob id: cut from a window of its pack if it is small,
// alone otherwise.
func (f *FS) loadBlob(ctx context.Context, id crypto.ID) ([]byte, error) {
	loc, pack, ok := f.repo.Locate(id)
	if !ok {
		return f.repo.LoadBlob(ctx, id) // says what is missing
	}
	return f.readBlob(ctx, id, loc, pack)
}

// readBlob reads blob id, stored at loc in pack.
func (f *FS) readBlob(ctx context.Context, id crypto.ID, loc format.BlobLoc, pack crypto.ID) ([]byte, error) {
	if int64(loc.Length) > f.small {
		return f.repo.LoadBlob(ctx, id)
	}
	p := packRef{kind: loc.Kind, id: pack}
	size, err := f.packSize(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("blob %s in %v: %w", id.Short(), p, err)
	}
	off, n := int64(loc.Offset), int64(loc.Length)
	sealed, err := f.windows.Read(ctx, p, size, off, n)
	if err != nil {
		return nil, fmt.Errorf("blob %s in %v: %w", id.Short(), p, err)
	}
	plain, _, err := f.repo.OpenBlobInPlace(sealed, loc, pack, nil)
	if err != nil {
		// A damaged copy of the window (a disk cache's, a cut read):
		// drop it, and let the engine read the blob alone, which drops
		// a damaged cached copy of its own and reads again.
		f.windows.Forget(p, size, off, n)
		return f.repo.LoadBlob(ctx, id)
	}
	return plain, nil
}

// loadWindow is the window cache's loader: one ranged read of a pack.
func (f *FS) loadWindow(ctx context.Context, p packRef, off, n int64) ([]byte, error) {
	return f.repo.LoadPackRange(ctx, p.kind, p.id, off, n)
}

// packSize returns the stored size of a pack, asked of the store once
// (and again only after 4096 other packs).
func (f *FS) packSize(ctx context.Context, p packRef) (int64, error) {
	return f.packs.GetWith(ctx, p, func(ctx context.Context) (int64, error) {
		return f.repo.PackSize(ctx, p.kind, p.id)
	})
}

// listPrefetch is how many windows a directory listing fetches ahead for
// the small files it lists: one, so that a reader of the folder's files
// (grep -r, cp -r) finds the first of them there and then reads the
// next windows ahead itself, while a listing that reads no file (ls -lR,
// find) costs one ranged read per folder of small files.
const listPrefetch = 1

// smallFiles collects, while a directory is listed, the first small
// files listed, and fetches the window of the first one not cached in
// the background once the listing ends, if small files were read since
// the listing before: a program that lists folders and reads their
// files (grep -r, cp -r, tar) finds it there, and one that only lists
// them (ls -lR, find) fetches nothing.
type smallFiles struct {
	ids []crypto.ID
}

// add notes n if it is a file of one small chunk.
func (s *smallFiles) add(f *FS, n *tree.Node) {
	if n.Type != tree.TypeFile || len(n.Chunks) != 1 || int64(n.Size) > f.small || len(s.ids) >= 64 {
		return
	}
	s.ids = append(s.ids, n.Chunks[0].ID)
}

// fetch queues the windows of the files noted, at most listPrefetch of
// them, and forgets the files. It returns whether it did: small files
// are being read and the folder has some.
func (s *smallFiles) fetch(f *FS) bool {
	ids := s.ids
	s.ids = nil
	// Only while files are being read: a listing that reads none (ls
	// -lR, find) fetches no content.
	reads := f.smallReads.Load()
	if f.listReads.Swap(reads) == reads || len(ids) == 0 {
		return false
	}
	go func() {
		queued := 0
		for _, id := range ids {
			if queued >= listPrefetch || f.chunks.Contains(id) {
				continue
			}
			loc, pack, ok := f.repo.Locate(id)
			if !ok || int64(loc.Length) > f.small {
				continue
			}
			p := packRef{kind: loc.Kind, id: pack}
			size, err := f.packSize(f.baseCtx, p)
			if err != nil {
				return
			}
			queued += f.windows.Prefetch(p, size, int64(loc.Offset), int64(loc.Length))
		}
	}()
	return true
}
