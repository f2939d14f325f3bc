package tree

import (
	"fmt"
	"strings"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// dirBuilder encodes a directory from entries given in sort-key order,
// storing full pages as it goes, so a directory of millions of entries
// needs the memory of one page.
type Builder struct {
	save func(plain []byte) (crypto.ID, error)

	page      format.Encoder
	pageCount int
	pageFirst string
	pages     []PageRef
	stats     DirStats
	lastKey   string
}

func NewBuilder(save func([]byte) (crypto.ID, error)) *Builder {
	return &Builder{save: save}
}

// Add appends n; sort keys must strictly increase.
func (b *Builder) Add(n *Node, sub DirStats) error {
	if strings.Contains(n.Name, "/") {
		return fmt.Errorf("tree: entry name %q contains a slash", n.Name)
	}
	k := n.SortKey()
	if b.stats.Entries > 0 && k <= b.lastKey {
		return fmt.Errorf("tree: entry %q out of order after %q", k, b.lastKey)
	}
	b.lastKey = k
	if b.pageCount == 0 {
		b.pageFirst = k
	}
	EncodeNode(&b.page, n)
	b.pageCount++
	b.stats.Entries++
	switch n.Type {
	case TypeFile:
		b.stats.Files++
		b.stats.Bytes += n.Size
	case TypeDir:
		b.stats.Dirs++
		b.stats.Add(sub)
	}
	if pageCut(k, b.pageCount) {
		return b.flushPage()
	}
	return nil
}

// PageBlob is the encoded page being filled (for tests of the encoding).
func (b *Builder) PageBlob() []byte {
	e := format.Encoder{B: make([]byte, 0, len(b.page.B)+8)}
	e.Uvarint(uint64(b.pageCount))
	e.B = append(e.B, b.page.B...)
	return e.B
}

func (b *Builder) flushPage() error {
	id, err := b.save(b.PageBlob())
	if err != nil {
		return err
	}
	b.pages = append(b.pages, PageRef{First: b.pageFirst, Entries: uint64(b.pageCount), ID: id})
	b.page.B, b.pageCount = b.page.B[:0], 0
	return nil
}

// Finish stores the directory blob and returns its id and totals.
func (b *Builder) Finish() (crypto.ID, DirStats, error) {
	var e format.Encoder
	if len(b.pages) == 0 {
		EncodeDirHeader(&e, LayoutInline, b.stats)
		e.B = append(e.B, b.PageBlob()...)
	} else {
		if b.pageCount > 0 {
			if err := b.flushPage(); err != nil {
				return crypto.ID{}, DirStats{}, err
			}
		}
		EncodeDirHeader(&e, LayoutPaged, b.stats)
		e.Uvarint(uint64(len(b.pages)))
		for _, p := range b.pages {
			e.Str(p.First)
			e.Uvarint(p.Entries)
			e.ID(p.ID)
		}
	}
	id, err := b.save(e.B)
	return id, b.stats, err
}
