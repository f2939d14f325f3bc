package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// memStore keeps the blobs a builder saves and counts what loaders read.
type memStore struct {
	blobs      map[crypto.ID][]byte
	saved      []crypto.ID // in order, this build
	loads      int
	loadedSize int
}

func newMemStore() *memStore { return &memStore{blobs: map[crypto.ID][]byte{}} }

func (m *memStore) save(p []byte) (crypto.ID, error) {
	id := crypto.Hash(p)
	if _, ok := m.blobs[id]; !ok {
		m.blobs[id] = bytes.Clone(p)
	}
	m.saved = append(m.saved, id)
	return id, nil
}

func (m *memStore) get(id crypto.ID) ([]byte, error) {
	p, ok := m.blobs[id]
	if !ok {
		return nil, fmt.Errorf("blob %s: not found", id.Short())
	}
	m.loads++
	m.loadedSize += len(p)
	return p, nil
}

func (m *memStore) LoadPage(_ context.Context, id crypto.ID) ([]Node, error) {
	p, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return DecodePage(p)
}

func (m *memStore) LoadIndexPage(_ context.Context, id crypto.ID) (*Dir, error) {
	p, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return DecodeIndexPage(p)
}

func (m *memStore) dir(t testing.TB, id crypto.ID) *Dir {
	t.Helper()
	d, err := DecodeDir(m.blobs[id])
	if err != nil {
		t.Fatal(err)
	}
	d.ID = id
	return d
}

// build writes nodes (sorted) as a directory with cuts c into m.
func build(t testing.TB, m *memStore, c cuts, version int, nodes []Node) crypto.ID {
	t.Helper()
	m.saved = m.saved[:0]
	b := NewBuilder(m.save, version)
	b.cuts = c
	for i := range nodes {
		if err := b.Add(&nodes[i], DirStats{}); err != nil {
			t.Fatal(err)
		}
	}
	id, st, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != uint64(len(nodes)) {
		t.Fatalf("stats say %d entries, added %d", st.Entries, len(nodes))
	}
	return id
}

// randomNodes returns n entries with distinct random names (some sharing
// a name between a file and a directory), sorted by sort key.
func randomNodes(r *rand.Rand, n int) []Node {
	seen := map[string]bool{}
	nodes := make([]Node, 0, n)
	for len(nodes) < n {
		name := make([]byte, 1+r.IntN(12))
		for i := range name {
			name[i] = "abcdefgh.-_0123XYZ"[r.IntN(18)]
		}
		nd := Node{Name: string(name), Type: TypeFile, Mode: 0o644, MTime: r.Int64N(1 << 40), Size: 0}
		if r.IntN(5) == 0 {
			nd.Type, nd.Subtree = TypeDir, crypto.Hash(name)
		}
		if seen[nd.SortKey()] {
			continue
		}
		seen[nd.SortKey()] = true
		nodes = append(nodes, nd)
	}
	sortNodes(nodes)
	return nodes
}

func sortNodes(nodes []Node) {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].SortKey() < nodes[j].SortKey() })
}

// small cut rules, so that thousands of entries make several levels.
var testCutSets = []cuts{
	{pageMin: 2, pageMod: 8, pageMax: 64, indexMin: 2, indexMod: 4, indexMax: 16, dirMaxRefBytes: 300},
	{pageMin: 1, pageMod: 3, pageMax: 8, indexMin: 2, indexMod: 3, indexMax: 5, dirMaxRefBytes: 1},
	{pageMin: 8, pageMod: 32, pageMax: 256, indexMin: 4, indexMod: 16, indexMax: 64, dirMaxRefBytes: 256},
	defaultCuts,
}

func TestBuilderIterProperty(t *testing.T) {
	ctx := context.Background()
	for ci, c := range testCutSets {
		for _, n := range []int{0, 1, 7, 100, 1000, 6000} {
			for _, version := range []int{1, 2} {
				t.Run(fmt.Sprintf("cuts%d/n%d/v%d", ci, n, version), func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(ci), uint64(n)))
					nodes := randomNodes(r, n)
					m := newMemStore()
					id := build(t, m, c, version, nodes)
					d := m.dir(t, id)
					checkDir(ctx, t, m, d, nodes, c, version, r)
				})
			}
		}
	}
}

func checkDir(ctx context.Context, t *testing.T, m *memStore, d *Dir, nodes []Node, c cuts, version int, r *rand.Rand) {
	t.Helper()
	if d.Stats.Entries != uint64(len(nodes)) {
		t.Fatalf("dir says %d entries, want %d", d.Stats.Entries, len(nodes))
	}
	if version < 2 && d.Height != 0 {
		t.Fatalf("a version-1 builder wrote height %d", d.Height)
	}
	if version >= 2 && d.Pages != nil && d.Height < MaxHeight-1 {
		size := 0
		for i := range d.Pages {
			size += refSize(&d.Pages[i])
		}
		if size > c.dirMaxRefBytes && len(d.Pages) > 1 {
			t.Fatalf("directory blob holds %d bytes of references, bound %d", size, c.dirMaxRefBytes)
		}
	}
	t.Logf("%d entries: height %d, %d refs in the directory, %d blobs", len(nodes), d.Height, len(d.Pages), len(m.blobs))

	// Next walks every entry in order.
	it := NewIter(m, d)
	for i := 0; ; i++ {
		nd, ok, err := it.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if i != len(nodes) {
				t.Fatalf("iterated %d entries, want %d", i, len(nodes))
			}
			break
		}
		if i >= len(nodes) || nd.SortKey() != nodes[i].SortKey() || nd.MTime != nodes[i].MTime {
			t.Fatalf("entry %d: got %q", i, nd.SortKey())
		}
	}

	// Lookup finds every entry (or 500 of them), reading one blob per
	// level.
	sample := func(n int) []int {
		if n <= 500 {
			return r.Perm(n)
		}
		return r.Perm(n)[:500]
	}
	for _, i := range sample(len(nodes)) {
		m.loads = 0
		nd, ok, err := Lookup(ctx, m, d, nodes[i].SortKey())
		if err != nil || !ok || nd.MTime != nodes[i].MTime {
			t.Fatalf("lookup %q: %v %v", nodes[i].SortKey(), ok, err)
		}
		if want := d.Height + 1; d.Inline == nil && m.loads != want {
			t.Fatalf("lookup %q read %d blobs, want %d", nodes[i].SortKey(), m.loads, want)
		}
	}
	// Absent keys are not found.
	present := map[string]bool{}
	for i := range nodes {
		present[nodes[i].SortKey()] = true
	}
	absent := []string{"", "\x00", "\xff\xff", "zzzzzzzzzzzzzzzzz"}
	for i := range nodes {
		absent = append(absent, nodes[i].SortKey()+"\x00", nodes[i].Name+"~")
	}
	for _, i := range sample(len(absent)) {
		k := absent[i]
		if present[k] {
			continue
		}
		if _, ok, err := Lookup(ctx, m, d, k); ok || err != nil {
			t.Fatalf("lookup of absent %q: found %v, %v", k, ok, err)
		}
	}

	// Seek over increasing keys, present and absent, lands on the first
	// entry at or after each, and Next goes on from there.
	keys := append([]string(nil), absent...)
	for i := range nodes {
		if r.IntN(3) == 0 {
			keys = append(keys, nodes[i].SortKey())
		}
	}
	sort.Strings(keys)
	keys = keys[:r.IntN(len(keys)+1)]
	it = NewIter(m, d)
	cur := 0 // the iterator's position: a seek never goes back
	for _, k := range keys {
		want := max(cur, sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= k }))
		nd, ok, err := it.Seek(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (want < len(nodes) && nodes[want].SortKey() == k) || (ok && nd.SortKey() != k) {
			t.Fatalf("seek %q: found %v", k, ok)
		}
		cur = want
		p, more, err := it.Peek(ctx)
		if err != nil || more != (want < len(nodes)) || (more && p.SortKey() != nodes[want].SortKey()) {
			t.Fatalf("after seek %q: at %v %v, want entry %d", k, more, err, want)
		}
		if r.IntN(4) == 0 && more { // consume a few
			for j := 0; j < 3 && want+j < len(nodes); j++ {
				nd, ok, err := it.Next(ctx)
				if err != nil || !ok || nd.SortKey() != nodes[want+j].SortKey() {
					t.Fatalf("next after seek %q: %v %v", k, ok, err)
				}
				cur++
			}
		}
	}

	// SeekPos lands on each position, forward and back.
	it = NewIter(m, d)
	for range 50 {
		pos := uint64(r.IntN(len(nodes) + 2))
		if err := it.SeekPos(ctx, pos); err != nil {
			t.Fatal(err)
		}
		nd, ok, err := it.Next(ctx)
		if err != nil || ok != (pos < uint64(len(nodes))) || (ok && nd.SortKey() != nodes[pos].SortKey()) {
			t.Fatalf("seekpos %d: %v %v", pos, ok, err)
		}
	}

	// PageIDs names every blob but the directory's own, each once.
	if d.Inline == nil {
		got := map[crypto.ID]int{}
		if err := PageIDs(ctx, m, d, func(id crypto.ID) { got[id]++ }); err != nil {
			t.Fatal(err)
		}
		for id, k := range got {
			if k != 1 {
				t.Fatalf("PageIDs named %s %d times", id.Short(), k)
			}
		}
		if len(got) != len(m.blobs)-1 {
			t.Fatalf("PageIDs named %d blobs, the builder saved %d besides the directory", len(got), len(m.blobs)-1)
		}
	}

	// Decoding and re-encoding gives the same bytes.
	var e format.Encoder
	EncodeDir(&e, d)
	if !bytes.Equal(e.B, m.blobs[d.ID]) {
		t.Fatal("the directory does not re-encode to its bytes")
	}
}

// TestBuilderDeterministic: the same entries give the same blobs, however
// the builder is driven, and a different cut rule or version differs only
// where it must.
func TestBuilderDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	nodes := randomNodes(r, 5000)
	c := testCutSets[0]
	m1, m2 := newMemStore(), newMemStore()
	id1 := build(t, m1, c, 2, nodes)
	id2 := build(t, m2, c, 2, nodes)
	if id1 != id2 || len(m1.blobs) != len(m2.blobs) {
		t.Fatalf("two builds differ: %s/%d blobs, %s/%d", id1.Short(), len(m1.blobs), id2.Short(), len(m2.blobs))
	}
	for id, p := range m1.blobs {
		if !bytes.Equal(m2.blobs[id], p) {
			t.Fatal("two builds differ in bytes")
		}
	}
	// Version 1 and 2 share the pages; only references differ.
	m3 := newMemStore()
	build(t, m3, c, 1, nodes)
	pages := 0
	for id, p := range m3.blobs {
		if _, err := DecodePage(p); err == nil {
			pages++
			if _, ok := m1.blobs[id]; !ok {
				t.Fatal("a page of the version-1 build is not in the version-2 build")
			}
		}
	}
	if d := m1.dir(t, id1); d.Height < 2 {
		t.Fatalf("test setup: height %d", d.Height)
	}
	t.Logf("%d pages; version 2 adds %d index pages", pages, len(m1.blobs)-len(m3.blobs))
}

// TestInsertRewritesPerLevel: adding one entry to a large directory
// stores about one new blob per level (a page, an index page per level,
// the directory), not a number that grows with the directory.
func TestInsertRewritesPerLevel(t *testing.T) {
	for _, ci := range []int{0, 2} {
		c := testCutSets[ci]
		t.Run(fmt.Sprintf("cuts%d", ci), func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, uint64(ci)))
			nodes := randomNodes(r, 10000)
			m := newMemStore()
			id := build(t, m, c, 2, nodes)
			height := m.dir(t, id).Height
			if height < 2 {
				t.Fatalf("test setup: height %d", height)
			}
			before := map[crypto.ID]bool{}
			for _, id := range m.saved {
				before[id] = true
			}
			var total, worst, tries int
			for tries = 0; tries < 80; tries++ {
				extra := randomNodes(r, 1)[0]
				i := sort.Search(len(nodes), func(i int) bool { return nodes[i].SortKey() >= extra.SortKey() })
				if i < len(nodes) && nodes[i].SortKey() == extra.SortKey() {
					continue
				}
				more := append(append(append([]Node(nil), nodes[:i]...), extra), nodes[i:]...)
				build(t, m, c, 2, more)
				fresh := 0
				for _, id := range m.saved {
					if !before[id] {
						fresh++
					}
				}
				total += fresh
				worst = max(worst, fresh)
			}
			avg := float64(total) / float64(tries)
			t.Logf("height %d: one insert stores %.2f new blobs on average, %d at worst", height, avg, worst)
			// A page per level plus the directory, and a split or a
			// merge now and then.
			if avg > float64(height+2)+0.5 || worst > 3*(height+2) {
				t.Fatalf("one insert stores %.2f new blobs on average (worst %d) at height %d", avg, worst, height)
			}
		})
	}
}

// directoryLoader answers every index page load with a directory, as a
// cache holding both kinds (Cache.Dir) may for a forged reference.
type directoryLoader struct{}

func (directoryLoader) LoadPage(context.Context, crypto.ID) ([]Node, error) {
	return nil, fmt.Errorf("no page should be loaded")
}

func (directoryLoader) LoadIndexPage(context.Context, crypto.ID) (*Dir, error) {
	return &Dir{Inline: []Node{}}, nil
}

// TestIndexPageOfWrongKind: a reference to an index page that loads as a
// directory (no references) is corrupt, for every reader.
func TestIndexPageOfWrongKind(t *testing.T) {
	ctx := context.Background()
	d := &Dir{Stats: DirStats{Entries: 1}, Height: 1, Pages: []PageRef{{First: "a", Entries: 1, ID: crypto.Hash([]byte("x"))}}}
	if _, _, err := Lookup(ctx, directoryLoader{}, d, "a"); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("Lookup: %v, want ErrCorrupt", err)
	}
	if _, _, err := NewIter(directoryLoader{}, d).Next(ctx); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("Next: %v, want ErrCorrupt", err)
	}
	if err := NewIter(directoryLoader{}, d).SeekPos(ctx, 0); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("SeekPos: %v, want ErrCorrupt", err)
	}
	if err := PageIDs(ctx, directoryLoader{}, d, func(crypto.ID) {}); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("PageIDs: %v, want ErrCorrupt", err)
	}
}
