package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// channels is the pattern Ordered replaces, as s3io.Source.Walk wrote it
// by hand: a slot and a done channel per item, one channel of slots in
// order and one of work, workers ranging over the work. It is the
// baseline of BenchmarkOrdered.
func channels[T any](ctx context.Context, workers, window int,
	produce func(ctx context.Context, emit func(item T, needsWork bool) error) error,
	work func(ctx context.Context, item T) error,
	consume func(ctx context.Context, item T, workErr error) error,
) error {
	type slot struct {
		item T
		done chan struct{}
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan *slot, window)
	jobs := make(chan *slot, window)
	var produceErr error
	go func() {
		defer close(slots)
		defer close(jobs)
		produceErr = produce(ctx, func(item T, needsWork bool) error {
			sl := &slot{item: item}
			if needsWork {
				sl.done = make(chan struct{})
				select {
				case jobs <- sl:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case slots <- sl:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sl := range jobs {
				sl.err = work(ctx, sl.item)
				close(sl.done)
			}
		}()
	}
	defer wg.Wait()
	for sl := range slots {
		if sl.done != nil {
			select {
			case <-sl.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := consume(ctx, sl.item, sl.err); err != nil {
			return err
		}
	}
	if produceErr != nil {
		return produceErr
	}
	return ctx.Err()
}

// BenchmarkOrdered measures the cost per item of the pipeline itself:
// work and consume do nearly nothing. Each op is one item. Run:
//
//	go test -run - -bench Ordered -benchmem ./internal/pipeline/
func BenchmarkOrdered(b *testing.B) {
	type item struct{ n, out int }
	impls := []struct {
		name string
		run  func(ctx context.Context, workers, window int,
			produce func(context.Context, func(*item, bool) error) error,
			work func(context.Context, *item) error,
			consume func(context.Context, *item, error) error) error
	}{
		{"channels", channels[*item]},
		{"Ordered", func(ctx context.Context, workers, window int,
			produce func(context.Context, func(*item, bool) error) error,
			work func(context.Context, *item) error,
			consume func(context.Context, *item, error) error) error {
			return Ordered(ctx, Options{Workers: workers, Window: window}, produce, work, consume)
		}},
	}
	// s3io's Walk: 16 HEADs at once, 2048 objects listed ahead.
	const workers, window = 16, 2048
	for _, share := range []struct {
		name  string
		needs func(int) bool
	}{{"work=all", func(int) bool { return true }}, {"work=third", func(i int) bool { return i%3 == 0 }}, {"work=none", func(int) bool { return false }}} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%s/%s", share.name, impl.name), func(b *testing.B) {
				items := make([]item, b.N)
				sum := 0
				b.ResetTimer()
				err := impl.run(context.Background(), workers, window,
					func(ctx context.Context, emit func(*item, bool) error) error {
						for i := range items {
							items[i].n = i
							if err := emit(&items[i], share.needs(i)); err != nil {
								return err
							}
						}
						return nil
					},
					func(_ context.Context, it *item) error { it.out = it.n + 1; return nil },
					func(_ context.Context, it *item, _ error) error { sum += it.out; return nil })
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
				_ = sum
			})
		}
	}
}
