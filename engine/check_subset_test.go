package engine_test

import (
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// packReads records which packs a check reads whole (the tree walk reads
// tree blobs by range; only checkPack reads a whole pack).
type packReads struct {
	store.Storage
	mu   sync.Mutex
	read map[string]int
}

func (s *packReads) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	if (h.Kind == store.KindDataPack || h.Kind == store.KindTreePack) && n < 0 {
		s.mu.Lock()
		s.read[h.Name]++
		s.mu.Unlock()
	}
	return s.Storage.Get(ctx, h, off, n)
}

func (s *packReads) Unwrap() store.Storage { return s.Storage }

// runSubset checks the store with sub and returns the result and the packs
// read whole.
func runSubset(t *testing.T, storeDir string, sub check.Subset) (*check.Result, map[string]int) {
	t.Helper()
	st := &packReads{Storage: folderStore(t, storeDir), read: map[string]int{}}
	r := openRepo(t, st)
	res, err := check.Run(context.Background(), r, check.Options{Subset: sub})
	if err != nil {
		t.Fatalf("check %s: %v", sub, err)
	}
	return res, st.read
}

// TestCheckSubsetSlicesCoverEveryPackOnce: for several M, the packs read
// by slices 1..M are every pack of the store, none twice; each run's
// figures agree with what it read.
func TestCheckSubsetSlicesCoverEveryPackOnce(t *testing.T) {
	_, storeDir := newCheckStore(t, 6)
	packs := storePacks(t, storeDir)
	if len(packs) < 10 {
		t.Fatalf("test setup: %d packs", len(packs))
	}
	full, fullRead := runSubset(t, storeDir, check.Subset{})
	if !full.OK() || len(fullRead) != len(packs) || full.Packs != len(packs) || full.PacksTotal != len(packs) {
		t.Fatalf("full check: ok %v, read %d packs, reports %d of %d; store has %d", full.OK(), len(fullRead), full.Packs, full.PacksTotal, len(packs))
	}
	for _, m := range []uint64{1, 2, 3, 5, 7, 64} {
		union := map[string]int{}
		var bytes int64
		nonEmpty := 0
		for n := uint64(1); n <= m; n++ {
			res, read := runSubset(t, storeDir, check.Subset{Mode: check.ReadSlice, N: n, M: m})
			if !res.OK() {
				t.Errorf("%d/%d: problems %v", n, m, res.Problems)
			}
			if res.Packs != len(read) || res.PacksTotal != len(packs) || res.BytesTotal != full.Bytes {
				t.Errorf("%d/%d: reports %d packs of %d (%d of %d bytes), read %d packs; store has %d packs, %d bytes",
					n, m, res.Packs, res.PacksTotal, res.Bytes, res.BytesTotal, len(read), len(packs), full.Bytes)
			}
			for name, k := range read {
				union[name] += k
			}
			if len(read) > 0 {
				nonEmpty++
			}
			bytes += res.Bytes
		}
		for name := range packs {
			if union[name] != 1 {
				t.Errorf("M=%d: pack %s read %d times over the M slices, want 1", m, name[:8], union[name])
			}
		}
		if len(union) != len(packs) || bytes != full.Bytes {
			t.Errorf("M=%d: slices read %d packs, %d bytes; the store has %d packs, %d bytes", m, len(union), bytes, len(packs), full.Bytes)
		}
		if m > 1 && m <= 3 && nonEmpty < 2 {
			t.Errorf("M=%d: all %d packs fell into one slice", m, len(packs))
		}
	}
}

// TestCheckSubsetSliceProperties: over random ids, each falls in exactly
// one of M slices, the one Slice names, whatever else is in the store;
// and the slices are about equal.
func TestCheckSubsetSliceProperties(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	ids := make([]crypto.ID, 20000)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = byte(rnd.UintN(256))
		}
	}
	for _, m := range []uint64{1, 2, 3, 7, 10, 300, 1 << 40} {
		counts := map[uint64]int{}
		for _, id := range ids {
			s := check.Slice(id, m)
			if s >= m {
				t.Fatalf("M=%d: slice %d out of range", m, s)
			}
			counts[s]++
		}
		if m <= 10 {
			for s := range m {
				want := len(ids) / int(m)
				if c := counts[s]; c < want*9/10 || c > want*11/10 {
					t.Errorf("M=%d: slice %d holds %d of %d ids, want about %d", m, s+1, c, len(ids), want)
				}
			}
		}
	}
	// Slices are ordered ranges of the id: sorting by id sorts by slice.
	sorted := append([]crypto.ID(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool { return string(sorted[i][:]) < string(sorted[j][:]) })
	for i := 1; i < len(sorted); i++ {
		if check.Slice(sorted[i-1], 7) > check.Slice(sorted[i], 7) {
			t.Fatalf("slices are not ranges of the id")
		}
	}
}

// TestCheckSubsetFindsDamageInItsSliceOnly: a damaged data pack is
// reported by the slice that holds it, and by no other; the full check
// finds it too. (A damaged tree pack is found by every mode: every mode
// walks the trees.)
func TestCheckSubsetFindsDamageInItsSliceOnly(t *testing.T) {
	_, storeDir := newCheckStore(t, 6)
	packs := storePacks(t, storeDir)
	var names []string
	for name, p := range packs {
		if strings.Contains(p, string(filepath.Separator)+"d"+string(filepath.Separator)) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	victim := names[len(names)/2]
	data, err := os.ReadFile(packs[victim])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0x40
	if err := os.WriteFile(packs[victim], data, 0o600); err != nil {
		t.Fatal(err)
	}
	vid, err := crypto.ParseID(victim)
	if err != nil {
		t.Fatal(err)
	}
	const m = 3
	holder := check.Slice(vid, m) + 1
	for n := uint64(1); n <= m; n++ {
		res, read := runSubset(t, storeDir, check.Subset{Mode: check.ReadSlice, N: n, M: m})
		named := false
		for _, p := range res.Problems {
			if p.Pack == victim[:8] || strings.Contains(p.Message, victim[:8]) {
				named = true
			}
		}
		switch {
		case n == holder && (res.OK() || !named || read[victim] != 1):
			t.Errorf("slice %d/%d holds the damaged pack %s: ok %v, named %v, read %d times; problems %v", n, m, victim[:8], res.OK(), named, read[victim], res.Problems)
		case n != holder && (!res.OK() || read[victim] != 0):
			t.Errorf("slice %d/%d does not hold the damaged pack (slice %d does) but reports %v", n, m, holder, res.Problems)
		}
	}
	if res, _ := runSubset(t, storeDir, check.Subset{}); res.OK() {
		t.Error("the full check did not find the damaged pack")
	}
}

// TestCheckSubsetPercentAndStructureOnly: P% reads ceil(P% of the packs),
// by count; structure-only reads none, yet reports a pack the index
// names that the store lacks, and the files it held.
func TestCheckSubsetPercentAndStructureOnly(t *testing.T) {
	_, storeDir := newCheckStore(t, 5)
	packs := storePacks(t, storeDir)
	for _, c := range []struct {
		pct  float64
		want int
	}{{100, len(packs)}, {50, (len(packs) + 1) / 2}, {0.001, 1}} {
		res, read := runSubset(t, storeDir, check.Subset{Mode: check.ReadPercent, Percent: c.pct})
		if !res.OK() || len(read) != c.want || res.Packs != c.want || res.PacksTotal != len(packs) {
			t.Errorf("%v%%: ok %v, read %d packs, reports %d of %d; want %d of %d", c.pct, res.OK(), len(read), res.Packs, res.PacksTotal, c.want, len(packs))
		}
	}
	res, read := runSubset(t, storeDir, check.Subset{Mode: check.ReadNone})
	if !res.OK() || len(read) != 0 || res.Packs != 0 || res.Snapshots != 5 {
		t.Fatalf("structure only: ok %v, read %d packs, reports %d, %d snapshots", res.OK(), len(read), res.Packs, res.Snapshots)
	}
	// Remove one data pack: structure-only names it and the files it held.
	var victim string
	for name, p := range packs {
		if strings.Contains(p, string(filepath.Separator)+"d"+string(filepath.Separator)) {
			victim = name
			break
		}
	}
	if err := os.Remove(packs[victim]); err != nil {
		t.Fatal(err)
	}
	res, read = runSubset(t, storeDir, check.Subset{Mode: check.ReadNone})
	files := 0
	named := false
	for _, p := range res.Problems {
		if p.Path != "" {
			files++
		}
		if p.Pack == victim[:8] {
			named = true
		}
	}
	if res.OK() || !named || files == 0 || len(read) != 0 {
		t.Errorf("structure only, pack %s removed: ok %v, pack named %v, %d files named, %d packs read; problems %v", victim[:8], res.OK(), named, files, len(read), res.Problems)
	}
}

func TestCheckParseSubset(t *testing.T) {
	good := map[string]check.Subset{
		"1/1":   {Mode: check.ReadSlice, N: 1, M: 1},
		"2/7":   {Mode: check.ReadSlice, N: 2, M: 7},
		" 7/7 ": {Mode: check.ReadSlice, N: 7, M: 7},
		"10%":   {Mode: check.ReadPercent, Percent: 10},
		"0.5%":  {Mode: check.ReadPercent, Percent: 0.5},
		"100%":  {Mode: check.ReadPercent, Percent: 100},
	}
	for in, want := range good {
		got, err := check.ParseSubset(in)
		if err != nil || got.Mode != want.Mode || got.N != want.N || got.M != want.M || got.Percent != want.Percent {
			t.Errorf("ParseSubset(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"0/3", "4/3", "3/0", "0/0", "120%", "0%", "-5%", "abc", "", "1/", "/3", "1/3/5", "a/b", "NaN%", "-1/3", "1.5/3", "10"} {
		if got, err := check.ParseSubset(in); !errors.Is(err, check.ErrSubset) || !strings.Contains(err.Error(), "N/M") {
			t.Errorf("ParseSubset(%q) = %+v, %v; want an error saying what to give", in, got, err)
		}
	}
}
