package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for every decoder of the store format. Each one checks that
// the decoder never panics, never allocates far more than its input could
// justify, and, where an encoder exists, that what decodes re-encodes to
// something that decodes to the same value. The seed corpora are produced
// by the real encoders and checked to round trip before fuzzing starts.
//
// Run one with e.g.
//
//	go test ./engine -run=XXX -fuzz=FuzzDecodeDir -fuzztime=30s

// qaAllocLimit is how many heap bytes decoding n input bytes may take: a
// fixed allowance for buffers and decoder state plus a generous factor
// (a decoded Node is much larger than its 11-byte minimal encoding).
func qaAllocLimit(n int) uint64 { return 8<<20 + 512*uint64(n) }

// qaCheckAllocs runs fn and fails t if it allocated more than the input
// size could justify: a decoder that trusts a corrupt count or length
// allocates megabytes for a few input bytes.
func qaCheckAllocs(t testing.TB, what string, inputLen int, fn func()) {
	t.Helper()
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	fn()
	metrics.Read(sample)
	if got, limit := sample[0].Value.Uint64()-before, qaAllocLimit(inputLen); got > limit {
		t.Fatalf("%s: decoding %d input bytes allocated %d bytes (limit %d)", what, inputLen, got, limit)
	}
}

// qaID makes a recognizable id.
func qaID(b byte) crypto.ID {
	var id crypto.ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// qaSeedBlobs is a pack's worth of blob locations that tile from 0.
func qaSeedBlobs(kind format.BlobKind, n int) ([]format.BlobLoc, int64) {
	var blobs []format.BlobLoc
	var off uint32
	for i := 0; i < n; i++ {
		l := uint32(crypto.SealOverhead + 1 + i*1000)
		comp := format.CompNone
		if i%2 == 1 {
			comp = format.CompZstd
		}
		blobs = append(blobs, format.BlobLoc{ID: qaID(byte(i * 7)), Kind: kind, Comp: comp, Offset: off, Length: l, RawLen: uint32(i * 3000)})
		off += l
	}
	return blobs, int64(off)
}

// FuzzDecodeTrailer fuzzes the pack trailer decoder.
func FuzzDecodeTrailer(f *testing.F) {
	type seed struct {
		blobs []format.BlobLoc
		end   int64
	}
	var seeds []seed
	for _, n := range []int{0, 1, 3} {
		b, end := qaSeedBlobs(format.BlobData, n)
		seeds = append(seeds, seed{b, end})
	}
	b, end := qaSeedBlobs(format.BlobTree, 2)
	seeds = append(seeds, seed{b, end})
	// A big offset and length that need 5-byte varints.
	seeds = append(seeds, seed{[]format.BlobLoc{
		{ID: qaID(1), Kind: format.BlobData, Comp: format.CompZstd, Offset: 0, Length: 1<<32 - 1, RawLen: 1<<32 - 1},
	}, 1<<32 - 1})
	for _, s := range seeds {
		p := format.EncodeTrailer(s.blobs)
		got, err := format.DecodeTrailer(p, s.end)
		if err != nil {
			f.Fatalf("seed trailer of %d blobs does not decode: %v", len(s.blobs), err)
		}
		if len(s.blobs) == 0 && len(got) == 0 {
			got = s.blobs
		}
		if !reflect.DeepEqual(got, s.blobs) {
			f.Fatalf("seed trailer round trip: got %+v, want %+v", got, s.blobs)
		}
		f.Add(p, s.end)
	}
	// Real trailers: re-encoding what decodes gives the same bytes.
	real := qaRealStore(f)
	for i, p := range real.trailers {
		blobs, err := format.DecodeTrailer(p, real.starts[i])
		if err != nil {
			f.Fatalf("a real trailer does not decode: %v", err)
		}
		if !bytes.Equal(format.EncodeTrailer(blobs), p) {
			f.Fatal("a real trailer does not re-encode to its bytes")
		}
		f.Add(p, real.starts[i])
	}
	// A wrong end must be refused.
	b, end = qaSeedBlobs(format.BlobData, 2)
	if _, err := format.DecodeTrailer(format.EncodeTrailer(b), end+1); err == nil {
		f.Fatal("a trailer whose blobs do not reach its start decoded")
	}
	f.Fuzz(func(t *testing.T, data []byte, end int64) {
		var blobs []format.BlobLoc
		var err error
		qaCheckAllocs(t, "decodeTrailer", len(data), func() { blobs, err = format.DecodeTrailer(data, end) })
		if err != nil {
			return
		}
		var off int64
		for i, b := range blobs {
			if int64(b.Offset) != off {
				t.Fatalf("blob %d at %d, want %d", i, b.Offset, off)
			}
			if (b.Kind != format.BlobData && b.Kind != format.BlobTree) || (b.Comp != format.CompNone && b.Comp != format.CompZstd) || b.Length < crypto.SealOverhead {
				t.Fatalf("blob %d accepted with invalid fields %+v", i, b)
			}
			off += int64(b.Length)
		}
		if off != end {
			t.Fatalf("blobs end at %d, end is %d", off, end)
		}
		re := format.EncodeTrailer(blobs)
		if len(re) > len(data) {
			t.Fatalf("canonical re-encoding (%d bytes) is longer than the input (%d)", len(re), len(data))
		}
		again, err := format.DecodeTrailer(re, end)
		if err != nil {
			t.Fatalf("re-encoded trailer does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, blobs) {
			t.Fatalf("trailer re-encoding changed it:\n%+v\n%+v", blobs, again)
		}
	})
}

// FuzzDecodeIndex fuzzes the index file decoder.
func FuzzDecodeIndex(f *testing.F) {
	d1, _ := qaSeedBlobs(format.BlobData, 3)
	t1, _ := qaSeedBlobs(format.BlobTree, 2)
	seeds := [][]format.IndexPack{
		{},
		{{ID: qaID(9), Kind: format.BlobData, Blobs: d1}},
		{{ID: qaID(9), Kind: format.BlobData, Blobs: d1}, {ID: qaID(50), Kind: format.BlobTree, Blobs: t1}},
		{{ID: qaID(77), Kind: format.BlobTree, Blobs: []format.BlobLoc{}}},
	}
	for _, s := range seeds {
		p := format.EncodeIndex(s)
		got, err := format.DecodeIndex(p)
		if err != nil {
			f.Fatalf("seed index does not decode: %v", err)
		}
		if len(s) == 0 && len(got) == 0 {
			got = s
		}
		if !reflect.DeepEqual(got, s) {
			f.Fatalf("seed index round trip:\n got %+v\nwant %+v", got, s)
		}
		f.Add(p)
	}
	real := qaRealStore(f)
	for _, p := range real.indexes {
		packs, err := format.DecodeIndex(p)
		if err != nil {
			f.Fatalf("a real index does not decode: %v", err)
		}
		if !bytes.Equal(format.EncodeIndex(packs), p) {
			f.Fatal("a real index does not re-encode to its bytes")
		}
		f.Add(p)
	}
	// A blob whose kind differs from its pack's must be refused.
	if _, err := format.DecodeIndex(format.EncodeIndex([]format.IndexPack{{ID: qaID(1), Kind: format.BlobTree, Blobs: d1}})); err == nil {
		f.Fatal("an index with a data blob in a tree pack decoded")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var packs []format.IndexPack
		var err error
		qaCheckAllocs(t, "decodeIndex", len(data), func() { packs, err = format.DecodeIndex(data) })
		if err != nil {
			return
		}
		for _, p := range packs {
			if p.Kind != format.BlobData && p.Kind != format.BlobTree {
				t.Fatalf("pack kind %d accepted", p.Kind)
			}
			for _, b := range p.Blobs {
				if b.Kind != p.Kind {
					t.Fatalf("blob of kind %v in a %v pack accepted", b.Kind, p.Kind)
				}
			}
		}
		re := format.EncodeIndex(packs)
		if len(re) > len(data) {
			t.Fatalf("canonical re-encoding (%d bytes) is longer than the input (%d)", len(re), len(data))
		}
		again, err := format.DecodeIndex(re)
		if err != nil {
			t.Fatalf("re-encoded index does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, packs) {
			t.Fatalf("index re-encoding changed it:\n%+v\n%+v", packs, again)
		}
	})
}

// qaSeedNodes are entries of every type and content layout, in sort-key
// order.
func qaSeedNodes() []tree.Node {
	return []tree.Node{
		{Name: "", Type: tree.TypeFile, Mode: 0o644}, // S3 "a//"-style empty name, empty file
		{Name: "a", Type: tree.TypeFile, Mode: 0o4755, MTime: -1234567890123, Size: 3000, UID: 1000, GID: 100, Inode: 1 << 40, CTime: 1700000000123456789,
			Chunks: []tree.Chunk{{ID: qaID(1), Size: 1000}, {ID: qaID(2), Size: 2000}},
			Attrs:  []tree.Attr{{Key: "content-type", Value: []byte("text/plain")}, {Key: "etag", Value: []byte{}}}},
		{Name: "a", Type: tree.TypeDir, Mode: 0o755, MTime: 1, Subtree: qaID(3)},
		{Name: "big", Type: tree.TypeFile, Mode: 0o600, Size: 1 << 40, ChunkList: qaID(4)},
		{Name: "link", Type: tree.TypeSymlink, Mode: 0o777, Target: "../../etc/passwd"},
		{Name: "z-日本語", Type: tree.TypeSymlink, Target: ""},
	}
}

// qaBuildDir runs nodes through a dirBuilder and returns every blob it
// saved (pages first, the directory last).
func qaBuildDir(t testing.TB, nodes []tree.Node) [][]byte {
	t.Helper()
	var blobs [][]byte
	b := tree.NewBuilder(func(p []byte) (crypto.ID, error) {
		blobs = append(blobs, bytes.Clone(p))
		return crypto.Hash(p), nil
	}, engine.FormatVersion)
	for i := range nodes {
		n := nodes[i]
		if err := b.Add(&n, tree.DirStats{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	return blobs
}

// qaManyNodes are n file entries, enough for a paged directory.
func qaManyNodes(n int) []tree.Node {
	nodes := make([]tree.Node, n)
	for i := range nodes {
		nodes[i] = tree.Node{Name: fmt.Sprintf("f%05d", i), Type: tree.TypeFile, Mode: 0o644, MTime: int64(i), Size: 1, Chunks: []tree.Chunk{{ID: qaID(byte(i)), Size: 1}}}
	}
	return nodes
}

// qaEncodePage re-encodes decoded entries as a tree page.
func qaEncodePage(nodes []tree.Node) []byte {
	var e format.Encoder
	e.Uvarint(uint64(len(nodes)))
	for i := range nodes {
		tree.EncodeNode(&e, &nodes[i])
	}
	return e.B
}

// qaEncodeDir re-encodes a decoded directory the way dirBuilder.Finish
// lays it out.
func qaEncodeDir(d *tree.Dir) []byte {
	var e format.Encoder
	tree.EncodeDir(&e, d)
	return e.B
}

// qaNodesEqual compares entries as the decoder returns them: an empty
// inline chunk list and empty attribute values decode as empty, not nil.
func qaNodesEqual(a, b []tree.Node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if len(x.Chunks) == 0 && len(y.Chunks) == 0 {
			x.Chunks, y.Chunks = nil, nil
		}
		if len(x.Attrs) == 0 && len(y.Attrs) == 0 {
			x.Attrs, y.Attrs = nil, nil
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func qaCheckSortKeys(t testing.TB, nodes []tree.Node) {
	t.Helper()
	for i, n := range nodes {
		if strings.Contains(n.Name, "/") || n.Mode > 0o7777 {
			t.Fatalf("entry %d accepted with name %q mode %o", i, n.Name, n.Mode)
		}
		if i > 0 && nodes[i-1].SortKey() >= n.SortKey() {
			t.Fatalf("entries %d and %d accepted out of order: %q, %q", i-1, i, nodes[i-1].SortKey(), n.SortKey())
		}
		if n.Type == tree.TypeFile && n.ChunkList.IsZero() {
			var sum uint64
			for _, c := range n.Chunks {
				sum += uint64(c.Size)
			}
			if sum != n.Size {
				t.Fatalf("file %q accepted with chunks of %d bytes for size %d", n.Name, sum, n.Size)
			}
		}
	}
}

// FuzzDecodeDir fuzzes the directory blob decoder (inline and paged).
func FuzzDecodeDir(f *testing.F) {
	seedNodes := qaSeedNodes()
	inline := qaBuildDir(f, seedNodes)
	if len(inline) != 1 {
		f.Fatalf("%d seed entries made %d blobs, want one inline directory", len(seedNodes), len(inline))
	}
	d, err := tree.DecodeDir(inline[0])
	if err != nil {
		f.Fatalf("seed directory does not decode: %v", err)
	}
	if !qaNodesEqual(d.Inline, seedNodes) || d.Stats.Entries != uint64(len(seedNodes)) || d.Pages != nil {
		f.Fatalf("seed directory round trip:\n got %+v\nwant %+v", d.Inline, seedNodes)
	}
	f.Add(inline[0])
	empty := qaBuildDir(f, nil)
	if d, err := tree.DecodeDir(empty[0]); err != nil || d.Inline == nil || len(d.Inline) != 0 {
		f.Fatalf("empty directory: %+v, %v", d, err)
	}
	f.Add(empty[0])
	many := qaManyNodes(700)
	paged := qaBuildDir(f, many)
	if len(paged) < 3 {
		f.Fatalf("700 entries made %d blobs, want a paged directory", len(paged))
	}
	d, err = tree.DecodeDir(paged[len(paged)-1])
	if err != nil {
		f.Fatalf("seed paged directory does not decode: %v", err)
	}
	if len(d.Pages) != len(paged)-1 || d.Stats.Entries != 700 || d.Inline != nil {
		f.Fatalf("seed paged directory: %d pages for %d page blobs, stats %+v", len(d.Pages), len(paged)-1, d.Stats)
	}
	var all []tree.Node
	for i, pr := range d.Pages {
		if pr.ID != crypto.Hash(paged[i]) {
			f.Fatalf("page ref %d names the wrong blob", i)
		}
		nodes, err := tree.DecodePage(paged[i])
		if err != nil {
			f.Fatalf("seed page %d: %v", i, err)
		}
		if nodes[0].SortKey() != pr.First || uint64(len(nodes)) != pr.Entries {
			f.Fatalf("page ref %d (%q, %d) disagrees with its page (%q, %d)", i, pr.First, pr.Entries, nodes[0].SortKey(), len(nodes))
		}
		all = append(all, nodes...)
	}
	if !qaNodesEqual(all, many) {
		f.Fatal("the pages of the seed paged directory do not hold its entries")
	}
	f.Add(paged[len(paged)-1])
	// A directory of format 2 referring to index pages (its pages' refs
	// reused as if they were index pages: the decoder cannot tell).
	indexed := qaEncodeDir(&tree.Dir{Stats: d.Stats, Pages: d.Pages, Height: 2})
	if d2, err := tree.DecodeDir(indexed); err != nil || d2.Height != 2 || len(d2.Pages) != len(d.Pages) {
		f.Fatalf("seed indexed directory: %+v, %v", d2, err)
	}
	f.Add(indexed)
	for _, p := range qaRealStore(f).dirs {
		d, err := tree.DecodeDir(p)
		if err != nil {
			f.Fatalf("a real directory does not decode: %v", err)
		}
		if !bytes.Equal(qaEncodeDir(d), p) {
			f.Fatal("a real directory does not re-encode to its bytes")
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d *tree.Dir
		var err error
		qaCheckAllocs(t, "decodeDir", len(data), func() { d, err = tree.DecodeDir(data) })
		if err != nil {
			return
		}
		if (d.Inline == nil) == (d.Pages == nil) {
			t.Fatalf("decoded directory has inline %v and pages %v", d.Inline != nil, d.Pages != nil)
		}
		if d.Inline != nil {
			qaCheckSortKeys(t, d.Inline)
			if uint64(len(d.Inline)) != d.Stats.Entries {
				t.Fatalf("%d inline entries, stats say %d", len(d.Inline), d.Stats.Entries)
			}
		}
		if sum := qaCheckRefs(t, d.Pages); d.Pages != nil && sum != d.Stats.Entries {
			t.Fatalf("entries %d, page refs add up to %d", d.Stats.Entries, sum)
		}
		re := qaEncodeDir(d)
		again, err := tree.DecodeDir(re)
		if err != nil {
			t.Fatalf("re-encoded directory does not decode: %v\ndecoded: %+v", err, d)
		}
		if !reflect.DeepEqual(again, d) {
			t.Fatalf("directory re-encoding changed it:\n%+v\n%+v", d, again)
		}
	})
}

// qaCheckRefs fails t unless the first keys of refs strictly increase,
// and returns the entries they add up to.
func qaCheckRefs(t testing.TB, refs []tree.PageRef) uint64 {
	t.Helper()
	var sum uint64
	for i := range refs {
		sum += refs[i].Entries
		if i > 0 && refs[i-1].First >= refs[i].First {
			t.Fatalf("refs %d, %d out of order", i-1, i)
		}
	}
	return sum
}

// FuzzDecodeIndexPage fuzzes the index page decoder (format 2).
func FuzzDecodeIndexPage(f *testing.F) {
	paged := qaBuildDir(f, qaManyNodes(700))
	d, err := tree.DecodeDir(paged[len(paged)-1])
	if err != nil {
		f.Fatal(err)
	}
	var e format.Encoder
	tree.EncodeIndexPage(&e, 1, d.Pages)
	ip, err := tree.DecodeIndexPage(e.B)
	if err != nil || ip.IndexLevel != 1 || ip.Height != 0 || ip.Stats.Entries != 700 || !reflect.DeepEqual(ip.Pages, d.Pages) {
		f.Fatalf("seed index page round trip: %+v, %v", ip, err)
	}
	if _, err := tree.DecodeDir(e.B); err == nil {
		f.Fatal("an index page decodes as a directory")
	}
	if _, err := tree.DecodeIndexPage(paged[len(paged)-1]); err == nil {
		f.Fatal("a directory decodes as an index page")
	}
	if ip, err := tree.DecodeDirOrIndexPage(e.B); err != nil || ip.IndexLevel != 1 {
		f.Fatalf("DecodeDirOrIndexPage of an index page: %+v, %v", ip, err)
	}
	if d, err := tree.DecodeDirOrIndexPage(paged[len(paged)-1]); err != nil || d.IndexLevel != 0 {
		f.Fatalf("DecodeDirOrIndexPage of a directory: %+v, %v", d, err)
	}
	f.Add(e.B)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ip *tree.Dir
		var err error
		qaCheckAllocs(t, "decodeIndexPage", len(data), func() { ip, err = tree.DecodeIndexPage(data) })
		if err != nil {
			return
		}
		if ip.IndexLevel < 1 || ip.Height != ip.IndexLevel-1 || len(ip.Pages) == 0 || ip.Inline != nil {
			t.Fatalf("decoded index page %+v", ip)
		}
		if sum := qaCheckRefs(t, ip.Pages); sum != ip.Stats.Entries {
			t.Fatalf("entries %d, refs add up to %d", ip.Stats.Entries, sum)
		}
		var e format.Encoder
		tree.EncodeIndexPage(&e, ip.IndexLevel, ip.Pages)
		again, err := tree.DecodeIndexPage(e.B)
		if err != nil || !reflect.DeepEqual(again, ip) {
			t.Fatalf("index page re-encoding changed it: %v\n%+v\n%+v", err, ip, again)
		}
	})
}

// FuzzDecodePage fuzzes the tree page decoder.
func FuzzDecodePage(f *testing.F) {
	seedNodes := qaSeedNodes()
	p := qaEncodePage(seedNodes)
	// The same bytes dirBuilder writes for a page.
	b := tree.NewBuilder(nil, engine.FormatVersion)
	for i := range seedNodes {
		n := seedNodes[i]
		if err := b.Add(&n, tree.DirStats{}); err != nil {
			f.Fatal(err)
		}
	}
	if !bytes.Equal(b.PageBlob(), p) {
		f.Fatal("qaEncodePage disagrees with dirBuilder.PageBlob")
	}
	nodes, err := tree.DecodePage(p)
	if err != nil || !qaNodesEqual(nodes, seedNodes) {
		f.Fatalf("seed page round trip: %v\n got %+v\nwant %+v", err, nodes, seedNodes)
	}
	f.Add(p)
	paged := qaBuildDir(f, qaManyNodes(300))
	if len(paged) < 2 {
		f.Fatal("300 entries did not page")
	}
	f.Add(paged[0])
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var nodes []tree.Node
		var err error
		qaCheckAllocs(t, "decodePage", len(data), func() { nodes, err = tree.DecodePage(data) })
		if err != nil {
			return
		}
		qaCheckSortKeys(t, nodes)
		re := qaEncodePage(nodes)
		if len(re) > len(data) {
			t.Fatalf("canonical re-encoding (%d bytes) is longer than the input (%d)", len(re), len(data))
		}
		again, err := tree.DecodePage(re)
		if err != nil {
			t.Fatalf("re-encoded page does not decode: %v\ndecoded: %+v", err, nodes)
		}
		if !reflect.DeepEqual(again, nodes) {
			t.Fatalf("page re-encoding changed it:\n%+v\n%+v", nodes, again)
		}
	})
}

// FuzzDecodeChunkList fuzzes the chunk-list blob decoder.
func FuzzDecodeChunkList(f *testing.F) {
	for _, n := range []int{0, 1, 65, 200} {
		cs := make([]tree.Chunk, n)
		for i := range cs {
			cs[i] = tree.Chunk{ID: qaID(byte(i)), Size: uint32(i * 40000)}
		}
		var e format.Encoder
		tree.EncodeChunks(&e, cs)
		got, err := tree.DecodeChunkList(e.B)
		if err != nil {
			f.Fatalf("seed chunk list of %d: %v", n, err)
		}
		if !reflect.DeepEqual(got, cs) {
			f.Fatalf("seed chunk list of %d does not round trip", n)
		}
		f.Add(e.B)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cs []tree.Chunk
		var err error
		qaCheckAllocs(t, "decodeChunkList", len(data), func() { cs, err = tree.DecodeChunkList(data) })
		if err != nil {
			return
		}
		var e format.Encoder
		tree.EncodeChunks(&e, cs)
		if len(e.B) > len(data) {
			t.Fatalf("canonical re-encoding (%d bytes) is longer than the input (%d)", len(e.B), len(data))
		}
		again, err := tree.DecodeChunkList(e.B)
		if err != nil {
			t.Fatalf("re-encoded chunk list does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, cs) {
			t.Fatalf("chunk list re-encoding changed it:\n%+v\n%+v", cs, again)
		}
	})
}

// qaFuzzRepo is a store in memory with the cheap KDF.
func qaFuzzRepo(t testing.TB) (*engine.Repo, *store.Memory) {
	t.Helper()
	st := store.NewMemory()
	r, err := engine.Create(context.Background(), st, []byte("test passphrase"), engine.CreateOptions{KDF: cheapKDF, Chunker: testChunker, PackSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// qaObjectPlain is the plaintext inside a sealed object: the header and
// the (maybe compressed) payload.
func qaObjectPlain(t testing.TB, r *engine.Repo, payload, aad []byte) []byte {
	t.Helper()
	p, err := r.Keys().Open(nil, r.SealObject(payload, aad), aad)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// qaReal is an in-memory store after a real backup of a small tree, and
// the plaintexts of its objects as the engine wrote them.
type qaReal struct {
	r        *engine.Repo
	st       *store.Memory
	sn       *engine.Snapshot
	trailers [][]byte // plaintext of pack trailers
	starts   []int64  // where each trailer starts
	indexes  [][]byte // plaintext of index files
	dirs     [][]byte // directory blobs
	snapshot []byte   // plaintext (header and payload) of the snapshot object
	payload  []byte   // the snapshot's JSON
}

func qaRealStore(t testing.TB) *qaReal {
	t.Helper()
	ctx := context.Background()
	r, st := qaFuzzRepo(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.bin"), qaRand(1, 150<<10))
	writeFile(t, filepath.Join(src, "b.txt"), textBytes(1, 40<<10))
	writeFile(t, filepath.Join(src, "empty"), nil)
	writeFile(t, filepath.Join(src, "sub", "c"), []byte("c"))
	if err := os.Symlink("a.bin", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	sn := backupDir(t, r, src, backup.Options{})
	q := &qaReal{r: r, st: st, sn: sn}
	err := qaListAll(ctx, st, func(o store.ObjectInfo) error {
		data, err := st.Get(ctx, o.Handle, 0, -1)
		if err != nil {
			return err
		}
		switch o.Handle.Kind {
		case store.KindDataPack, store.KindTreePack:
			sealed, start, err := format.SplitPack(data)
			if err != nil {
				return err
			}
			p, err := r.Keys().Open(nil, sealed, format.AADTrailer)
			if err != nil {
				return err
			}
			q.trailers, q.starts = append(q.trailers, p), append(q.starts, start)
		case store.KindIndex:
			p, err := r.LoadObject(ctx, o.Handle, format.AADIndex)
			if err != nil {
				return err
			}
			q.indexes = append(q.indexes, p)
		case store.KindSnapshot:
			if q.snapshot, err = r.Keys().Open(nil, data, format.AADSnapshot); err != nil {
				return err
			}
			if q.payload, err = r.LoadObject(ctx, o.Handle, format.AADSnapshot); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.LoadBlob(ctx, sn.Root)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := r.ResolvePath(ctx, sn, "/sub", false)
	if err != nil {
		t.Fatal(err)
	}
	subBlob, err := r.LoadBlob(ctx, sub.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	q.dirs = [][]byte{root, subBlob}
	if len(q.trailers) < 3 || len(q.indexes) != 1 || q.snapshot == nil {
		t.Fatalf("real store: %d packs, %d index files, snapshot %v", len(q.trailers), len(q.indexes), q.snapshot != nil)
	}
	return q
}

// FuzzLoadSnapshot fuzzes snapshot decoding: the fuzzer writes the
// plaintext of the object (header, compression, JSON), which the test
// seals under the store's key so that it gets past authentication, and
// the snapshot is read through LoadSnapshot as from a store.
func FuzzLoadSnapshot(f *testing.F) {
	r, st := qaFuzzRepo(f)
	ctx := context.Background()
	parent := qaID(5)
	full := &engine.Snapshot{
		Time: time.Date(2026, 11, 25, 10, 11, 12, 13, time.UTC), Source: "/home/someone/documents", Host: "host", User: "someone",
		Tags: []string{"daily", "x"}, Root: qaID(1), RootMeta: engine.RootMeta{Mode: 0o755, MTime: 123, UID: 1, GID: 2}, Parent: &parent,
		Stats:   engine.SnapshotStats{Files: 10, Dirs: 2, Bytes: 1 << 40, ReadBytes: 5, NewBlobs: 3, NewBytes: 4, StoredBytes: 6, Skipped: 1, Unchanged: 9},
		Partial: true, Info: []tree.Attr{{Key: "bucket", Value: []byte("b")}}, Duration: 1.5,
	}
	minimal := &engine.Snapshot{Root: qaID(2)}
	for _, sn := range []*engine.Snapshot{full, minimal} {
		want := *sn
		id, err := r.SaveSnapshot(ctx, sn)
		if err != nil {
			f.Fatal(err)
		}
		got, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			f.Fatalf("seed snapshot does not load: %v", err)
		}
		want.ID = id
		if !got.Time.Equal(want.Time) {
			f.Fatalf("seed snapshot time %v, want %v", got.Time, want.Time)
		}
		got.Time, want.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, &want) {
			f.Fatalf("seed snapshot round trip:\n got %+v\nwant %+v", got, &want)
		}
		js, _ := json.Marshal(sn)
		f.Add(qaObjectPlain(f, r, js, format.AADSnapshot))
	}
	real := qaRealStore(f)
	sn, err := real.r.LoadSnapshot(ctx, real.sn.ID)
	if err != nil {
		f.Fatal(err)
	}
	if js, _ := json.Marshal(sn); !bytes.Equal(js, real.payload) {
		f.Fatalf("a real snapshot does not re-marshal to its JSON:\n%s\n%s", js, real.payload)
	}
	f.Add(real.snapshot)
	// Uncompressed, and a header only.
	f.Add(append([]byte{byte(format.CompNone), 2}, "{}"...))
	f.Add([]byte{byte(format.CompZstd), 0})
	f.Fuzz(func(t *testing.T, plain []byte) {
		sealed := r.Keys().Seal(nil, plain, format.AADSnapshot)
		id := crypto.Hash(sealed)
		h := store.Handle{Kind: store.KindSnapshot, Name: id.String()}
		st.Put(ctx, h, sealed)
		defer st.Delete(ctx, h)
		var sn *engine.Snapshot
		var err error
		qaCheckAllocs(t, "LoadSnapshot", len(plain), func() { sn, err = r.LoadSnapshot(ctx, id) })
		if err != nil {
			return
		}
		if sn.ID != id {
			t.Fatalf("snapshot loaded with id %s, want %s", sn.ID, id)
		}
		// JSON re-encoding reaches a fixed point at once.
		b1, err := json.Marshal(sn)
		if err != nil {
			t.Fatalf("a loaded snapshot does not marshal: %v", err)
		}
		var sn2 engine.Snapshot
		if err := json.Unmarshal(b1, &sn2); err != nil {
			t.Fatalf("a re-marshaled snapshot does not unmarshal: %v\n%s", err, b1)
		}
		b2, _ := json.Marshal(&sn2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("snapshot JSON does not round trip:\n%s\n%s", b1, b2)
		}
	})
}

// qaMarshalConfig re-encodes a decoded config without HTML escaping, so
// that the params bytes (which key slots authenticate) are kept as read.
func qaMarshalConfig(cf *engine.ConfigFile) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(cf)
	return buf.Bytes(), err
}

// qaSeedConfigs are real config objects: one from Create, one with a
// second key slot, and an indented and a compacted variant.
func qaSeedConfigs(f testing.TB) [][]byte {
	f.Helper()
	ctx := context.Background()
	_, st := qaFuzzRepo(f)
	cfg, err := st.Get(ctx, store.ConfigHandle, 0, -1)
	if err != nil {
		f.Fatal(err)
	}
	var compact bytes.Buffer
	json.Compact(&compact, cfg)
	cf, _, err := engine.DecodeConfig(cfg)
	if err != nil {
		f.Fatal(err)
	}
	two := *cf
	slot, err := engine.WrapMaster(bytes.Repeat([]byte{7}, 32), []byte("other"), cf.Params, cheapKDF)
	if err != nil {
		f.Fatal(err)
	}
	two.Keys = append([]engine.KeySlot{slot}, cf.Keys...)
	twoBytes, err := json.Marshal(&two)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{cfg, compact.Bytes(), twoBytes}
}

// FuzzDecodeConfig fuzzes the config decoder.
func FuzzDecodeConfig(f *testing.F) {
	for _, c := range qaSeedConfigs(f) {
		cf, p, err := engine.DecodeConfig(c)
		if err != nil {
			f.Fatalf("seed config does not decode: %v", err)
		}
		if p.Chunker != testChunker || p.PackSize != 64<<10 || p.Version != engine.FormatVersion || len(cf.Keys) == 0 {
			f.Fatalf("seed config decoded to %+v", p)
		}
		f.Add(c)
	}
	f.Add([]byte(`{"params":{"version":99},"keys":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cf *engine.ConfigFile
		var p engine.Params
		var err error
		qaCheckAllocs(t, "decodeConfig", len(data), func() { cf, p, err = engine.DecodeConfig(data) })
		if err != nil {
			var nf *engine.NewerFormatError
			if !strings.HasPrefix(err.Error(), "config") && !errors.As(err, &nf) {
				t.Fatalf("config error does not say what failed: %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("invalid params accepted: %v", err)
		}
		if len(cf.Keys) == 0 {
			t.Fatal("a config without key slots accepted")
		}
		re, err := qaMarshalConfig(cf)
		if err != nil {
			t.Fatalf("decoded config does not marshal: %v", err)
		}
		cf2, p2, err := engine.DecodeConfig(re)
		if err != nil {
			t.Fatalf("re-encoded config does not decode: %v\n%s", err, re)
		}
		if !bytes.Equal(cf.Params, cf2.Params) {
			t.Fatalf("re-encoding changed the authenticated params bytes:\n%s\n%s", cf.Params, cf2.Params)
		}
		j1, _ := json.Marshal(p)
		j2, _ := json.Marshal(p2)
		k1, _ := json.Marshal(cf.Keys)
		k2, _ := json.Marshal(cf2.Keys)
		if !bytes.Equal(j1, j2) || !bytes.Equal(k1, k2) {
			t.Fatalf("config re-encoding changed it:\n%s %s\n%s %s", j1, k1, j2, k2)
		}
	})
}

// FuzzOpen fuzzes Open on a storage whose config object is the input.
// Open must fail exactly as decodeConfig does, or try the passphrase and
// either fail with ErrWrongPassphrase or open a store with those params;
// it opens only configs the fuzzer did not forge (slots authenticate the
// params), so an opened store has the seeds' fixed parameters.
func FuzzOpen(f *testing.F) {
	for _, c := range qaSeedConfigs(f) {
		st := store.NewMemory()
		st.Put(context.Background(), store.ConfigHandle, c)
		if _, err := engine.Open(context.Background(), st, []byte("test passphrase")); err != nil {
			f.Fatalf("seed config does not open: %v", err)
		}
		f.Add(c)
	}
	f.Add([]byte(`{"params":{"version":2},"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		st := store.NewMemory()
		st.Put(ctx, store.ConfigHandle, data)
		cf, p, derr := engine.DecodeConfig(data)
		if derr == nil {
			// Do not let the fuzzer ask for gigabytes of Argon2 memory:
			// KDF cost is chosen by whoever wrote the config.
			if len(cf.Keys) > 4 {
				return
			}
			for _, k := range cf.Keys {
				if k.Params.Memory > 1024 || k.Params.Time > 2 || k.Params.Threads > 4 {
					return
				}
			}
		}
		r, err := engine.Open(ctx, st, []byte("test passphrase"))
		switch {
		case derr != nil:
			if err == nil || err.Error() != derr.Error() {
				t.Fatalf("Open: %v; decodeConfig: %v", err, derr)
			}
		case err != nil:
			if !errors.Is(err, engine.ErrWrongPassphrase) {
				t.Fatalf("Open of a well-formed config: %v, want ErrWrongPassphrase", err)
			}
		default:
			j1, _ := json.Marshal(r.Params)
			j2, _ := json.Marshal(p)
			if !bytes.Equal(j1, j2) {
				t.Fatalf("opened store has params %s, config says %s", j1, j2)
			}
			if r.Params.Chunker != testChunker || r.Params.PackSize != 64<<10 || r.Params.Version != engine.FormatVersion || len(r.Params.StoreID) != 32 {
				t.Fatalf("a forged config opened: %s", j1)
			}
		}
	})
}

// qaAllocated returns the heap bytes fn allocated.
func qaAllocated(fn func()) uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	fn()
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before
}

// TestQAAllocCheckSeesLargeAllocations makes sure the allocation bound the
// fuzz targets rely on can fail.
func TestQAAllocCheckSeesLargeAllocations(t *testing.T) {
	var sink []byte
	got := qaAllocated(func() { sink = make([]byte, 64<<20) })
	if got < 64<<20 || got <= qaAllocLimit(16) {
		t.Fatalf("a 64 MiB allocation measured as %d bytes", got)
	}
	_ = sink
}

// TestObjectHeaderLengthAllocation: an object's header announces its
// plaintext length, and decompress used to preallocate that many bytes
// before decoding anything, so a few bytes of (authenticated) object made
// a reader allocate up to maxObjectSize (1 GiB). Found by FuzzLoadSnapshot
// (testdata/fuzz/FuzzLoadSnapshot/a5c3669f4f7e6201: 5 bytes → 98 MiB);
// this is its regression test.
func TestObjectHeaderLengthAllocation(t *testing.T) {
	r, _ := qaFuzzRepo(t)
	var e format.Encoder
	e.Byte(byte(format.CompZstd))
	e.Uvarint(engine.MaxObjectSize)
	e.B = append(e.B, 0x28, 0xb5, 0x2f, 0xfd) // zstd magic, then nothing
	sealed := r.Keys().Seal(nil, e.B, format.AADSnapshot)
	var err error
	got := qaAllocated(func() { _, err = r.OpenObject(sealed, format.AADSnapshot) })
	if err == nil {
		t.Fatal("a truncated zstd object opened")
	}
	if limit := qaAllocLimit(len(sealed)); got > limit {
		t.Errorf("opening a %d-byte object whose header claims %d bytes allocated %d bytes (limit %d): "+
			"decompress (compress.go) preallocates rawLen before decoding", len(sealed), uint64(engine.MaxObjectSize), got, limit)
	}
}

// TestDecodeRejectsZeroChunkList: a file entry whose content is "chunk
// list 000…0" decodes, but the all-zero id is what Node uses to mean
// "inline chunks", so the entry is then read as a file with no chunks:
// FileChunks returns none, restore writes Size zero bytes without an
// error, check finds nothing, and re-encoding it gives a different (and
// invalid) entry. The encoder can never write it, so the decoder must
// refuse it. Found by FuzzDecodeDir (testdata/fuzz/FuzzDecodeDir/
// zero-chunk-list); this is its regression test.
func TestDecodeRejectsZeroChunkList(t *testing.T) {
	var e format.Encoder
	e.Uvarint(1) // one entry
	e.Byte(byte(tree.TypeFile))
	e.Str("f")
	e.Uvarint(0o644) // mode
	e.Varint(0)      // mtime
	e.Uvarint(5)     // size
	e.Uvarint(0)     // uid
	e.Uvarint(0)     // gid
	e.Uvarint(0)     // inode
	e.Varint(0)      // ctime
	e.Byte(tree.ContentList)
	e.ID(crypto.ID{})
	e.Uvarint(0) // attrs
	nodes, err := tree.DecodePage(e.B)
	if err == nil {
		t.Errorf("a file whose chunk list id is all zeros decoded: %+v", nodes[0])
		r, _ := qaFuzzRepo(t)
		if cs, err := r.FileChunks(context.Background(), &nodes[0]); err == nil {
			t.Errorf("and FileChunks returns %d chunks for a %d-byte file, without an error", len(cs), nodes[0].Size)
		}
	}
}

// TestMinimalNodeRoundTrip: the smallest entry encoding is 11 bytes (a
// symlink with an empty name and target, zero metadata, no attrs; empty
// names are allowed for S3 keys like "a//"); decoders bound entry counts
// with minNodeSize, which was 12, so decodeDir refused a directory
// dirBuilder wrote. Found by fuzzing (testdata/fuzz/FuzzDecodePage/
// minimal-symlink); this is its regression test.
func TestMinimalNodeRoundTrip(t *testing.T) {
	n := tree.Node{Name: "", Type: tree.TypeSymlink}
	var e format.Encoder
	tree.EncodeNode(&e, &n)
	if len(e.B) < tree.MinNodeSize {
		t.Errorf("an entry encodes in %d bytes, below minNodeSize %d", len(e.B), tree.MinNodeSize)
	}
	blobs := qaBuildDir(t, []tree.Node{n})
	d, err := tree.DecodeDir(blobs[0])
	if err != nil {
		t.Fatalf("dirBuilder wrote a directory decodeDir refuses: %v", err)
	}
	if !qaNodesEqual(d.Inline, []tree.Node{n}) {
		t.Fatalf("got %+v", d.Inline)
	}
}

// qaListAll calls fn for every object of st, kind by kind.
func qaListAll(ctx context.Context, st store.Storage, fn func(store.ObjectInfo) error) error {
	for _, k := range store.Kinds {
		if err := st.List(ctx, k, fn); err != nil {
			return err
		}
	}
	return nil
}
