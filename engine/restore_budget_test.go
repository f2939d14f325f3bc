package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/restore"
	"golang.org/x/sync/semaphore"
)

// countingBudget is a restore.Budget that records its high-water mark.
type countingBudget struct {
	size int64
	sem  *semaphore.Weighted
	mu   sync.Mutex
	used int64
	high int64
	jobs int
}

func newCountingBudget(size int64) *countingBudget {
	return &countingBudget{size: size, sem: semaphore.NewWeighted(size)}
}

func (b *countingBudget) Size() int64 { return b.size }

func (b *countingBudget) Acquire(ctx context.Context, n int64) error {
	if err := b.sem.Acquire(ctx, n); err != nil {
		return err
	}
	b.mu.Lock()
	b.used += n
	b.high = max(b.high, b.used)
	b.jobs++
	b.mu.Unlock()
	return nil
}

func (b *countingBudget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.sem.Release(n)
}

// TestRestoreUnderBudgetToFolder: a restore under a byte budget (files
// read in several ranges become one job each, written in order; small
// files share reads) brings a tree of large and small files back
// byte-exact into a folder (a SerialCreator) with 1, 2, 16 and 64
// workers, under a budget that holds one job at a time and one that
// holds several; every job reserved, all given back, and a restore that
// has not finished in a minute fails instead of hanging.
func TestRestoreUnderBudgetToFolder(t *testing.T) {
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := t.TempDir()
	smallFiles(t, src, 300)
	for i, n := range []int{3 << 20, 1<<20 + 7, 700 << 10} {
		writeFile(t, filepath.Join(src, "big", fmt.Sprintf("b%d", i)), randBytes(n))
	}
	sn := backupDir(t, r, src, backup.Options{})
	for _, budget := range []int64{1 << 20, 16 << 20} {
		for _, workers := range []int{1, 2, 16, 64} {
			t.Run(fmt.Sprintf("budget=%d,workers=%d", budget, workers), func(t *testing.T) {
				b := newCountingBudget(budget)
				out := filepath.Join(t.TempDir(), "out")
				dst, _ := restore.NewFolder(out)
				done := make(chan error, 1)
				go func() {
					_, err := restore.Restore(t.Context(), r, sn.RootNode(), dst, restore.Options{Concurrency: workers, Memory: b})
					done <- err
				}()
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(time.Minute):
					t.Fatalf("restore under a %d byte budget with %d workers did not finish in a minute: deadlock?", budget, workers)
				}
				compareTrees(t, src, out)
				if b.used != 0 || b.high > budget || b.jobs == 0 {
					t.Fatalf("budget: %d bytes not given back, high %d of %d, %d jobs", b.used, b.high, budget, b.jobs)
				}
			})
		}
	}
}
