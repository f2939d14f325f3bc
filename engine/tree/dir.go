package tree

import (
	"fmt"
	"hash/fnv"
	"math/bits"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// Layouts of a directory blob.
const (
	DirVersion    = 1
	LayoutInline  = 0 // the entries follow
	LayoutPaged   = 1 // references to page blobs follow
	LayoutIndexed = 2 // a height, then references to index pages (format 2)
)

// indexPageTag starts an index page. A directory blob starts with
// DirVersion instead, so neither decodes as the other.
const indexPageTag = 2

// MaxHeight bounds the levels of index pages above the pages of a
// directory. The cut rules give each level at least IndexMinRefs times
// fewer references than the one below, so real trees stay far below it.
const MaxHeight = 16

// cuts are the content-defined cut rules of pages and index pages (and the
// bound of a directory blob); docs/FORMAT.md §7 fixes their values. Tests
// lower them so that multi-level directories happen with a few thousand
// entries.
type cuts struct {
	pageMin, pageMod, pageMax    int // entries of a page
	indexMin, indexMod, indexMax int // references of an index page
	dirMaxRefBytes               int // encoded references a directory blob holds before a level of index pages is added
}

// Page cut rule: a page ends after an entry whose sort key hashes to 0
// modulo pageCutModulus, once it holds PageMinEntries, and always at
// PageMaxEntries. Cuts depend on the entries alone, so adding one entry to
// a large directory rewrites one page.
const (
	PageMinEntries = 32
	pageCutModulus = 256
	PageMaxEntries = 4096

	// An index page of level L ends after a reference whose first sort
	// key's hash, rotated right by 8·L bits, is 0 modulo indexCutModulus,
	// once it holds IndexMinRefs references, and always at IndexMaxRefs.
	IndexMinRefs    = 16
	indexCutModulus = 128
	IndexMaxRefs    = 2048

	// DirMaxRefBytes bounds the encoded references of a directory blob
	// (format 2): past it, the references are cut into index pages, and
	// the directory refers to those (again and again, until they fit).
	DirMaxRefBytes = 64 << 10
)

var defaultCuts = cuts{
	pageMin: PageMinEntries, pageMod: pageCutModulus, pageMax: PageMaxEntries,
	indexMin: IndexMinRefs, indexMod: indexCutModulus, indexMax: IndexMaxRefs,
	dirMaxRefBytes: DirMaxRefBytes,
}

// testCuts, when set at link time (go build -ldflags "-X
// github.com/coffer-backup/coffer/engine/tree.testCuts=pageMin,pageMod,pageMax,indexMin,indexMod,indexMax,dirMaxRefBytes"),
// replaces the cut rules of every builder. Only scripts/mkfixture sets
// it, so that the format-2 fixture holds a multi-level directory of a few
// hundred entries written by the real writer. A reader never depends on
// where cuts fall.
var testCuts string

var builderCuts = defaultCuts

func init() {
	if testCuts == "" {
		return
	}
	var c cuts
	if _, err := fmt.Sscanf(testCuts, "%d,%d,%d,%d,%d,%d,%d", &c.pageMin, &c.pageMod, &c.pageMax,
		&c.indexMin, &c.indexMod, &c.indexMax, &c.dirMaxRefBytes); err != nil || c.pageMin < 1 || c.pageMod < 1 ||
		c.pageMax < c.pageMin || c.indexMin < 2 || c.indexMod < 1 || c.indexMax < c.indexMin || c.dirMaxRefBytes < 1 {
		panic(fmt.Sprintf("tree: bad testCuts %q", testCuts))
	}
	builderCuts = c
}

func keyHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

func (c *cuts) pageCut(key string, count int) bool {
	if count >= c.pageMax {
		return true
	}
	if count < c.pageMin {
		return false
	}
	return keyHash(key)%uint64(c.pageMod) == 0
}

// indexCut says whether an index page of level (≥ 1) ends after a
// reference to a page starting at first, being its count-th.
func (c *cuts) indexCut(level int, first string, count int) bool {
	if count >= c.indexMax {
		return true
	}
	if count < c.indexMin {
		return false
	}
	return bits.RotateLeft64(keyHash(first), -8*level)%uint64(c.indexMod) == 0
}

// PageRef points at one page of a paged directory, or at one index page.
type PageRef struct {
	First   string // sort key of the first entry below it
	Entries uint64 // entries below it
	ID      crypto.ID
}

// minRefSize is the smallest encoding of a PageRef: an empty first key.
const minRefSize = 1 + 1 + len(crypto.ID{})

func refSize(r *PageRef) int {
	return uvarintLen(uint64(len(r.First))) + len(r.First) + uvarintLen(r.Entries) + len(r.ID)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func encodeRefs(e *format.Encoder, refs []PageRef) {
	e.Uvarint(uint64(len(refs)))
	for _, p := range refs {
		e.Str(p.First)
		e.Uvarint(p.Entries)
		e.ID(p.ID)
	}
}

// decodeRefs reads uvarint(p) || PageRef*p, checking that first keys
// strictly increase, and returns the sum of their entries.
func decodeRefs(d *format.Decoder) ([]PageRef, uint64) {
	n := d.Count(minRefSize)
	refs := make([]PageRef, 0, n)
	var sum uint64
	for i := 0; i < n && d.Err == nil; i++ {
		pr := PageRef{First: d.Str(), Entries: d.Uvarint(), ID: d.ID()}
		if d.Err == nil && i > 0 && refs[i-1].First >= pr.First {
			d.Fail("page refs (not sorted)")
		}
		if d.Err == nil && (pr.Entries == 0 || sum+pr.Entries < sum) {
			d.Fail("page refs (entry count)")
		}
		sum += pr.Entries
		refs = append(refs, pr)
	}
	return refs, sum
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

// Dir is a decoded directory blob, or a decoded index page.
type Dir struct {
	ID    crypto.ID
	Stats DirStats
	// Exactly one of these is set: the entries of a one-page directory, or
	// the references to the pages (Height 0) or to the index pages of
	// level Height (Height ≥ 1) of a larger one.
	Inline []Node
	Pages  []PageRef
	Height int
	// IndexLevel is 0 for a directory blob. For a decoded index page it is
	// the page's level (≥ 1, Height is IndexLevel-1) and Stats holds only
	// Entries, the entries below it. Index pages go through the same
	// cache as directories (Cache.Dir); the blobs cannot be mistaken for
	// one another (a directory blob starts with DirVersion, an index page
	// with another byte).
	IndexLevel int
}

func EncodeDirHeader(e *format.Encoder, layout byte, st DirStats) {
	e.Byte(DirVersion)
	e.Byte(layout)
	e.Uvarint(st.Entries)
	e.Uvarint(st.Files)
	e.Uvarint(st.Dirs)
	e.Uvarint(st.Bytes)
}

// EncodeDir encodes d (its Inline entries, or its Pages at d.Height) as a
// directory blob: the inverse of DecodeDir.
func EncodeDir(e *format.Encoder, d *Dir) {
	switch {
	case d.Inline != nil:
		EncodeDirHeader(e, LayoutInline, d.Stats)
		e.Uvarint(uint64(len(d.Inline)))
		for i := range d.Inline {
			EncodeNode(e, &d.Inline[i])
		}
	case d.Height == 0:
		EncodeDirHeader(e, LayoutPaged, d.Stats)
		encodeRefs(e, d.Pages)
	default:
		EncodeDirHeader(e, LayoutIndexed, d.Stats)
		e.Uvarint(uint64(d.Height))
		encodeRefs(e, d.Pages)
	}
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
	case LayoutPaged, LayoutIndexed:
		if layout == LayoutIndexed {
			h := d.Uvarint()
			if d.Err == nil && (h < 1 || h > MaxHeight) {
				d.Fail("dir height")
			}
			dir.Height = int(h)
		}
		var sum uint64
		dir.Pages, sum = decodeRefs(&d)
		if d.Err == nil && sum != dir.Stats.Entries {
			d.Fail("page refs (entry counts do not add up)")
		}
		if d.Err == nil && layout == LayoutIndexed && len(dir.Pages) == 0 {
			d.Fail("page refs (none)")
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

// EncodeIndexPage encodes an index page of level (≥ 1) holding refs.
func EncodeIndexPage(e *format.Encoder, level int, refs []PageRef) {
	e.Byte(indexPageTag)
	e.Uvarint(uint64(level))
	encodeRefs(e, refs)
}

// DecodeIndexPage decodes an index page into a Dir with IndexLevel set.
func DecodeIndexPage(p []byte) (*Dir, error) {
	d := format.Decoder{B: p}
	if v := d.Byte(); d.Err == nil && v != indexPageTag {
		d.Fail("index page tag")
	}
	level := d.Uvarint()
	if d.Err == nil && (level < 1 || level > MaxHeight) {
		d.Fail("index page level")
	}
	refs, sum := decodeRefs(&d)
	if d.Err == nil && len(refs) == 0 {
		d.Fail("index page (empty)")
	}
	if err := d.Done("index page"); err != nil {
		return nil, err
	}
	return &Dir{Pages: refs, Height: int(level) - 1, IndexLevel: int(level), Stats: DirStats{Entries: sum}}, nil
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

// DecodeDirOrIndexPage decodes a blob that tree.Cache.Dir may hold: a
// directory or an index page, told apart by the first byte. Callers
// check IndexLevel for which they got.
func DecodeDirOrIndexPage(p []byte) (*Dir, error) {
	if len(p) > 0 && p[0] == indexPageTag {
		return DecodeIndexPage(p)
	}
	return DecodeDir(p)
}
