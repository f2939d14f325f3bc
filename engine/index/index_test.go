package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// model is the map the index replaces: the first location added wins.
type model struct {
	blobs map[crypto.ID]format.BlobLoc
	packs map[crypto.ID]crypto.ID // blob -> pack
	kinds map[crypto.ID]format.BlobKind
}

func newModel() *model {
	return &model{blobs: map[crypto.ID]format.BlobLoc{}, packs: map[crypto.ID]crypto.ID{}, kinds: map[crypto.ID]format.BlobKind{}}
}

func (m *model) add(packs []format.IndexPack) {
	for _, p := range packs {
		if _, ok := m.kinds[p.ID]; !ok {
			m.kinds[p.ID] = p.Kind
		}
		for _, b := range p.Blobs {
			if _, ok := m.blobs[b.ID]; !ok {
				m.blobs[b.ID] = b
				m.packs[b.ID] = p.ID
			}
		}
	}
}

func testKey(testing.TB) []byte { return bytes.Repeat([]byte{7}, 32) }

// gen makes ids that collide on purpose: many share their first 8 bytes
// with an earlier one, some repeat an earlier id (a blob in two packs).
type gen struct {
	rng  *rand.Rand
	seen []crypto.ID
}

func (g *gen) id() crypto.ID {
	var id crypto.ID
	for i := range 4 {
		binary.LittleEndian.PutUint64(id[i*8:], g.rng.Uint64())
	}
	if len(g.seen) > 0 {
		switch g.rng.IntN(10) {
		case 0, 1: // same prefix as an earlier id
			copy(id[:8], g.seen[g.rng.IntN(len(g.seen))][:8])
		case 2: // the same id again
			id = g.seen[g.rng.IntN(len(g.seen))]
		case 3: // same first 31 bytes
			o := g.seen[g.rng.IntN(len(g.seen))]
			copy(id[:31], o[:31])
		}
	}
	g.seen = append(g.seen, id)
	return id
}

// absent returns an id no one added whose prefix is present.
func (g *gen) absent(m *model) crypto.ID {
	for {
		id := g.seen[g.rng.IntN(len(g.seen))]
		id[8+g.rng.IntN(24)] ^= byte(1 + g.rng.IntN(255))
		if _, ok := m.blobs[id]; !ok {
			return id
		}
	}
}

func (g *gen) packs(n, blobs int) []format.IndexPack {
	var out []format.IndexPack
	for range n {
		p := format.IndexPack{ID: g.id(), Kind: format.BlobKind(1 + g.rng.IntN(2))}
		if g.rng.IntN(5) == 0 && len(g.seen) > 1 {
			p.ID = g.seen[g.rng.IntN(len(g.seen))] // a pack listed twice
		}
		for range 1 + g.rng.IntN(blobs) {
			p.Blobs = append(p.Blobs, format.BlobLoc{ID: g.id(), Kind: p.Kind, Comp: format.Compression(g.rng.IntN(2)),
				Offset: g.rng.Uint32(), Length: g.rng.Uint32(), RawLen: g.rng.Uint32()})
		}
		out = append(out, p)
	}
	return out
}

// same fails unless x answers every question as m does.
func same(t *testing.T, x *Master, m *model, g *gen) {
	t.Helper()
	for id, want := range m.blobs {
		if !x.Has(id) {
			t.Fatalf("Has(%x) = false, want true", id[:10])
		}
		got, pack, ok := x.Lookup(id)
		if !ok || got != want || pack != m.packs[id] {
			t.Fatalf("Lookup(%x) = %+v in %v %v, want %+v in %v", id[:10], got, pack.Short(), ok, want, m.packs[id].Short())
		}
	}
	for range 200 {
		if len(g.seen) == 0 {
			break
		}
		id := g.absent(m)
		if x.Has(id) {
			t.Fatalf("Has(absent %x) = true", id[:10])
		}
		if _, _, ok := x.Lookup(id); ok {
			t.Fatalf("Lookup(absent %x) found it", id[:10])
		}
	}
	if err := x.Err(); err != nil {
		t.Fatal(err)
	}
	if n := x.Len(); n != len(m.blobs) {
		t.Fatalf("Len = %d, want %d", n, len(m.blobs))
	}
	var prev crypto.ID
	n := 0
	err := x.Each(func(b format.BlobLoc, pack crypto.ID) {
		if n > 0 && bytes.Compare(b.ID[:], prev[:]) <= 0 {
			t.Fatalf("Each out of order")
		}
		prev = b.ID
		n++
		if b != m.blobs[b.ID] || pack != m.packs[b.ID] {
			t.Fatalf("Each gave %+v in %v, want %+v", b, pack.Short(), m.blobs[b.ID])
		}
	})
	if err != nil || n != len(m.blobs) {
		t.Fatalf("Each: %d blobs, %v; want %d", n, err, len(m.blobs))
	}
	packs := x.Packs()
	if len(packs) != len(m.kinds) {
		t.Fatalf("Packs: %d, want %d", len(packs), len(m.kinds))
	}
	for p, k := range m.kinds {
		if packs[p] != k {
			t.Fatalf("pack %v kind %v, want %v", p.Short(), packs[p], k)
		}
	}
}

// TestLikeMap checks the index against a map over random ids with
// prefix collisions and duplicates, with memtables small enough that
// every few Adds flush a run and runs merge at several levels.
func TestLikeMap(t *testing.T) {
	for _, mem := range []int{1, 5, 64, DefaultMemtable} {
		t.Run(fmt.Sprint("memtable=", mem), func(t *testing.T) {
			g := &gen{rng: rand.New(rand.NewPCG(uint64(mem), 1))}
			x, err := Open(Options{Memtable: mem})
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			m := newModel()
			for round := range 12 {
				ps := g.packs(1+g.rng.IntN(20), 30)
				if err := x.Add(ps); err != nil {
					t.Fatal(err)
				}
				m.add(ps)
				if round%4 == 3 {
					if err := x.Save(); err != nil {
						t.Fatal(err)
					}
				}
				same(t, x, m, g)
			}
		})
	}
}

// TestMergeKeepsFirst: a blob added again in a later run keeps the
// location of its first Add through every merge.
func TestMergeKeepsFirst(t *testing.T) {
	x, _ := Open(Options{Memtable: 2})
	defer x.Close()
	id := crypto.ID{1, 2, 3}
	m := newModel()
	for i := range 40 {
		p := []format.IndexPack{{ID: crypto.ID{9, byte(i)}, Kind: format.BlobData, Blobs: []format.BlobLoc{
			{ID: id, Kind: format.BlobData, Offset: uint32(i)},
			{ID: crypto.ID{5, byte(i)}, Kind: format.BlobData},
		}}}
		x.Add(p)
		m.add(p)
	}
	if l, _, _ := x.Lookup(id); l.Offset != 0 {
		t.Fatalf("offset %d, want the first Add's 0", l.Offset)
	}
	if len(x.runs) > 2*fanout {
		t.Fatalf("%d runs: merges did not happen", len(x.runs))
	}
	x.Save()
	if len(x.runs) > 2 {
		t.Fatalf("%d runs after Save, want at most 2", len(x.runs))
	}
	same(t, x, m, &gen{rng: rand.New(rand.NewPCG(1, 1)), seen: []crypto.ID{id}})
}

func cacheOpts(t testing.TB, dir string) Options {
	return Options{Dir: dir, Key: testKey(t), StoreID: "0123abcd", Memtable: 16}
}

// TestCacheReopen: what one process saved, the next finds, with the
// index files it covers, and keeps growing across reopenings.
func TestCacheReopen(t *testing.T) {
	dir := t.TempDir()
	g := &gen{rng: rand.New(rand.NewPCG(3, 3))}
	m := newModel()
	var files []string
	for round := range 6 {
		x, err := Open(cacheOpts(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if x.Note() != "" {
			t.Fatalf("round %d: cache not used: %s", round, x.Note())
		}
		if got := x.Covered(); !slices.Equal(got, files) {
			t.Fatalf("round %d: covered %v, want %v", round, got, files)
		}
		same(t, x, m, g)
		for f := range 1 + round {
			name := fmt.Sprintf("index-%d-%d", round, f)
			ps := g.packs(3, 20)
			if err := x.AddFile(name, ps); err != nil {
				t.Fatal(err)
			}
			m.add(ps)
			files = append(files, name)
		}
		if err := x.Save(); err != nil {
			t.Fatal(err)
		}
		same(t, x, m, g)
		x.Close()
	}
	// Only the runs the manifest lists are left.
	x, _ := Open(cacheOpts(t, dir))
	defer x.Close()
	ents, _ := os.ReadDir(dir)
	var runs int
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "run-") {
			runs++
		}
	}
	if runs != len(x.runs) || runs > 2 {
		t.Fatalf("%d run files, manifest lists %d", runs, len(x.runs))
	}
}

// TestCacheNotSavedAfterAdd: blobs that no index file covers (a backup's
// new packs) are never written into the cache.
func TestCacheNotSavedAfterAdd(t *testing.T) {
	dir := t.TempDir()
	g := &gen{rng: rand.New(rand.NewPCG(4, 4))}
	x, _ := Open(cacheOpts(t, dir))
	a := g.packs(2, 10)
	ma := newModel()
	ma.add(a)
	x.AddFile("a", a)
	x.Save()
	extra := g.packs(2, 40)
	x.Add(extra)
	x.Save()
	x.Close()
	y, _ := Open(cacheOpts(t, dir))
	defer y.Close()
	if !slices.Equal(y.Covered(), []string{"a"}) {
		t.Fatalf("covered %v", y.Covered())
	}
	same(t, y, ma, g)
	if countBlobs(extra) < 10 {
		t.Fatal("too few blobs to test")
	}
}

func countBlobs(ps []format.IndexPack) int {
	n := 0
	for _, p := range ps {
		n += len(p.Blobs)
	}
	return n
}

// damage describes one way a cache folder goes bad.
type damage struct {
	name string
	do   func(t *testing.T, dir string, runs []*run)
	// rebuild: Open drops the cache. Else the damage is found at lookup:
	// answers are "absent" with Err set, never a wrong location.
	rebuild bool
}

func runFiles(t *testing.T, dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "run-*"))
	if len(m) == 0 {
		t.Fatal("no run files")
	}
	return m
}

func flip(t *testing.T, path string, off int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	f.ReadAt(b[:], off)
	b[0] ^= 0x40
	f.WriteAt(b[:], off)
}

var damages = []damage{
	{"manifest flipped", func(t *testing.T, dir string, _ []*run) {
		flip(t, filepath.Join(dir, manifestName), 40)
	}, true},
	{"manifest truncated", func(t *testing.T, dir string, _ []*run) {
		os.Truncate(filepath.Join(dir, manifestName), 30)
	}, true},
	{"manifest empty", func(t *testing.T, dir string, _ []*run) {
		os.WriteFile(filepath.Join(dir, manifestName), nil, 0o600)
	}, true},
	{"run truncated", func(t *testing.T, dir string, _ []*run) {
		for _, p := range runFiles(t, dir) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-blockSize)
		}
	}, true},
	{"run removed", func(t *testing.T, dir string, _ []*run) {
		os.Remove(runFiles(t, dir)[0])
	}, true},
	{"run magic", func(t *testing.T, dir string, _ []*run) {
		flip(t, runFiles(t, dir)[0], 3)
	}, true},
	{"prefix block flipped", func(t *testing.T, dir string, runs []*run) {
		r := runs[0]
		flip(t, filepath.Join(dir, r.name), r.blockOff(regionPrefixes, 0)+100)
	}, true},
	{"runs swapped", func(t *testing.T, dir string, runs []*run) {
		if len(runs) < 2 {
			t.Fatal("the setup left one run: nothing to swap")
		}
		a, b := filepath.Join(dir, runs[0].name), filepath.Join(dir, runs[1].name)
		os.Rename(a, a+"x")
		os.Rename(b, a)
		os.Rename(a+"x", b)
	}, true},
	{"record block flipped", func(t *testing.T, dir string, runs []*run) {
		for _, r := range runs {
			for b := 0; b < ceilDiv(r.n, recsPerBlock); b++ {
				flip(t, filepath.Join(dir, r.name), r.blockOff(regionRecords, b)+200)
			}
		}
	}, false},
}

// TestCacheDamaged: a damaged cache is rebuilt or reports an error; it
// never gives a wrong answer.
func TestCacheDamaged(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			g := &gen{rng: rand.New(rand.NewPCG(5, 5))}
			m := newModel()
			x, _ := Open(cacheOpts(t, dir))
			for i := range 3 {
				ps := g.packs(4, 20)
				x.AddFile(fmt.Sprint("f", i), ps)
				m.add(ps)
				x.Save() // two runs: one big, one small
			}
			ps := g.packs(1, 3)
			x.AddFile("small", ps)
			m.add(ps)
			x.Save()
			runs := slices.Clone(x.runs)
			x.Close()
			d.do(t, dir, runs)
			y, err := Open(cacheOpts(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer y.Close()
			if d.rebuild {
				if y.Note() == "" || len(y.Covered()) != 0 || len(y.Packs()) != 0 {
					t.Fatalf("damaged cache used: note %q, covered %v", y.Note(), y.Covered())
				}
				// And the rebuilt one works and is kept.
				for i, p := range [][]format.IndexPack{ps} {
					y.AddFile(fmt.Sprint("r", i), p)
				}
				y.Save()
				mm := newModel()
				mm.add(ps)
				same(t, y, mm, g)
				z, _ := Open(cacheOpts(t, dir))
				defer z.Close()
				if z.Note() != "" {
					t.Fatalf("rebuilt cache not used: %s", z.Note())
				}
				same(t, z, mm, g)
				return
			}
			for id, want := range m.blobs {
				got, pack, ok := y.Lookup(id)
				if ok && (got != want || pack != m.packs[id]) {
					t.Fatalf("wrong answer from a damaged cache")
				}
				if !ok && y.Err() == nil {
					t.Fatalf("Lookup failed with no error")
				}
			}
			if y.Err() == nil {
				t.Fatal("no error from a damaged cache")
			}
		})
	}
}

// TestCacheForeign: a cache of another store, or under another key, is
// not used.
func TestCacheForeign(t *testing.T) {
	dir := t.TempDir()
	g := &gen{rng: rand.New(rand.NewPCG(6, 6))}
	other := cacheOpts(t, dir)
	other.StoreID = "ffff0000"
	otherKey := cacheOpts(t, dir)
	otherKey.Key = bytes.Repeat([]byte{8}, 32)
	for _, o := range []Options{other, otherKey} {
		x, _ := Open(cacheOpts(t, dir))
		x.AddFile("a", g.packs(3, 10))
		x.Save()
		x.Close()
		y, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if y.Note() == "" || len(y.Covered()) != 0 || y.Len() != 0 {
			t.Fatalf("foreign cache used: %q %v", y.Note(), y.Covered())
		}
		y.Close()
	}
}

// synthID is the i-th id of a synthetic store: splitmix64 of a
// counter, uniform like keyed hashes and cheap to make again.
func synthID(seed, i uint64) crypto.ID {
	var id crypto.ID
	x := seed*0x9E3779B97F4A7C15 + i*4
	for w := range 4 {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		binary.LittleEndian.PutUint64(id[w*8:], z^z>>31)
	}
	return id
}

// synth makes n blobs (ids synthID(seed, 2i)) in packs of perPack (ids
// synthID(seed, odd)), 64 packs a call of fn: no id is kept in RAM by
// the caller.
func synth(seed uint64, n, perPack int, fn func([]format.IndexPack)) {
	batch := make([]format.IndexPack, 0, 64)
	blobs := make([]format.BlobLoc, 0, 64*perPack)
	for i := 0; i < n; {
		batch, blobs = batch[:0], blobs[:0]
		for len(batch) < 64 && i < n {
			start := len(blobs)
			for range perPack {
				if i == n {
					break
				}
				blobs = append(blobs, format.BlobLoc{ID: synthID(seed, uint64(i)<<1), Kind: format.BlobData, Length: 1 << 20, RawLen: 1 << 20})
				i++
			}
			batch = append(batch, format.IndexPack{ID: synthID(seed, uint64(i)<<1|1), Kind: format.BlobData, Blobs: blobs[start:]})
		}
		fn(batch)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// bytesPerBlob loads n blobs (packs of 16: 16 MiB packs of 1 MiB
// chunks, the fewest blobs a pack and so the most pack bytes a blob)
// and returns the heap they hold afterwards, per blob.
func bytesPerBlob(t testing.TB, o Options, n int) (*Master, float64) {
	before := heapAlloc()
	x, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	f := 0
	synth(1, n, 16, func(ps []format.IndexPack) {
		if err := x.AddFile(fmt.Sprint(f), ps); err != nil {
			t.Fatal(err)
		}
		f++
	})
	if err := x.Save(); err != nil {
		t.Fatal(err)
	}
	after := heapAlloc()
	return x, float64(int64(after)-int64(before)) / float64(n)
}

// TestRAMPerBlob fails if the index holds 8 bytes or more of heap a blob
// (the budget is 16; the design takes ~4.7: a table of 2.25 bytes
// a blob built from the prefixes, and the pack table; keeping the 8-byte
// prefixes themselves, as before, measured 10.5).
func TestRAMPerBlob(t *testing.T) {
	n := 1 << 20
	if testing.Short() {
		n = 300_000
	}
	x, per := bytesPerBlob(t, Options{}, n)
	defer x.Close()
	t.Logf("%d blobs: %.2f bytes of heap a blob, %d runs", n, per, len(x.runs))
	if per >= 8 {
		t.Fatalf("%.2f bytes a blob, bound 8", per)
	}
	if x.Len() != n {
		t.Fatalf("Len %d, want %d", x.Len(), n)
	}
}

// TestConcurrent adds and looks up from several goroutines while runs
// are flushed and merged (run it with -race).
func TestConcurrent(t *testing.T) {
	x, _ := Open(Options{Memtable: 50})
	defer x.Close()
	done := make(chan struct{})
	var added atomic.Int64
	go func() {
		defer close(done)
		for i := range 300 {
			p := format.IndexPack{ID: synthID(9, uint64(i)<<1|1), Kind: format.BlobData}
			for j := range 10 {
				p.Blobs = append(p.Blobs, format.BlobLoc{ID: synthID(9, uint64(i*10+j)<<1), Offset: uint32(j)})
			}
			if err := x.Add([]format.IndexPack{p}); err != nil {
				t.Error(err)
				return
			}
			added.Store(int64(i+1) * 10)
		}
	}()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				n := added.Load()
				for i := int64(0); i < n; i += 7 {
					if l, _, ok := x.Lookup(synthID(9, uint64(i)<<1)); !ok || l.Offset != uint32(i%10) {
						t.Errorf("blob %d: %v %d", i, ok, l.Offset)
						return
					}
				}
				if x.Has(synthID(10, uint64(n))) {
					t.Error("absent blob found")
					return
				}
			}
		}()
	}
	wg.Wait()
	if x.Len() != 3000 || x.Err() != nil {
		t.Fatal(x.Len(), x.Err())
	}
}

// TestCacheReset: after Reset (the store lost an index file the cache
// covers), the next save lists only what was added since and removes
// the old run files.
func TestCacheReset(t *testing.T) {
	dir := t.TempDir()
	g := &gen{rng: rand.New(rand.NewPCG(7, 7))}
	x, _ := Open(cacheOpts(t, dir))
	x.AddFile("old", g.packs(3, 20))
	x.Save()
	x.Close()
	before, _ := filepath.Glob(filepath.Join(dir, "run-*"))
	y, _ := Open(cacheOpts(t, dir))
	y.Reset()
	ps := g.packs(2, 10)
	y.AddFile("new", ps)
	y.Save()
	y.Close()
	for _, p := range before {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s left after a reset and a save", p)
		}
	}
	z, _ := Open(cacheOpts(t, dir))
	defer z.Close()
	if !slices.Equal(z.Covered(), []string{"new"}) {
		t.Fatalf("covered %v", z.Covered())
	}
	m := newModel()
	m.add(ps)
	same(t, z, m, g)
}

// TestRecordPackOutOfRange: a record that names a pack beyond the pack
// table (a cache that does not hang together) makes Has and Lookup answer
// "absent" and Err report it, never panic.
func TestRecordPackOutOfRange(t *testing.T) {
	g := &gen{rng: rand.New(rand.NewPCG(9, 9))}
	x, err := Open(Options{Memtable: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ps := g.packs(2, 10)
	if err := x.AddFile("f", ps); err != nil {
		t.Fatal(err)
	}
	if err := x.Save(); err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	x.packs, x.kinds = x.packs[:0], x.kinds[:0] // the records outlive the table
	x.mu.Unlock()
	id := ps[0].Blobs[0].ID
	if x.Has(id) {
		t.Fatal("Has answered from a record with no pack")
	}
	if _, _, ok := x.Lookup(id); ok {
		t.Fatal("Lookup answered from a record with no pack")
	}
	if !errors.Is(x.Err(), errCache) {
		t.Fatalf("Err %v, want the cache reported unreadable", x.Err())
	}
}

// TestHitCacheForgets: ids answered from the hit cache are forgotten with
// the index (Reset) and never answer for another id in their slot.
func TestHitCacheForgets(t *testing.T) {
	g := &gen{rng: rand.New(rand.NewPCG(11, 11))}
	x, _ := Open(Options{Memtable: 8})
	defer x.Close()
	old := g.packs(4, 20)
	x.Add(old)
	x.Save()
	m := newModel()
	m.add(old)
	same(t, x, m, g) // fills the cache
	same(t, x, m, g) // answers from it
	// An id in the slot of a cached one, differing only there.
	for id := range m.blobs {
		other := id
		other[0] ^= 0x80
		if _, ok := m.blobs[other]; !ok && x.Has(other) {
			t.Fatalf("Has(%x) answered for %x", other[:8], id[:8])
		}
	}
	x.Reset()
	for id := range m.blobs {
		if x.Has(id) {
			t.Fatalf("Has(%x) after Reset", id[:8])
		}
	}
	ps := g.packs(2, 10)
	x.Add(ps)
	x.Save()
	m = newModel()
	m.add(ps)
	same(t, x, m, g)
}
