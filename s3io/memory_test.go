package s3io

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"
)

func newMemory(t testing.TB, budget int64) *Memory {
	t.Helper()
	m, err := NewMemory(budget)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMemoryGetWaitsAndServesInOrder(t *testing.T) {
	if _, err := NewMemory(MinMemory - 1); err == nil {
		t.Fatal("a budget under MinMemory was accepted")
	}
	m := newMemory(t, 8<<20)
	ctx := t.Context()
	if _, err := m.Get(ctx, 9<<20); !errors.As(err, new(*ErrOverBudget)) {
		t.Fatalf("Get over the budget: %v", err)
	}
	a, _ := m.Get(ctx, 5<<20)
	if len(a) != 5<<20 {
		t.Fatalf("len %d", len(a))
	}
	// 4 MiB does not fit beside 5: it waits; a later 1 MiB, which would
	// fit, waits behind it (first come, first served).
	got := make(chan string, 2)
	go func() { b, _ := m.Get(ctx, 4<<20); got <- "4MiB"; m.Put(b) }()
	time.Sleep(50 * time.Millisecond)
	go func() { b, _ := m.Get(ctx, 1<<20); got <- "1MiB"; m.Put(b) }()
	select {
	case g := <-got:
		t.Fatalf("%s granted while 5 of 8 MiB were held", g)
	case <-time.After(100 * time.Millisecond):
	}
	m.Put(a)
	<-got
	<-got
	// A cancelled wait leaves the queue and lets the ones behind go.
	held, _ := m.Get(ctx, 6<<20)
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := m.Get(cctx, 4<<20); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	small := make(chan []byte, 1)
	go func() { b, _ := m.Get(ctx, 1<<20); small <- b }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get: %v", err)
	}
	m.Put(<-small)
	m.Put(held)
	st := m.Stats()
	if st.InUse != 0 || st.High > st.Budget || st.Idle > st.Budget {
		t.Fatalf("stats %+v", st)
	}
	// An ended context is refused even with the whole budget free: a
	// closed reader's parts still waiting their turn take nothing (CI saw
	// InUse climb back from 0 after a reader was closed).
	if b, err := m.Get(cctx, 1<<20); !errors.Is(err, context.Canceled) || b != nil {
		t.Fatalf("Get with an ended context: %d bytes, %v", len(b), err)
	}
	if err := m.Acquire(cctx, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with an ended context: %v", err)
	}
	if after := m.Stats(); after.InUse != 0 || after.Gets != st.Gets {
		t.Fatalf("after ended Get and Acquire: stats %+v", after)
	}
}

// TestMemoryNeverOverBudget: many goroutines taking and giving back
// buffers of random sizes, and bare reservations (Acquire, Release),
// never hold more than the budget, buffers kept for reuse included, and
// every byte comes back.
func TestMemoryNeverOverBudget(t *testing.T) {
	m := newMemory(t, 8<<20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst int64
	for g := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 100 {
				n := r.IntN(1 << 20)
				if r.IntN(10) == 0 {
					n = r.IntN(100)
				}
				if i%3 == 0 {
					if err := m.Acquire(t.Context(), int64(n)); err != nil {
						t.Error(err)
						return
					}
					st := m.Stats()
					mu.Lock()
					worst = max(worst, st.InUse+st.Idle)
					mu.Unlock()
					m.Release(int64(n))
					continue
				}
				b, err := m.Get(t.Context(), n)
				if err != nil {
					t.Error(err)
					return
				}
				if len(b) != n {
					t.Errorf("len %d, want %d", len(b), n)
				}
				st := m.Stats()
				mu.Lock()
				worst = max(worst, st.InUse+st.Idle)
				mu.Unlock()
				m.Put(b)
			}
		})
	}
	wg.Wait()
	st := m.Stats()
	if st.InUse != 0 || st.High > st.Budget || worst > st.Budget || st.Gets < 32*60 {
		t.Fatalf("stats %+v, worst held+idle %d", st, worst)
	}
}

// restoreFixture backs up a folder of large files (bigger than an 8 MiB
// budget, some not a multiple of the part) and many small ones into a
// store in memory, and returns the repository, the snapshot's root and
// the files.
func restoreFixture(t *testing.T) (*engine.Repo, *tree.Node, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{}
	r := rand.New(rand.NewPCG(7, 7))
	add := func(name string, n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		files[name] = b
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	add("big/a.bin", 13<<20+12345)
	add("big/b.bin", 10<<20)
	add("big/c.bin", 8<<20+1)
	add("mid/d.bin", 4<<20+7)
	add("empty", 0)
	for i := range 400 {
		add(fmt.Sprintf("small/%02d/f%03d", i%20, i), r.IntN(20<<10))
	}
	repo, err := engine.Create(t.Context(), store.NewMemory(), []byte("pw"),
		engine.CreateOptions{KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(t.Context(), repo, src, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return repo, res.Snapshot.RootNode(), files
}

// TestDestinationUnderBudget restores objects bigger than the budget and
// many small ones into a bucket (gofakes3) through restore.Restore, the
// real driver, with 1, 2, 16 and 64 workers under the smallest budget:
// the bytes come back exact, the object buffers the destination holds
// are never more than the restore has reserved from the budget at that
// moment (so a writer that allocated around the budget, or a job that
// did not reserve its files, fails), all is given back, and nothing
// deadlocks (a restore that has not finished in a minute fails the
// test), also when part_size is larger than the budget (clamped).
func TestDestinationUnderBudget(t *testing.T) {
	repo, root, files := restoreFixture(t)
	for _, tc := range []struct {
		partSize int64
		workers  int
	}{{0, 1}, {0, 2}, {0, 16}, {0, 64}, {16 << 20, 16}} {
		partSize := tc.partSize
		t.Run(fmt.Sprintf("part_size=%d,workers=%d", partSize, tc.workers), func(t *testing.T) {
			be := s3mem.New()
			if err := be.CreateBucket("b"); err != nil {
				t.Fatal(err)
			}
			mem := newMemory(t, MinMemory)
			c := testClient(t, gofakes3.New(be).Server(), func(o *Options) { o.Memory = mem; o.PartSize = partSize })
			dst := NewDestination(c)
			var over atomic.Int64
			dst.onAlloc = func(held int64) {
				if st := mem.Stats(); held > st.InUse {
					over.Store(held - st.InUse)
				}
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := restore.Restore(ctx, repo, root, dst, restore.Options{Concurrency: tc.workers, Overwrite: restore.OverwriteAlways, Memory: mem})
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Minute):
				t.Fatalf("restore under an 8 MiB budget did not finish in a minute: deadlock? %+v", mem.Stats())
			}
			for name, want := range files {
				got := getObject(t, c, "p/"+name)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: %d bytes back, want %d (content differs)", name, len(got), len(want))
				}
			}
			st := mem.Stats()
			now, high := dst.Buffers()
			if st.High > st.Budget || st.InUse != 0 || now != 0 {
				t.Fatalf("budget exceeded or not given back: %+v, %d bytes of buffers left", st, now)
			}
			if n := over.Load(); n > 0 {
				t.Fatalf("the destination held %d bytes more than the restore had reserved", n)
			}
			if high < 5<<20 {
				t.Fatalf("the destination never held a part: high %d", high)
			}
		})
	}
}

// TestSmallObjectPutsInParallel: a restore of many small objects into a
// bucket has many PUTs in flight at once, even with few workers (the
// shared reads feed up to 128 files each, closed in parallel), and the
// objects come back exact.
func TestSmallObjectPutsInParallel(t *testing.T) {
	repo, root, files := restoreFixture(t)
	be := s3mem.New()
	if err := be.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	var inFlight, most atomic.Int64
	slow := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodPut || r.URL.Query().Has("partNumber") {
				return next.RoundTrip(r)
			}
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(20 * time.Millisecond) // a server's latency
			defer inFlight.Add(-1)
			return next.RoundTrip(r)
		})
	}
	mem := newMemory(t, 64<<20)
	c := testClient(t, gofakes3.New(be).Server(), func(o *Options) { o.Memory = mem; o.WrapTransport = slow })
	if _, err := restore.Restore(t.Context(), repo, root, NewDestination(c), restore.Options{Concurrency: 2, Overwrite: restore.OverwriteAlways, Memory: mem}); err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m < 16 {
		t.Fatalf("at most %d PUTs of small objects in flight with 2 workers; want at least 16", m)
	}
	for name, want := range files {
		if got := getObject(t, c, "p/"+name); !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes back, want %d", name, len(got), len(want))
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func getObject(t *testing.T, c *Client, key string) []byte {
	t.Helper()
	out, err := c.getRange(t.Context(), key, "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSourcePartsUnderBudget: large objects read by several readers at
// once come back exact, in parts that never exceed the budget, and a
// reader closed early gives its parts back.
func TestSourcePartsUnderBudget(t *testing.T) {
	be := s3mem.New()
	if err := be.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	mem := newMemory(t, MinMemory)
	c := testClient(t, gofakes3.New(be).Server(), func(o *Options) { o.Memory = mem })
	r := rand.New(rand.NewPCG(3, 3))
	objs := map[string][]byte{}
	for i, n := range []int{23<<20 + 5, 31 << 20, 12<<20 - 1} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		name := fmt.Sprintf("o%d", i)
		objs[name] = b
		if err := c.putMultipart(t.Context(), &s3.CreateMultipartUploadInput{Bucket: &c.opt.Bucket, Key: aws.String("p/" + name)}, b, 5<<20); err != nil {
			t.Fatal(err)
		}
	}
	src := NewSource(c)
	var wg sync.WaitGroup
	for name, want := range objs {
		wg.Go(func() {
			it := &backup.Item{Path: name, Node: tree.Node{Type: tree.TypeFile, Size: uint64(len(want))}}
			rd, err := src.Open(t.Context(), it)
			if err != nil {
				t.Error(err)
				return
			}
			defer rd.Close()
			if _, ok := rd.(*partReader); !ok {
				t.Errorf("%s: %T, want a part reader", name, rd)
			}
			got, err := io.ReadAll(rd)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes, %v", name, len(got), err)
			}
		})
	}
	wg.Wait()
	// Closed after one read: its parts in flight come back.
	it := &backup.Item{Path: "o1", Node: tree.Node{Type: tree.TypeFile, Size: uint64(len(objs["o1"]))}}
	rd, err := src.Open(t.Context(), it)
	if err != nil {
		t.Fatal(err)
	}
	rd.Read(make([]byte, 10))
	rd.Close()
	deadline := time.Now().Add(10 * time.Second)
	for mem.Stats().InUse != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := mem.Stats()
	if st.High > st.Budget || st.InUse != 0 || st.Total < int64(len(objs["o0"])+len(objs["o1"])+len(objs["o2"])) {
		t.Fatalf("stats %+v", st)
	}
}
