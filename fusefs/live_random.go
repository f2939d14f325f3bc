package fusefs

import (
	"context"
	"fmt"
)

// LiveSmallBlock is the size of the ranged reads of a random reader of a
// live mount: a read that does not follow the previous one, and whose
// 1 MiB block is not cached, GETs the 64 KiB around it (aligned) instead
// of the whole block. Small blocks are kept in the same cache, under the
// same ETag-pinned keys, as the large ones; a read that follows the last
// one (a sequential reader, however it started) goes through the
// object.Reader, its 1 MiB blocks and its read-ahead.
const LiveSmallBlock = 64 << 10

// small serves a random read from a small block; ok false leaves the
// read to the Reader.
func (h *liveHandle) small(ctx context.Context, fsys *LiveFS, dest []byte, off int64) (n int, ok bool, err error) {
	h.mu.Lock()
	follows := off == h.next
	h.next = off + int64(len(dest))
	h.mu.Unlock()
	end := min(off+int64(len(dest)), h.size)
	if follows || off >= end {
		return 0, false, nil
	}
	bs := off &^ (LiveSmallBlock - 1)
	bn := min(LiveSmallBlock, h.size-bs)
	if end > bs+bn {
		return 0, false, nil // across two small blocks
	}
	lb := off &^ (LiveBlock - 1)
	if fsys.blocks.Contains(liveBlock{tree: h.tree, o: h.o, off: lb, n: min(LiveBlock, h.size-lb)}) {
		return 0, false, nil // the large block is at hand
	}
	data, err := fsys.blocks.Get(ctx, liveBlock{tree: h.tree, o: h.o, off: bs, n: bn})
	if err != nil {
		return 0, true, err
	}
	if int64(len(data)) != bn {
		return 0, true, fmt.Errorf("%s: %d bytes at %d, want %d", h.o.Key, len(data), bs, bn)
	}
	return copy(dest, data[off-bs:end-bs]), true, nil
}
