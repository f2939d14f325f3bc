package s3io

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
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
}

// TestMemoryNeverOverBudget: many goroutines taking and giving back
// buffers of random sizes never hold more than the budget, buffers kept
// for reuse included, and every byte comes back.
func TestMemoryNeverOverBudget(t *testing.T) {
	m := newMemory(t, 16<<20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst int64
	for g := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				n := r.IntN(3 << 20)
				if r.IntN(10) == 0 {
					n = r.IntN(100)
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
	if st.InUse != 0 || st.High > st.Budget || worst > st.Budget || st.Gets != 32*200 {
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
	add("big/a.bin", 21<<20+12345)
	add("big/b.bin", 17<<20)
	add("big/c.bin", 11<<20+1)
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
// real driver, with 2, 16 and 64 workers: the bytes come back exact, the part and
// body buffers never exceed the budget (nor are taken around it: every
// restored byte went through the budget), all come back, and nothing
// deadlocks, also when part_size is larger than the budget (it is
// clamped to 5 MiB).
func TestDestinationUnderBudget(t *testing.T) {
	repo, root, files := restoreFixture(t)
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	for _, tc := range []struct {
		partSize int64
		workers  int
	}{{0, 16}, {16 << 20, 16}, {0, 64}, {0, 2}} {
		partSize := tc.partSize
		t.Run(fmt.Sprintf("part_size=%d,workers=%d", partSize, tc.workers), func(t *testing.T) {
			be := s3mem.New()
			if err := be.CreateBucket("b"); err != nil {
				t.Fatal(err)
			}
			mem := newMemory(t, MinMemory)
			c := testClient(t, gofakes3.New(be).Server(), func(o *Options) { o.Memory = mem; o.PartSize = partSize })
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := restore.Restore(ctx, repo, root, NewDestination(c), restore.Options{Concurrency: tc.workers, Overwrite: restore.OverwriteAlways})
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("restore under an 8 MiB budget did not finish: deadlock? %+v", mem.Stats())
			}
			for name, want := range files {
				got := getObject(t, c, "p/"+name)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: %d bytes back, want %d (content differs)", name, len(got), len(want))
				}
			}
			st := mem.Stats()
			if st.High > st.Budget || st.InUse != 0 {
				t.Fatalf("budget exceeded or not given back: %+v", st)
			}
			if st.Total < total || st.High < 5<<20 {
				t.Fatalf("the budget was bypassed: %d bytes taken from it for %d restored, high %d: %+v", st.Total, total, st.High, st)
			}
		})
	}
}

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
