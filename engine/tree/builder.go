package tree

import (
	"fmt"
	"strings"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// Builder encodes a directory from entries given in sort-key order,
// storing full pages (and, in format 2, full index pages) as it goes, so a
// directory of millions of entries needs the memory of one page per
// level.
type Builder struct {
	save    func(plain []byte) (crypto.ID, error)
	indexed bool // may write index pages (LayoutIndexed, format 2)
	cuts    cuts

	page      format.Encoder
	pageCount int
	pageFirst string
	// levels[k] holds the references to the pages of level k (0: pages,
	// k ≥ 1: index pages) not yet cut into an index page of level k+1.
	levels  []refLevel
	stats   DirStats
	lastKey string
	enc     format.Encoder // scratch for index pages
}

// refLevel is one level of references while a directory is being built.
type refLevel struct {
	refs  []PageRef
	bytes int  // encoded size of every reference of this level so far, while not cut
	cut   bool // the references are cut into index pages: the directory blob will not hold them
}

// NewBuilder returns a builder that stores blobs with save. storeVersion
// is the format version of the store written to: a version-1 store gets
// only the layouts version 1 knows (inline and paged, however many pages),
// so that coffers that predate index pages keep reading it; from version 2
// on, the references of a large directory are cut into index pages.
func NewBuilder(save func([]byte) (crypto.ID, error), storeVersion int) *Builder {
	return &Builder{save: save, indexed: storeVersion >= 2, cuts: builderCuts}
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
	if b.cuts.pageCut(k, b.pageCount) {
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
	ref := PageRef{First: b.pageFirst, Entries: uint64(b.pageCount), ID: id}
	b.page.B, b.pageCount = b.page.B[:0], 0
	return b.addRef(0, ref)
}

// addRef adds a reference to a page of level k. While the references of
// level k fit a directory blob they are kept; once they do not (format 2
// only), they are cut into index pages of level k+1, by content: this
// level will not be the directory's.
func (b *Builder) addRef(k int, ref PageRef) error {
	if k == len(b.levels) {
		b.levels = append(b.levels, refLevel{})
	}
	lv := &b.levels[k]
	lv.refs = append(lv.refs, ref)
	if !lv.cut {
		lv.bytes += refSize(&ref)
		if !b.indexed || lv.bytes <= b.cuts.dirMaxRefBytes || k+1 >= MaxHeight {
			return nil
		}
		lv.cut = true
		pending := lv.refs
		lv.refs = nil
		start := 0
		for i := range pending {
			if b.cuts.indexCut(k+1, pending[i].First, i-start+1) {
				if err := b.flushIndex(k, pending[start:i+1]); err != nil {
					return err
				}
				start = i + 1
			}
		}
		b.levels[k].refs = append([]PageRef(nil), pending[start:]...)
		return nil
	}
	if b.cuts.indexCut(k+1, ref.First, len(lv.refs)) {
		if err := b.flushIndex(k, lv.refs); err != nil {
			return err
		}
		b.levels[k].refs = b.levels[k].refs[:0]
	}
	return nil
}

// flushIndex stores refs (of level k) as an index page of level k+1 and
// adds its reference to level k+1.
func (b *Builder) flushIndex(k int, refs []PageRef) error {
	b.enc.B = b.enc.B[:0]
	EncodeIndexPage(&b.enc, k+1, refs)
	id, err := b.save(b.enc.B)
	if err != nil {
		return err
	}
	var n uint64
	for i := range refs {
		n += refs[i].Entries
	}
	return b.addRef(k+1, PageRef{First: refs[0].First, Entries: n, ID: id})
}

// Finish stores the directory blob and returns its id and totals.
func (b *Builder) Finish() (crypto.ID, DirStats, error) {
	d := Dir{Stats: b.stats}
	if len(b.levels) == 0 {
		nodes := b.PageBlob()
		var e format.Encoder
		EncodeDirHeader(&e, LayoutInline, b.stats)
		e.B = append(e.B, nodes...)
		id, err := b.save(e.B)
		return id, b.stats, err
	}
	if b.pageCount > 0 {
		if err := b.flushPage(); err != nil {
			return crypto.ID{}, DirStats{}, err
		}
	}
	// Close the last index page of every level that is cut; the first
	// level that is not is the directory's.
	for k := 0; ; k++ {
		lv := &b.levels[k]
		if !lv.cut {
			d.Height, d.Pages = k, lv.refs
			break
		}
		if len(lv.refs) > 0 {
			if err := b.flushIndex(k, lv.refs); err != nil {
				return crypto.ID{}, DirStats{}, err
			}
			b.levels[k].refs = nil
		}
	}
	var e format.Encoder
	EncodeDir(&e, &d)
	id, err := b.save(e.B)
	return id, b.stats, err
}
