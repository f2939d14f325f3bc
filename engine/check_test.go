package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// newCheckStore makes a folder store holding n backups of n different
// sources, each of a few directories, so it has n index files and every
// snapshot has several tree blobs to walk.
func newCheckStore(t testing.TB, n int) (*engine.Repo, string) {
	t.Helper()
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	for i := range n {
		src := filepath.Join(t.TempDir(), fmt.Sprintf("src%d", i))
		for d := range 3 {
			for f := range 2 {
				writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f)), textBytes(uint64(100*i+10*d+f), 3000))
			}
		}
		backupDir(t, r, src, backup.Options{})
	}
	return r, storeDir
}

// TestCheckReportsEachBadIndexFile: every index file that cannot be read
// is a problem of its own, named; the good ones are not named.
func TestCheckReportsEachBadIndexFile(t *testing.T) {
	_, storeDir := newCheckStore(t, 4)
	names := indexFiles(t, storeDir)
	if len(names) != 4 {
		t.Fatalf("test setup: %d index files, want 4", len(names))
	}
	bad := map[string]bool{names[1]: true, names[3]: true}
	// One with a flipped byte, one cut short.
	p := filepath.Join(storeDir, "index", names[1])
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(storeDir, "index", names[3]), 10); err != nil {
		t.Fatal(err)
	}

	r := reopen(t, storeDir)
	res, err := check.Run(context.Background(), r, check.Options{})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	named := map[string]int{} // index file -> problems naming it
	for _, p := range res.Problems {
		t.Logf("problem: %+v", p)
		if p.Snapshot != "" || p.Path != "" || p.Pack != "" {
			continue // a file whose blobs the bad index files listed
		}
		hit := false
		for _, name := range names {
			if strings.Contains(p.Message, name[:8]) {
				named[name]++
				hit = true
			}
		}
		if !hit {
			t.Errorf("index problem names no index file: %+v", p)
		}
	}
	for _, name := range names {
		switch {
		case bad[name] && named[name] != 1:
			t.Errorf("bad index file %s is named by %d problems, want 1", name[:8], named[name])
		case !bad[name] && named[name] != 0:
			t.Errorf("good index file %s is named by %d problems", name[:8], named[name])
		}
	}
}

// TestCheckLeavesSharedIndexAlone runs a check while other users of the
// same *Repo (a mount, say) load the index and read blobs: check must
// read the index for itself, not replace the repo's (run with -race).
func TestCheckLeavesSharedIndexAlone(t *testing.T) {
	_, storeDir := newCheckStore(t, 3)
	// A damaged index file sends check down its tolerant path.
	p := filepath.Join(storeDir, "index", indexFiles(t, storeDir)[0])
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	r := reopen(t, storeDir)
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loadErr := r.LoadIndex(ctx)
	if loadErr == nil {
		t.Fatal("test setup: LoadIndex accepted a damaged index file")
	}
	idx := r.Index

	stop := make(chan struct{})
	var forgot atomic.Bool // a LoadIndex succeeded while check ran
	var started, wg sync.WaitGroup
	for range 4 {
		started.Add(1)
		wg.Go(func() {
			first := true
			for {
				if err := r.LoadIndex(ctx); err == nil {
					forgot.Store(true)
				}
				for _, sn := range sns {
					r.Index.Has(sn.Root)
					r.Index.Lookup(sn.Root)
					r.LoadBlob(ctx, sn.Root)
				}
				if first {
					started.Done()
					first = false
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	started.Wait()
	res, err := check.Run(ctx, r, check.Options{})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if res.OK() {
		t.Error("check found nothing wrong with a damaged index file")
	}
	if forgot.Load() {
		t.Error("LoadIndex succeeded while check ran; the damaged index file was forgotten")
	}
	if r.Index != idx {
		t.Error("check replaced the repo's index")
	}
	if err := r.LoadIndex(ctx); err == nil {
		t.Errorf("after check, LoadIndex succeeds; before, it said %v", loadErr)
	}
}

// cancelAt cancels a context just before the at-th Get (counting from 1)
// and makes it; it notes whether that Get read part of an object, as the
// tree walk does (packs, index files and snapshots are read whole).
type cancelAt struct {
	store.Storage
	at     int64
	cancel context.CancelFunc
	gets   atomic.Int64
	ranged bool
}

func (s *cancelAt) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	if s.gets.Add(1) == s.at {
		s.ranged = n >= 0
		s.cancel()
	}
	return s.Storage.Get(ctx, h, off, n)
}

// TestCheckCancelled cancels a check at each of its reads in turn: it
// must return the context's error, never report the cancellation as
// damage.
func TestCheckCancelled(t *testing.T) {
	_, storeDir := newCheckStore(t, 3)
	// open returns a repo over a fresh cancelAt and the context it cancels.
	open := func(at int64) (*engine.Repo, *cancelAt, context.Context) {
		folder, err := store.NewFolder(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		st := &cancelAt{Storage: folder, cancel: cancel}
		r, err := engine.Open(ctx, st, []byte("test passphrase"))
		if err != nil {
			t.Fatal(err)
		}
		st.gets.Store(0)
		st.at = at
		return r, st, ctx
	}
	for _, whole := range []bool{true, false} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			var opt check.Options
			r, st, ctx := open(0)
			if !whole {
				sns, err := r.Snapshots(ctx)
				if err != nil {
					t.Fatal(err)
				}
				opt.Snapshots = sns
				st.gets.Store(0)
			}
			res, err := check.Run(ctx, r, opt)
			if err != nil || !res.OK() {
				t.Fatalf("check of an undamaged store: %v %+v", err, res)
			}
			total := st.gets.Load()
			inWalk := 0
			for at := int64(1); at <= total; at++ {
				r, st, ctx := open(at)
				res, err := check.Run(ctx, r, opt)
				if st.ranged {
					inWalk++
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("cancelled at read %d of %d (ranged %v): check returned %v, want context.Canceled", at, total, st.ranged, err)
				}
				if res == nil {
					continue
				}
				for _, p := range res.Problems {
					if strings.Contains(p.String(), "cancel") {
						t.Errorf("cancelled at read %d of %d (ranged %v): problem %q", at, total, st.ranged, p)
					}
				}
			}
			if inWalk == 0 {
				t.Fatalf("none of the %d reads cancelled was the tree walk's", total)
			}
			t.Logf("%d reads, %d of them in the tree walk", total, inWalk)
		})
	}
}
