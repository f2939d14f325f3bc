package tree

import (
	"fmt"
	"hash/fnv"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// Layouts of a directory blob.
const (
	DirVersion   = 1
	LayoutInline = 0 // the entries follow
	LayoutPaged  = 1 // references to page blobs follow
)

// Page cut rule: a page ends after an entry whose sort key hashes to 0
// modulo pageCutModulus, once it holds pageMinEntries, and always at
// pageMaxEntries. Cuts depend on the entries alone, so adding one entry to
// a large directory rewrites one page.
const (
	PageMinEntries = 32
	pageCutModulus = 256
	PageMaxEntries = 4096
)

func pageCut(key string, count int) bool {
	if count >= PageMaxEntries {
		return true
	}
	if count < PageMinEntries {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()%pageCutModulus == 0
}

// PageRef points at one page of a paged directory.
type PageRef struct {
	First   string // sort key of the page's first entry
	Entries uint64
	ID      crypto.ID
}

// DirStats are the totals a directory blob carries for its whole subtree.
type DirStats struct {
	Entries uint64 // direct entries
	Files   uint64 // regular files in the subtree
	Dirs    uint64 // directories in the subtree, not counting itself
	Bytes   uint64 // content bytes of the files in the subtree
}

func (s *DirStats) Add(o DirStats) {
	s.Files += o.Files
	s.Dirs += o.Dirs
	s.Bytes += o.Bytes
}

// Dir is a decoded directory blob.
type Dir struct {
	ID    crypto.ID
	Stats DirStats
	// Exactly one of these is set: the entries of a one-page directory, or
	// the pages of a larger one.
	Inline []Node
	Pages  []PageRef
}

func EncodeDirHeader(e *format.Encoder, layout byte, st DirStats) {
	e.Byte(DirVersion)
	e.Byte(layout)
	e.Uvarint(st.Entries)
	e.Uvarint(st.Files)
	e.Uvarint(st.Dirs)
	e.Uvarint(st.Bytes)
}

func DecodeDir(p []byte) (*Dir, error) {
	d := format.Decoder{B: p}
	if v := d.Byte(); d.Err == nil && v != DirVersion {
		return nil, fmt.Errorf("dir: unknown version %d", v)
	}
	layout := d.Byte()
	var dir Dir
	dir.Stats = DirStats{Entries: d.Uvarint(), Files: d.Uvarint(), Dirs: d.Uvarint(), Bytes: d.Uvarint()}
	switch layout {
	case LayoutInline:
		nodes, err := DecodePageBody(&d)
		if err != nil {
			return nil, err
		}
		dir.Inline = nodes
		if dir.Inline == nil {
			dir.Inline = []Node{}
		}
	case LayoutPaged:
		n := d.Count(34)
		dir.Pages = make([]PageRef, 0, n)
		var sum uint64
		for i := 0; i < n && d.Err == nil; i++ {
			pr := PageRef{First: d.Str(), Entries: d.Uvarint(), ID: d.ID()}
			if d.Err == nil && i > 0 && dir.Pages[i-1].First >= pr.First {
				d.Fail("page refs (not sorted)")
			}
			sum += pr.Entries
			dir.Pages = append(dir.Pages, pr)
		}
		if d.Err == nil && sum != dir.Stats.Entries {
			d.Fail("page refs (entry counts do not add up)")
		}
	default:
		d.Fail("dir layout")
	}
	if err := d.Done("dir"); err != nil {
		return nil, err
	}
	if dir.Inline != nil && uint64(len(dir.Inline)) != dir.Stats.Entries {
		return nil, fmt.Errorf("dir: %w: %d entries, header says %d", format.ErrCorrupt, len(dir.Inline), dir.Stats.Entries)
	}
	return &dir, nil
}

// decodePageBody reads count || node*, checking the sort order.
func DecodePageBody(d *format.Decoder) ([]Node, error) {
	n := d.Count(MinNodeSize)
	nodes := make([]Node, 0, n)
	prev := ""
	for i := 0; i < n && d.Err == nil; i++ {
		nd := DecodeNode(d)
		if d.Err == nil {
			k := nd.SortKey()
			if i > 0 && k <= prev {
				d.Fail("entries (not in sort-key order)")
			}
			prev = k
		}
		nodes = append(nodes, nd)
	}
	return nodes, d.Err
}

func DecodePage(p []byte) ([]Node, error) {
	d := format.Decoder{B: p}
	nodes, _ := DecodePageBody(&d)
	if err := d.Done("tree page"); err != nil {
		return nil, err
	}
	return nodes, nil
}

func DecodeChunkList(p []byte) ([]Chunk, error) {
	d := format.Decoder{B: p}
	cs := DecodeChunks(&d)
	if err := d.Done("chunk list"); err != nil {
		return nil, err
	}
	return cs, nil
}
