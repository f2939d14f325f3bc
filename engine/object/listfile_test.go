package object

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// randomKeys returns n distinct keys built from segments that make the
// hard cases: "a" beside "a/b", empty segments ("a//b", "a/"), names
// that sort around '/' ("a.b", "a0"), and multi-byte names.
func randomKeys(r *rand.Rand, n int) []LiveEntry {
	segs := []string{"a", "a.b", "a0", "b", "", "é", "日本", "z z", "a-", "0", "~x"}
	seen := map[string]bool{}
	var ents []LiveEntry
	for len(ents) < n {
		parts := make([]string, 1+r.IntN(4))
		for i := range parts {
			parts[i] = segs[r.IntN(len(segs))]
		}
		k := strings.Join(parts, "/")
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		ents = append(ents, LiveEntry{Name: k, Size: r.Int64N(1 << 40),
			MTime: time.Unix(r.Int64N(4e9), r.Int64N(1e9)), ETag: fmt.Sprintf(`"%x"`, r.Uint64()),
			Class: []string{"", "STANDARD", "GLACIER"}[r.IntN(3)]})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return ents
}

// pagesOf gives ents in pages of random sizes, as S3 would.
func pagesOf(r *rand.Rand, ents []LiveEntry, calls *int) PagesFunc {
	return func(ctx context.Context, fn func([]LiveEntry) error) error {
		*calls++
		for i := 0; i < len(ents); {
			j := min(len(ents), i+1+r.IntN(9))
			page := append([]LiveEntry(nil), ents[i:j]...)
			if err := fn(page); err != nil {
				return err
			}
			i = j
		}
		return nil
	}
}

func nolog(t *testing.T) func(string, ...any) {
	return func(f string, a ...any) { t.Errorf("unexpected log: "+f, a...) }
}

// sameTree checks that b answers every List and Stat exactly as a.
func sameTree(t *testing.T, a, b *FlatLive, ents []LiveEntry, r *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	prefixes := map[string]bool{"": true}
	for _, e := range ents {
		for i := range len(e.Name) {
			if e.Name[i] == '/' {
				prefixes[e.Name[:i+1]] = true
			}
		}
	}
	for p := range prefixes {
		pa, errA := a.List(ctx, p, "")
		pb, errB := b.List(ctx, p, "")
		if errA != nil || errB != nil || !reflect.DeepEqual(pa, pb) {
			t.Fatalf("List(%q): memory %v %v, file %v %v", p, pa, errA, pb, errB)
		}
		for _, e := range pa.Entries {
			for _, name := range []string{e.Name, e.Name + "x", e.Name[:len(e.Name)/2]} {
				oa, da, errA := a.Stat(ctx, p, name)
				ob, db, errB := b.Stat(ctx, p, name)
				if errA != nil || errB != nil || da != db || !reflect.DeepEqual(oa, ob) {
					t.Fatalf("Stat(%q, %q): memory %v %v %v, file %v %v %v", p, name, oa, da, errA, ob, db, errB)
				}
			}
		}
	}
	for range 50 {
		name := randomKeys(r, 1)[0].Name
		oa, da, _ := a.Stat(ctx, "", name)
		ob, db, _ := b.Stat(ctx, "", name)
		if da != db || !reflect.DeepEqual(oa, ob) {
			t.Fatalf("Stat(%q): memory %v %v, file %v %v", name, oa, da, ob, db)
		}
	}
}

// TestListFileAnswersAsMemory: a listing kept on disk answers every
// List and Stat exactly as the same listing in memory, over random keys
// with empty segments, folders beside objects of the same name, and
// names that sort around '/'.
func TestListFileAnswersAsMemory(t *testing.T) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 1))
		ents := randomKeys(r, []int{0, 1, 5, 40, 300, 1000, 2000, 700}[seed])
		mem := NewFlatLive(func(context.Context) ([]LiveEntry, error) {
			return append([]LiveEntry(nil), ents...), nil
		}, nil, time.Hour)
		calls := 0
		path := filepath.Join(t.TempDir(), "l.list")
		disk := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), path, nil, time.Hour, nolog(t))
		sameTree(t, mem, disk, ents, r)
		if calls != 1 {
			t.Fatalf("seed %d: listed %d times, want 1", seed, calls)
		}
		if _, ok := disk.cur.(*listFile); !ok {
			t.Fatalf("seed %d: the listing is %T, not a file", seed, disk.cur)
		}
	}
}

// TestListFileReused: a second tree on the same file within the TTL
// lists nothing; past the TTL, or with the file damaged, it lists again
// (and says why when damaged); a temporary file is never left.
func TestListFileReused(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	ents := randomKeys(r, 500)
	dir := t.TempDir()
	path := filepath.Join(dir, "x.list")
	calls := 0
	first := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), path, nil, time.Hour, nolog(t))
	if err := first.Load(ctx); err != nil {
		t.Fatal(err)
	}
	again := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), path, nil, time.Hour, nolog(t))
	if err := again.Load(ctx); err != nil || calls != 1 {
		t.Fatalf("a second mount within the TTL listed: %d listings, %v", calls, err)
	}
	// A TTL of forever lasts until unmount: a new tree lists again, and
	// then never.
	forever := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), path, nil, -1, nolog(t))
	for range 2 {
		if err := forever.Load(ctx); err != nil || calls != 2 {
			t.Fatalf("a mount with a TTL of forever: %d listings, %v", calls, err)
		}
	}
	calls--
	// Past the TTL: listed again.
	stale := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), path, nil, time.Nanosecond, nolog(t))
	time.Sleep(time.Millisecond)
	if err := stale.Load(ctx); err != nil || calls != 2 {
		t.Fatalf("a mount past the TTL: %d listings, %v", calls, err)
	}
	// Damaged: one byte flipped in the middle is seen, and listed again.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x10
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var logged []string
	damaged := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), path, nil, time.Hour, func(f string, a ...any) {
		logged = append(logged, fmt.Sprintf(f, a...))
	})
	mem := NewFlatLive(func(context.Context) ([]LiveEntry, error) { return ents, nil }, nil, time.Hour)
	sameTree(t, mem, damaged, ents, r)
	if calls != 3 || len(logged) != 1 || !strings.Contains(logged[0], "checksum mismatch") {
		t.Fatalf("a damaged listing file: %d listings, logged %q", calls, logged)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestListFileFallbacks: a listing that cannot be kept on disk (its
// folder cannot be made), or that the server gives out of key order, is
// kept in memory, answers right, and the log says why; a listing that
// fails fails the load and leaves no file.
func TestListFileFallbacks(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 3))
	ents := randomKeys(r, 200)
	mem := NewFlatLive(func(context.Context) ([]LiveEntry, error) { return ents, nil }, nil, time.Hour)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)

	var logged []string
	logf := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	calls := 0
	noDir := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), filepath.Join(dir, "file", "sub", "x.list"), nil, time.Hour, logf)
	sameTree(t, mem, noDir, ents, r)
	if len(logged) != 1 || !strings.Contains(logged[0], "keeping it in memory") {
		t.Fatalf("no folder for the listing: logged %q", logged)
	}

	logged = nil
	shuffled := append([]LiveEntry(nil), ents...)
	shuffled[10], shuffled[11] = shuffled[11], shuffled[10]
	unsorted := NewFlatLiveOnDisk(pagesOf(r, shuffled, &calls), filepath.Join(dir, "u.list"), nil, time.Hour, logf)
	sameTree(t, mem, unsorted, ents, r)
	if len(logged) != 1 || !strings.Contains(logged[0], "out of order") {
		t.Fatalf("keys out of order: logged %q", logged)
	}

	boom := errors.New("AccessDenied")
	failing := NewFlatLiveOnDisk(func(ctx context.Context, fn func([]LiveEntry) error) error {
		if err := fn(ents[:5]); err != nil {
			return err
		}
		return boom
	}, filepath.Join(dir, "f.list"), nil, time.Hour, nolog(t))
	if err := failing.Load(ctx); !errors.Is(err, boom) {
		t.Fatalf("a failed listing loaded: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "f.list*"))
	if len(left) != 0 {
		t.Fatalf("a failed listing left %v", left)
	}
}

// TestRemoveOldListFiles: listing files unused for the maximum age and
// day-old temporary files go; fresh ones and other files stay.
func TestRemoveOldListFiles(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-ListFileMaxAge - time.Hour)
	for name, mt := range map[string]time.Time{"old.list": old, "new.list": time.Now(),
		"a.list.1-2.tmp": time.Now().Add(-25 * time.Hour), "b.list.1-2.tmp": time.Now(), "other": old} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, nil, 0o600)
		os.Chtimes(p, mt, mt)
	}
	removeOldListFiles(dir, ListFileMaxAge)
	var got []string
	ds, _ := os.ReadDir(dir)
	for _, d := range ds {
		got = append(got, d.Name())
	}
	if want := []string{"b.list.1-2.tmp", "new.list", "other"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

func BenchmarkListFileWalk(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var ents []LiveEntry
	for i := range 100_000 {
		ents = append(ents, LiveEntry{Name: fmt.Sprintf("d%03d/f%06d.bin", i/1000, i), Size: int64(i), MTime: time.Unix(int64(i), 0), ETag: `"0123456789abcdef0123456789abcdef"`})
	}
	calls := 0
	disk := NewFlatLiveOnDisk(pagesOf(r, ents, &calls), filepath.Join(b.TempDir(), "b.list"), nil, time.Hour, func(string, ...any) {})
	ctx := context.Background()
	disk.Load(ctx)
	b.ResetTimer()
	for range b.N {
		top, _ := disk.List(ctx, "", "")
		for _, d := range top.Entries {
			disk.List(ctx, d.Name+"/", "")
		}
	}
}
