package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
)

// testPutGet: what Put stores, Get returns whole, for every kind and for
// sizes from empty up; neither Put nor Get shares its buffer with the
// caller.
func testPutGet(t testing.TB, st store.Storage) {
	g := newGen(t, "PutGet")
	sizes := []int{0, 1, 100, 64<<10 + 3}
	var hs []store.Handle
	var want [][]byte
	for i, k := range store.Kinds {
		h, data := g.object(k, sizes[i%len(sizes)])
		mustPut(t, st, h, data)
		hs, want = append(hs, h), append(want, data)
	}
	for range 2 { // the second time from a cache, if there is one
		for i, h := range hs {
			checkGet(t, st, h, 0, -1, want[i])
		}
	}

	// The store keeps its own copy of what it was given, and hands out
	// a copy the caller may scribble on.
	h, data := g.object(store.KindIndex, 1000)
	orig := slices.Clone(data)
	mustPut(t, st, h, data)
	clear(data)
	got := mustGet(t, st, h, 0, -1)
	checkBytes(t, "Get after the caller reused Put's buffer", got, orig)
	clear(got)
	checkGet(t, st, h, 0, -1, orig)
	got = mustGet(t, st, h, 0, 10)
	clear(got)
	checkGet(t, st, h, 0, 10, orig[:10])
}

// testGetRange: ranged reads at the start, middle and end, of length 0,
// and to the end (length -1) from an offset.
func testGetRange(t testing.TB, st store.Storage) {
	g := newGen(t, "GetRange")
	const size = 1000
	h, data := g.object(store.KindTreePack, size)
	mustPut(t, st, h, data)
	ranges := []struct{ off, n int64 }{
		{0, -1}, {0, size}, {0, 1}, {0, 10},
		{400, 200}, {1, size - 2},
		{size - 1, 1}, {size - 10, 10},
		{size - 10, -1}, {500, -1}, {size - 1, -1},
		{0, 0}, {500, 0}, {size - 1, 0},
	}
	for range 2 { // the second time from a cache, if there is one
		for _, r := range ranges {
			want := data[r.off:]
			if r.n >= 0 {
				want = data[r.off : r.off+r.n]
			}
			checkGet(t, st, h, r.off, r.n, want)
		}
	}

	empty, _ := g.object(store.KindTreePack, 0)
	mustPut(t, st, empty, nil)
	checkGet(t, st, empty, 0, -1, []byte{})
	checkGet(t, st, empty, 0, 0, []byte{})
}

// testGetOutOfRange: a range that runs past the end or starts past it
// is an error, never short data; and, since the object exists, never a
// not-found.
func testGetOutOfRange(t testing.TB, st store.Storage) {
	g := newGen(t, "GetOutOfRange")
	const size = 100
	h, data := g.object(store.KindTreePack, size)
	mustPut(t, st, h, data)
	for _, r := range []struct{ off, n int64 }{
		{0, size + 1}, {50, 51}, {size - 1, 2}, {size, 1},
		{size + 1, -1}, {size + 50, -1}, {200, 10}, {1 << 40, 1},
	} {
		b, err := st.Get(t.Context(), h, r.off, r.n)
		switch {
		case err == nil:
			t.Errorf("Get %s%s of a %d-byte object: %d bytes and no error", h, rangeString(r.off, r.n), size, len(b))
		case errors.Is(err, store.ErrNotFound):
			t.Errorf("Get %s%s of a %d-byte object: %v; the object exists, so not a not-found", h, rangeString(r.off, r.n), size, err)
		}
	}
	// Reading to the end from the very end may give nothing or an error;
	// never bytes.
	if b, err := st.Get(t.Context(), h, size, -1); err == nil && len(b) != 0 {
		t.Errorf("Get %s%s: %d bytes past the end", h, rangeString(size, -1), len(b))
	}
	checkGet(t, st, h, 0, -1, data) // and nothing was harmed
}

// testGetNegativeOffset: an offset before the start is an error, not
// the whole object nor a range of it.
func testGetNegativeOffset(t testing.TB, st store.Storage) {
	g := newGen(t, "GetNegativeOffset")
	h, data := g.object(store.KindDataPack, 100)
	mustPut(t, st, h, data)
	for _, r := range []struct{ off, n int64 }{{-1, -1}, {-1, 10}, {-100, 50}} {
		if b, err := st.Get(t.Context(), h, r.off, r.n); err == nil {
			t.Errorf("Get %s%s: %d bytes and no error", h, rangeString(r.off, r.n), len(b))
		}
	}
}

// testGetInto: store.GetInto (the storage's own GetInto when it is a
// RangeReader) fills the caller's buffer with exactly the bytes Get
// gives, fails on a range past the end and on a missing object
// (not-found), and writes nothing past the buffer it is given.
func testGetInto(t testing.TB, st store.Storage) {
	g := newGen(t, "GetInto")
	ctx := t.Context()
	const size = 1000
	h, data := g.object(store.KindDataPack, size)
	mustPut(t, st, h, data)
	for range 2 { // the second time from a cache, if there is one
		for _, r := range []struct{ off, n int64 }{
			{0, size}, {0, 1}, {400, 200}, {1, size - 2}, {size - 1, 1}, {500, 0},
		} {
			space := bytes.Repeat([]byte{0xA5}, int(r.n)+8)
			buf := space[:r.n]
			if err := store.GetInto(ctx, st, h, r.off, buf); err != nil {
				t.Errorf("GetInto %s%s: %v", h, rangeString(r.off, r.n), err)
				continue
			}
			if !bytes.Equal(buf, data[r.off:r.off+r.n]) {
				t.Errorf("GetInto %s%s: wrong bytes", h, rangeString(r.off, r.n))
			}
			if !bytes.Equal(space[r.n:], bytes.Repeat([]byte{0xA5}, 8)) {
				t.Errorf("GetInto %s%s wrote past the buffer", h, rangeString(r.off, r.n))
			}
		}
	}
	for _, r := range []struct{ off, n int64 }{{0, size + 1}, {size - 1, 2}, {size, 1}, {1 << 40, 1}} {
		if err := store.GetInto(ctx, st, h, r.off, make([]byte, r.n)); err == nil {
			t.Errorf("GetInto %s%s of a %d-byte object: no error", h, rangeString(r.off, r.n), size)
		} else if errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetInto %s%s of a %d-byte object: %v; the object exists, so not a not-found", h, rangeString(r.off, r.n), size, err)
		}
	}
	if err := store.GetInto(ctx, st, h, -1, make([]byte, 10)); err == nil {
		t.Errorf("GetInto %s%s: no error", h, rangeString(-1, 10))
	}
	missing := g.handle(store.KindDataPack)
	checkNotFound(t, "GetInto "+missing.String(), store.GetInto(ctx, st, missing, 0, make([]byte, 10)))
	checkGet(t, st, h, 0, -1, data) // and nothing was harmed
}

// testStat: Stat reports the handle and the size.
func testStat(t testing.TB, st store.Storage) {
	g := newGen(t, "Stat")
	for i, size := range []int{0, 1, 4096, 100_001} {
		h, data := g.object(store.Kinds[1+i%(len(store.Kinds)-1)], size)
		mustPut(t, st, h, data)
		checkSize(t, st, h, int64(size))
	}
	mustPut(t, st, store.ConfigHandle, g.bytes(321))
	checkSize(t, st, store.ConfigHandle, 321)
}

// testMissing: reading a missing object says store.ErrNotFound; deleting
// one is not an error.
func testMissing(t testing.TB, st store.Storage) {
	g := newGen(t, "Missing")
	ctx := t.Context()
	var hs []store.Handle
	for _, k := range store.Kinds {
		hs = append(hs, g.handle(k))
	}
	// An object that was there once.
	gone, data := g.object(store.KindSnapshot, 10)
	mustPut(t, st, gone, data)
	checkGet(t, st, gone, 0, -1, data) // into a cache, if there is one
	if err := st.Delete(ctx, gone); err != nil {
		t.Fatalf("Delete %s: %v", gone, err)
	}
	hs = append(hs, gone)

	for _, h := range hs {
		_, err := st.Stat(ctx, h)
		checkNotFound(t, "Stat "+h.String(), err)
		_, err = st.Get(ctx, h, 0, -1)
		checkNotFound(t, "Get "+h.String(), err)
		_, err = st.Get(ctx, h, 0, 10)
		checkNotFound(t, "Get "+h.String()+rangeString(0, 10), err)
		_, err = st.Get(ctx, h, 5, -1)
		checkNotFound(t, "Get "+h.String()+rangeString(5, -1), err)
		if st.Features().Conditional {
			_, _, err = st.GetVersion(ctx, h)
			checkNotFound(t, "GetVersion "+h.String(), err)
		}
		if err := st.Delete(ctx, h); err != nil {
			t.Errorf("Delete %s of a missing object: %v; want nil", h, err)
		}
	}
}

// testDelete: Delete removes one object and only it: afterwards it is
// not found by Stat or by any Get, even of a range read before (which a
// cache may hold).
func testDelete(t testing.TB, st store.Storage) {
	g := newGen(t, "Delete")
	ctx := t.Context()
	type obj struct {
		h    store.Handle
		data []byte
	}
	var objs []obj
	for _, k := range []store.Kind{store.KindTreePack, store.KindTreePack, store.KindTreePack, store.KindIndex, store.KindSnapshot, store.KindDataPack, store.KindLock} {
		h, data := g.object(k, 50)
		mustPut(t, st, h, data)
		objs = append(objs, obj{h, data})
	}
	for _, o := range objs {
		checkGet(t, st, o.h, 0, -1, o.data)
		checkGet(t, st, o.h, 10, 20, o.data[10:30])
	}
	keep := []obj{objs[0], objs[2]}
	for _, o := range objs {
		if o.h == keep[0].h || o.h == keep[1].h {
			continue
		}
		if err := st.Delete(ctx, o.h); err != nil {
			t.Fatalf("Delete %s: %v", o.h, err)
		}
		_, err := st.Stat(ctx, o.h)
		checkNotFound(t, "Stat after Delete "+o.h.String(), err)
		_, err = st.Get(ctx, o.h, 0, -1)
		checkNotFound(t, "Get after Delete "+o.h.String(), err)
		_, err = st.Get(ctx, o.h, 10, 20)
		checkNotFound(t, "Get after Delete "+o.h.String()+rangeString(10, 20), err)
		if err := st.Delete(ctx, o.h); err != nil {
			t.Errorf("Delete %s a second time: %v; want nil", o.h, err)
		}
	}
	want := map[store.Handle]int64{}
	for _, o := range keep {
		want[o.h] = int64(len(o.data))
		checkGet(t, st, o.h, 0, -1, o.data)
	}
	checkList(t, st, store.KindTreePack, want)
	for _, k := range store.Kinds {
		if k != store.KindTreePack {
			checkList(t, st, k, map[store.Handle]int64{})
		}
	}
}

// testListKinds: List(k) reports exactly the objects of kind k, with
// their handles and sizes. The same name is used in several kinds, so a
// store that mixes up kinds cannot pass by luck.
func testListKinds(t testing.TB, st store.Storage) {
	g := newGen(t, "ListKinds")
	checkEmpty(t, st, "a new storage")
	shared := g.id()
	want := map[store.Kind]map[store.Handle]int64{}
	for _, k := range store.Kinds {
		want[k] = map[store.Handle]int64{}
	}
	add := func(h store.Handle, size int) {
		mustPut(t, st, h, g.bytes(size))
		want[h.Kind][h] = int64(size)
	}
	add(store.ConfigHandle, 77)
	for i, k := range store.Kinds[1:] {
		add(store.Handle{Kind: k, Name: shared}, 10+i)
		for j := range 3 {
			add(g.handle(k), 100*i+j)
		}
	}
	// Two data packs sharing their first two hex digits (one folder).
	add(store.Handle{Kind: store.KindDataPack, Name: shared[:2] + g.id()[2:]}, 3)
	for _, k := range store.Kinds {
		checkList(t, st, k, want[k])
	}
	for k, objs := range want {
		for h, size := range objs {
			if h.Kind != k {
				t.Fatalf("bug in the test: %s under %s", h, k)
			}
			checkSize(t, st, h, size)
		}
	}
}

// testListMany: a listing longer than any page (S3 lists 1000 keys at a
// time) reports every object exactly once.
func testListMany(t testing.TB, st store.Storage) {
	g := newGen(t, "ListMany")
	n := listCount()
	want := map[store.Handle]int64{}
	var hs []store.Handle
	for i := range n {
		h := g.handle(store.KindIndex)
		hs = append(hs, h)
		want[h] = int64(i % 17)
	}
	forEach(t, len(hs), 16, func(i int) error {
		return st.Put(t.Context(), hs[i], make([]byte, want[hs[i]]))
	})
	// Neighbours that must not show up.
	other := map[store.Handle]int64{}
	for range 5 {
		h := g.handle(store.KindSnapshot)
		mustPut(t, st, h, g.bytes(3))
		other[h] = 3
	}
	checkList(t, st, store.KindIndex, want)
	checkList(t, st, store.KindSnapshot, other)
}

// forEach runs fn(0..n-1) on workers goroutines and fails t on the first
// error.
func forEach(t testing.TB, n, workers int, fn func(i int) error) {
	t.Helper()
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// testListStop: an error from fn stops the listing and comes back from
// List.
func testListStop(t testing.TB, st store.Storage) {
	g := newGen(t, "ListStop")
	for range 10 {
		mustPut(t, st, g.handle(store.KindSnapshot), g.bytes(8))
	}
	stop := errors.New("enough")
	calls := 0
	err := st.List(t.Context(), store.KindSnapshot, func(store.ObjectInfo) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("List whose fn fails: %v; want the error fn returned", err)
	}
	if calls != 3 {
		t.Errorf("List called fn %d times after it returned an error on call 3", calls)
	}
}

// testOverwrite: Put replaces an existing object, shorter or longer.
// Only the config and locks are ever rewritten: the other kinds are
// named by the hash of their bytes, so a rewrite there would be a caller
// bug (and a cache may rightly keep the first bytes).
func testOverwrite(t testing.TB, st store.Storage) {
	g := newGen(t, "Overwrite")
	for _, h := range []store.Handle{store.ConfigHandle, g.handle(store.KindLock)} {
		a, b, c := g.bytes(100), g.bytes(50), g.bytes(300)
		mustPut(t, st, h, a)
		mustPut(t, st, h, b)
		checkGet(t, st, h, 0, -1, b)
		checkSize(t, st, h, 50)
		checkList(t, st, h.Kind, map[store.Handle]int64{h: 50})
		mustPut(t, st, h, c)
		checkGet(t, st, h, 0, -1, c)
		checkSize(t, st, h, 300)
	}
}

// testPutIfCreate: PutIf with no version creates an object, once.
func testPutIfCreate(t testing.TB, st store.Storage) {
	needConditional(t, st)
	g := newGen(t, "PutIfCreate")
	ctx := t.Context()
	for _, h := range []store.Handle{store.ConfigHandle, g.handle(store.KindLock)} {
		data := g.bytes(200)
		if err := st.PutIf(ctx, h, data, ""); err != nil {
			t.Fatalf("PutIf %s, version \"\", on a missing object: %v", h, err)
		}
		checkGet(t, st, h, 0, -1, data)
		got, v := getVersion(t, st, h)
		checkBytes(t, "GetVersion "+h.String(), got, data)

		err := st.PutIf(ctx, h, g.bytes(10), "")
		checkPrecondition(t, "PutIf "+h.String()+", version \"\", on an existing object", err)
		checkGet(t, st, h, 0, -1, data)
		if _, v2 := getVersion(t, st, h); v2 != v {
			t.Errorf("a failed PutIf changed %s's version from %q to %q", h, v, v2)
		}
	}
}

// testPutIfVersion: PutIf replaces only the version it was given; any
// write in between, by PutIf, Put or Delete, makes that version stale.
func testPutIfVersion(t testing.TB, st store.Storage) {
	needConditional(t, st)
	g := newGen(t, "PutIfVersion")
	ctx := t.Context()
	h := store.ConfigHandle
	a, b, c, d := g.bytes(100), g.bytes(120), g.bytes(80), g.bytes(90)

	mustPut(t, st, h, a)
	got, v1 := getVersion(t, st, h)
	checkBytes(t, "GetVersion", got, a)
	if _, again := getVersion(t, st, h); again != v1 {
		t.Errorf("GetVersion of an unchanged object: %q, then %q", v1, again)
	}

	checkPrecondition(t, "PutIf, version \"\", on an existing object", st.PutIf(ctx, h, c, ""))
	checkGet(t, st, h, 0, -1, a)

	if err := st.PutIf(ctx, h, b, v1); err != nil {
		t.Fatalf("PutIf with the current version: %v", err)
	}
	got, v2 := getVersion(t, st, h)
	checkBytes(t, "GetVersion after PutIf", got, b)
	if v2 == v1 {
		t.Errorf("PutIf of new bytes left the version at %q", v1)
	}

	checkPrecondition(t, "PutIf with a stale version", st.PutIf(ctx, h, c, v1))
	checkGet(t, st, h, 0, -1, b)

	mustPut(t, st, h, d) // an unconditional write also moves the version on
	checkPrecondition(t, "PutIf with the version from before a Put", st.PutIf(ctx, h, c, v2))
	checkGet(t, st, h, 0, -1, d)

	_, v3 := getVersion(t, st, h)
	if err := st.Delete(ctx, h); err != nil {
		t.Fatal(err)
	}
	checkPrecondition(t, "PutIf with the version of a deleted object", st.PutIf(ctx, h, c, v3))
	checkAbsent(t, st, h, "after a failed PutIf on a deleted object")
	if err := st.PutIf(ctx, h, c, ""); err != nil {
		t.Fatalf("PutIf, version \"\", after Delete: %v", err)
	}
	checkGet(t, st, h, 0, -1, c)
}

// testPutIfRace: writers that all read the same version race their
// PutIfs; exactly one wins, the others fail with ErrPreconditionFailed,
// and the object holds the winner's bytes. Also for creation.
func testPutIfRace(t testing.TB, st store.Storage) {
	needConditional(t, st)
	g := newGen(t, "PutIfRace")
	const writers, rounds = 8, 4
	for round := range rounds + 1 {
		h := store.ConfigHandle
		var v store.Version
		if round < rounds {
			mustPut(t, st, h, g.bytes(64))
			_, v = getVersion(t, st, h)
		} else {
			h = g.handle(store.KindLock) // the last round creates
		}
		data := make([][]byte, writers)
		for i := range data {
			data[i] = g.bytes(64 + i)
		}
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				<-start
				errs[i] = st.PutIf(t.Context(), h, data[i], v)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("round %d (version %q): writers %d and %d both won", round, v, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrPreconditionFailed):
				t.Errorf("round %d: a losing PutIf: %v; want store.ErrPreconditionFailed", round, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d (version %q): no writer won", round, v)
		}
		checkGet(t, st, h, 0, -1, data[winner])
	}
}

// testPutIfCounter: concurrent read-modify-write loops over GetVersion
// and PutIf lose no update. A GetVersion whose bytes and version come
// from different writes fails here.
func testPutIfCounter(t testing.TB, st store.Storage) {
	needConditional(t, st)
	workers, each := 8, 10
	if testing.Short() {
		workers, each = 4, 5
	}
	h := store.ConfigHandle
	mustPut(t, st, h, []byte("0"))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				for attempt := 0; ; attempt++ {
					if attempt == 1000 {
						t.Errorf("worker %d: 1000 PutIfs lost in a row", w)
						return
					}
					data, v, err := st.GetVersion(t.Context(), h)
					if err != nil {
						t.Errorf("worker %d: GetVersion: %v", w, err)
						return
					}
					n, err := strconv.Atoi(string(data))
					if err != nil {
						t.Errorf("worker %d: the counter holds %q", w, data)
						return
					}
					err = st.PutIf(t.Context(), h, []byte(strconv.Itoa(n+1)), v)
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrPreconditionFailed) {
						t.Errorf("worker %d: PutIf: %v", w, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	data := mustGet(t, st, h, 0, -1)
	if n, err := strconv.Atoi(string(data)); err != nil || n != workers*each {
		t.Errorf("%d workers each added 1 %d times, and the counter says %q: PutIf let updates be lost", workers, each, data)
	}
}

// testConcurrentWriters: writers of different objects at once, with
// readers of another, all see their own bytes.
func testConcurrentWriters(t testing.TB, st store.Storage) {
	g := newGen(t, "ConcurrentWriters")
	const writers, each = 16, 4
	type obj struct {
		h    store.Handle
		data []byte
	}
	objs := make([][]obj, writers)
	want := map[store.Kind]map[store.Handle]int64{}
	for _, k := range store.Kinds[1:] {
		want[k] = map[store.Handle]int64{}
	}
	for w := range objs {
		for i := range each {
			k := store.Kinds[1+(w*each+i)%(len(store.Kinds)-1)]
			h, data := g.object(k, g.IntN(256<<10))
			o := obj{h, data}
			objs[w] = append(objs[w], o)
			want[k][o.h] = int64(len(o.data))
		}
	}
	shared, sharedData := g.object(store.KindIndex, 10<<10)
	mustPut(t, st, shared, sharedData)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for _, o := range objs[w] {
				if err := st.Put(t.Context(), o.h, o.data); err != nil {
					t.Errorf("writer %d: Put %s: %v", w, o.h, err)
					return
				}
				b, err := st.Get(t.Context(), shared, 0, -1)
				if err != nil {
					t.Errorf("writer %d: Get %s: %v", w, shared, err)
					return
				}
				checkBytes(t, "concurrent Get "+shared.String(), b, sharedData)
			}
			for _, o := range objs[w] {
				b, err := st.Get(t.Context(), o.h, 0, -1)
				if err != nil {
					t.Errorf("writer %d: Get %s: %v", w, o.h, err)
					return
				}
				checkBytes(t, "Get "+o.h.String(), b, o.data)
			}
		})
	}
	wg.Wait()
	want[store.KindIndex][shared] = int64(len(sharedData))
	for _, k := range slices.Sorted(maps.Keys(want)) {
		checkList(t, st, k, want[k])
	}
}

// testLarge: an object bigger than a multipart part round-trips byte for
// byte, including ranges that straddle the likely part boundaries, both
// through Put and through a temp object written in pieces.
func testLarge(t testing.TB, st store.Storage) {
	g := newGen(t, "Large")
	size := largeSize()
	h, data := g.object(store.KindDataPack, size)
	mustPut(t, st, h, data)
	checkSize(t, st, h, int64(size))
	checkGet(t, st, h, 0, -1, data)
	checkRanges := func(h store.Handle) {
		t.Helper()
		seen := map[int]bool{}
		for _, part := range []int{5 << 20, 8 << 20, 16 << 20} {
			for b := part; b < size; b += part {
				if !seen[b] {
					seen[b] = true
					checkGet(t, st, h, int64(b-7), 16, data[b-7:b+9])
				}
			}
		}
		checkGet(t, st, h, int64(size-10), -1, data[size-10:])
		checkGet(t, st, h, 3<<20, 10<<20, data[3<<20:13<<20])
	}
	checkRanges(h)

	if !st.Features().Temp {
		return
	}
	tmp, err := st.NewTemp(t.Context())
	if err != nil {
		t.Fatalf("NewTemp: %v", err)
	}
	defer tmp.Abort()
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1<<20+g.IntN(1<<20))
		if _, err := tmp.Write(rest[:n]); err != nil {
			t.Fatalf("temp Write: %v", err)
		}
		rest = rest[n:]
	}
	h2 := g.handle(store.KindDataPack)
	if err := tmp.Commit(t.Context(), h2); err != nil {
		t.Fatalf("temp Commit %s: %v", h2, err)
	}
	checkSize(t, st, h2, int64(size))
	checkGet(t, st, h2, 0, -1, data)
	checkRanges(h2)
}

// testTemp: a temp object is invisible until Commit, then it is as if
// Put; an aborted one leaves nothing.
func testTemp(t testing.TB, st store.Storage) {
	needTemp(t, st)
	g := newGen(t, "Temp")
	ctx := t.Context()

	tmp, err := st.NewTemp(ctx)
	if err != nil {
		t.Fatalf("NewTemp: %v", err)
	}
	var want []byte
	for _, n := range []int{0, 1, 1000, 70_000, 3} {
		p := g.bytes(n)
		k, err := tmp.Write(p)
		if err != nil || k != n {
			t.Fatalf("temp Write of %d bytes: %d, %v", n, k, err)
		}
		want = append(want, p...)
	}
	checkEmpty(t, st, "a temp object before Commit")
	h := g.handle(store.KindDataPack)
	if err := tmp.Commit(ctx, h); err != nil {
		t.Fatalf("temp Commit %s: %v", h, err)
	}
	checkGet(t, st, h, 0, -1, want)
	checkGet(t, st, h, 1000, 10, want[1000:1010])
	checkSize(t, st, h, int64(len(want)))
	checkList(t, st, store.KindDataPack, map[store.Handle]int64{h: int64(len(want))})

	// Aborted: nothing.
	tmp, err = st.NewTemp(ctx)
	if err != nil {
		t.Fatalf("NewTemp: %v", err)
	}
	if _, err := tmp.Write(g.bytes(5000)); err != nil {
		t.Fatalf("temp Write: %v", err)
	}
	tmp.Abort()
	for _, k := range store.Kinds {
		wantK := map[store.Handle]int64{}
		if k == h.Kind {
			wantK[h] = int64(len(want))
		}
		checkList(t, st, k, wantK)
	}

	// Two temps at once, committed in the other order, as a tree pack
	// and an index.
	t1, err := st.NewTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := st.NewTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := g.bytes(3000), g.bytes(4000)
	t1.Write(d1[:1000])
	t2.Write(d2[:2000])
	t1.Write(d1[1000:])
	t2.Write(d2[2000:])
	h1, h2 := g.handle(store.KindTreePack), g.handle(store.KindIndex)
	if err := t2.Commit(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if err := t1.Commit(ctx, h1); err != nil {
		t.Fatal(err)
	}
	checkGet(t, st, h1, 0, -1, d1)
	checkGet(t, st, h2, 0, -1, d2)

	// A commit to a handle the layout cannot place fails and stores
	// nothing.
	tmp, err = st.NewTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tmp.Write(g.bytes(100))
	bad := store.Handle{Kind: store.KindDataPack, Name: "not-hex"}
	if err := tmp.Commit(ctx, bad); err == nil {
		t.Errorf("temp Commit to invalid handle %q: no error", bad.Name)
	}
	tmp.Abort()
	checkList(t, st, store.KindDataPack, map[store.Handle]int64{h: int64(len(want))})
}

// testCancel: with a cancelled context every operation fails with an
// error wrapping context.Canceled (not ErrNotFound, even for a missing
// object) and changes nothing.
func testCancel(t testing.TB, st store.Storage) {
	g := newGen(t, "Cancel")
	live := t.Context()
	ctx, cancel := context.WithCancel(live)
	cancel()

	have := g.handle(store.KindIndex)
	haveData := g.bytes(100)
	mustPut(t, st, have, haveData)
	missing := g.handle(store.KindIndex)

	checkCanceled(t, "Put", st.Put(ctx, missing, g.bytes(10)))
	checkAbsent(t, st, missing, "after a cancelled Put")
	for _, h := range []store.Handle{have, missing} {
		_, err := st.Get(ctx, h, 0, -1)
		checkCanceled(t, "Get", err)
		_, err = st.Get(ctx, h, 10, 20)
		checkCanceled(t, "ranged Get", err)
		_, err = st.Stat(ctx, h)
		checkCanceled(t, "Stat", err)
	}
	for _, k := range store.Kinds {
		// have's kind lists something; the others are empty.
		err := st.List(ctx, k, func(store.ObjectInfo) error { return nil })
		checkCanceled(t, "List "+k.String(), err)
	}
	checkCanceled(t, "Delete", st.Delete(ctx, have))
	checkCanceled(t, "Delete of a missing object", st.Delete(ctx, missing))
	checkGet(t, st, have, 0, -1, haveData)

	if st.Features().Conditional {
		_, _, err := st.GetVersion(ctx, have)
		checkCanceled(t, "GetVersion", err)
		_, _, err = st.GetVersion(ctx, missing)
		checkCanceled(t, "GetVersion of a missing object", err)
		checkCanceled(t, "PutIf", st.PutIf(ctx, missing, g.bytes(10), ""))
		checkAbsent(t, st, missing, "after a cancelled PutIf")
		_, v := getVersion(t, st, have)
		checkCanceled(t, "PutIf with the current version", st.PutIf(ctx, have, g.bytes(10), v))
		checkGet(t, st, have, 0, -1, haveData)
	}

	if st.Features().Temp {
		tmp, err := st.NewTemp(live)
		if err != nil {
			t.Fatalf("NewTemp: %v", err)
		}
		tmp.Write(g.bytes(1000))
		checkCanceled(t, "temp Commit", tmp.Commit(ctx, missing))
		tmp.Abort()
		checkAbsent(t, st, missing, "after a cancelled temp Commit")
		if tmp, err := st.NewTemp(ctx); err == nil {
			tmp.Abort()
		} else {
			checkCanceled(t, "NewTemp", err)
		}
	}
}

// testInvalidHandles: handles the layout cannot place are refused by
// every method, and nothing is stored.
func testInvalidHandles(t testing.TB, st store.Storage) {
	g := newGen(t, "InvalidHandles")
	ctx := t.Context()
	id := g.id()
	bad := []store.Handle{
		{Kind: store.KindDataPack, Name: "abc"},
		{Kind: store.KindDataPack, Name: id[:63]},
		{Kind: store.KindTreePack, Name: id + "0"},
		{Kind: store.KindIndex, Name: "zz" + id[2:]},
		{Kind: store.KindSnapshot, Name: "AB" + id[2:]},
		{Kind: store.KindSnapshot, Name: ""},
		{Kind: store.KindIndex, Name: "../" + id[3:]},
		{Kind: store.KindConfig, Name: "x"},
		{Kind: store.KindLock, Name: ""},
		{Kind: store.KindLock, Name: "a/b"},
		{Kind: store.KindLock, Name: ".hidden"},
		{Kind: 0, Name: id},
		{Kind: 99, Name: id},
	}
	for _, h := range bad {
		what := fmt.Sprintf("{%s %q}", h.Kind, h.Name)
		if err := st.Put(ctx, h, g.bytes(10)); err == nil {
			t.Errorf("Put %s: no error", what)
		}
		if _, err := st.Get(ctx, h, 0, -1); err == nil {
			t.Errorf("Get %s: no error", what)
		}
		if _, err := st.Stat(ctx, h); err == nil {
			t.Errorf("Stat %s: no error", what)
		}
		if err := st.Delete(ctx, h); err == nil {
			t.Errorf("Delete %s: no error", what)
		}
		if st.Features().Conditional {
			if err := st.PutIf(ctx, h, g.bytes(10), ""); err == nil {
				t.Errorf("PutIf %s: no error", what)
			}
			if _, _, err := st.GetVersion(ctx, h); err == nil {
				t.Errorf("GetVersion %s: no error", what)
			}
		}
	}
	checkEmpty(t, st, "after Puts of invalid handles")
}

// testFeatures: what Features says is what the methods do. A missing
// capability answers ErrNotSupported; a decorator reports the
// capabilities of what it wraps.
func testFeatures(t testing.TB, st store.Storage) {
	g := newGen(t, "Features")
	ctx := t.Context()
	f := st.Features()
	if f.Uploads < 0 {
		t.Errorf("Features().Uploads = %d", f.Uploads)
	}
	if w, ok := st.(store.Wrapper); ok {
		inner := w.Unwrap()
		if inner == nil {
			t.Fatalf("Unwrap of a %T: nil", st)
		}
		if fi := inner.Features(); fi.Temp != f.Temp || fi.Conditional != f.Conditional {
			t.Errorf("%T says %+v, but what it wraps (%T) says %+v", st, f, inner, fi)
		}
	}

	tmp, err := st.NewTemp(ctx)
	switch {
	case f.Temp && err != nil:
		t.Errorf("Features().Temp, but NewTemp: %v", err)
	case f.Temp:
		tmp.Abort()
	case err == nil:
		tmp.Abort()
		t.Errorf("Features().Temp is false, but NewTemp works")
	case !errors.Is(err, store.ErrNotSupported):
		t.Errorf("Features().Temp is false; NewTemp: %v, want store.ErrNotSupported", err)
	}

	h := g.handle(store.KindLock)
	_, _, gerr := st.GetVersion(ctx, h)
	perr := st.PutIf(ctx, h, g.bytes(10), "")
	if f.Conditional {
		checkNotFound(t, "GetVersion", gerr)
		if perr != nil {
			t.Errorf("Features().Conditional, but PutIf creating %s: %v", h, perr)
		}
		return
	}
	if !errors.Is(gerr, store.ErrNotSupported) {
		t.Errorf("Features().Conditional is false; GetVersion: %v, want store.ErrNotSupported", gerr)
	}
	if !errors.Is(perr, store.ErrNotSupported) {
		t.Errorf("Features().Conditional is false; PutIf: %v, want store.ErrNotSupported", perr)
	}
	checkAbsent(t, st, h, "after an unsupported PutIf")
}
