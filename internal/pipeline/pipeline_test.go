package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// noLeaks fails t if, once the test is over, more goroutines run than
// when it was called (after giving exiting ones time to finish).
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// tracker wraps the three functions of a pipeline and counts their
// calls, so a test can check what ran, and that nothing still runs once
// Ordered has returned.
type tracker[T any] struct {
	producing, working, consuming atomic.Int32
	maxWorking                    atomic.Int32
	works, consumes               atomic.Int64
}

func (tr *tracker[T]) run(t *testing.T, ctx context.Context, opt Options,
	produce func(context.Context, func(T, bool) error) error,
	work func(context.Context, T) error,
	consume func(context.Context, T, error) error,
) error {
	t.Helper()
	noLeaks(t)
	err := Ordered(ctx, opt,
		func(ctx context.Context, emit func(T, bool) error) error {
			tr.producing.Add(1)
			defer tr.producing.Add(-1)
			return produce(ctx, emit)
		},
		func(ctx context.Context, it T) error {
			n := tr.working.Add(1)
			defer tr.working.Add(-1)
			for m := tr.maxWorking.Load(); n > m && !tr.maxWorking.CompareAndSwap(m, n); m = tr.maxWorking.Load() {
			}
			tr.works.Add(1)
			return work(ctx, it)
		},
		func(ctx context.Context, it T, err error) error {
			if tr.consuming.Add(1) != 1 {
				t.Error("two consume calls at once")
			}
			defer tr.consuming.Add(-1)
			tr.consumes.Add(1)
			return consume(ctx, it, err)
		})
	if p, w, c := tr.producing.Load(), tr.working.Load(), tr.consuming.Load(); p+w+c != 0 {
		t.Errorf("after Ordered returned: %d produce, %d work, %d consume calls still running", p, w, c)
	}
	return err
}

// count emits 0, 1, … up to n (forever if n < 0) and returns emit's
// error the way a real producer does, wrapped.
func count(n int, needsWork func(int) bool) func(context.Context, func(int, bool) error) error {
	return func(ctx context.Context, emit func(int, bool) error) error {
		for i := 0; n < 0 || i < n; i++ {
			if err := emit(i, needsWork(i)); err != nil {
				return fmt.Errorf("emit %d: %w", i, err)
			}
		}
		return nil
	}
}

func all(int) bool      { return true }
func thirds(i int) bool { return i%3 != 0 }

// inOrder returns a consume that fails t unless items come as 0, 1, 2, …
func inOrder(t *testing.T) (func(context.Context, int, error) error, *int) {
	next := new(int)
	return func(_ context.Context, i int, err error) error {
		if err != nil {
			t.Errorf("item %d: work error %v", i, err)
		}
		if i != *next {
			t.Errorf("consumed %d, want %d", i, *next)
		}
		*next = i + 1
		return nil
	}, next
}

// waitCtx is work that returns only when the pipeline stops.
func waitCtx(ctx context.Context, _ int) error {
	<-ctx.Done()
	return fmt.Errorf("waited: %w", ctx.Err())
}

// Items come out in the order they went in, after their work, however
// long each work takes; items emitted without work never reach a worker.
func TestOrderUnderRandomLatency(t *testing.T) {
	type item struct {
		i, out   int
		needWork bool
	}
	const n = 3000
	var tr tracker[*item]
	next := 0
	err := tr.run(t, context.Background(), Options{Workers: 8, Window: 64},
		func(ctx context.Context, emit func(*item, bool) error) error {
			for i := range n {
				it := &item{i: i, needWork: thirds(i)}
				if err := emit(it, it.needWork); err != nil {
					return err
				}
			}
			return nil
		},
		func(ctx context.Context, it *item) error {
			if !it.needWork {
				t.Errorf("item %d needs no work but went to a worker", it.i)
			}
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			it.out = 2 * it.i
			return nil
		},
		func(ctx context.Context, it *item, err error) error {
			if err != nil {
				t.Errorf("item %d: %v", it.i, err)
			}
			if it.i != next {
				t.Fatalf("consumed %d, want %d", it.i, next)
			}
			next++
			if it.needWork && it.out != 2*it.i {
				t.Errorf("item %d consumed before its work was done", it.i)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if next != n {
		t.Fatalf("consumed %d items, want %d", next, n)
	}
	if want := int64(n - n/3); tr.works.Load() != want {
		t.Errorf("%d work calls, want %d", tr.works.Load(), want)
	}
}

// No more than Workers work calls run at once (and more than one do).
func TestWorkersBound(t *testing.T) {
	const workers = 3
	var tr tracker[int]
	consume, _ := inOrder(t)
	err := tr.run(t, context.Background(), Options{Workers: workers, Window: 100},
		count(300, all),
		func(context.Context, int) error { time.Sleep(200 * time.Microsecond); return nil },
		consume)
	if err != nil {
		t.Fatal(err)
	}
	if m := tr.maxWorking.Load(); m > workers || m < 2 {
		t.Fatalf("at most %d work calls ran at once, want 2 to %d", m, workers)
	}
}

// No more than Window items are between emit and the end of their
// consume; emit blocks the producer at the limit.
func TestWindowBound(t *testing.T) {
	const window = 5
	var emitted, consumed atomic.Int64
	release := make(chan struct{})
	var tr tracker[int]
	done := make(chan error)
	go func() {
		done <- tr.run(t, context.Background(), Options{Workers: 2, Window: window},
			func(ctx context.Context, emit func(int, bool) error) error {
				for i := range 200 {
					if err := emit(i, thirds(i)); err != nil {
						return err
					}
					// consumed is counted before the slot is free, so
					// this is at least the number in flight.
					if n := emitted.Add(1) - consumed.Load(); n > window {
						t.Errorf("%d items in flight, window %d", n, window)
					}
				}
				return nil
			},
			func(context.Context, int) error {
				time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
				return nil
			},
			func(_ context.Context, i int, _ error) error {
				if i == 0 {
					<-release
				}
				consumed.Add(1)
				return nil
			})
	}()
	for emitted.Load() < window {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if n := emitted.Load(); n != window {
		t.Errorf("with the consumer blocked, %d items were emitted, want %d", n, window)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if consumed.Load() != 200 {
		t.Fatalf("consumed %d items, want 200", consumed.Load())
	}
}

// One worker and a window of one still run every item, in order; zero
// options mean one.
func TestOneWorkerWindowOne(t *testing.T) {
	for _, opt := range []Options{{Workers: 1, Window: 1}, {}, {Workers: 4, Window: 1}, {Workers: 1, Window: 8}} {
		t.Run(fmt.Sprintf("%d_%d", opt.Workers, opt.Window), func(t *testing.T) {
			var tr tracker[int]
			consume, next := inOrder(t)
			err := tr.run(t, context.Background(), opt, count(500, thirds),
				func(context.Context, int) error { return nil }, consume)
			if err != nil {
				t.Fatal(err)
			}
			if *next != 500 {
				t.Fatalf("consumed %d items, want 500", *next)
			}
		})
	}
}

// Nothing to do is not a hang.
func TestEmpty(t *testing.T) {
	var tr tracker[int]
	consume, _ := inOrder(t)
	if err := tr.run(t, context.Background(), Options{Workers: 2, Window: 2}, count(0, all), waitCtx, consume); err != nil {
		t.Fatal(err)
	}
}

// The consumer decides what a work error means: here, skip the item.
func TestWorkErrorSkipped(t *testing.T) {
	errOdd := errors.New("odd")
	var tr tracker[int]
	var got []int
	err := tr.run(t, context.Background(), Options{Workers: 4, Window: 16}, count(100, all),
		func(_ context.Context, i int) error {
			if i%2 == 1 {
				return errOdd
			}
			return nil
		},
		func(_ context.Context, i int, err error) error {
			if (err != nil) != (i%2 == 1) {
				t.Errorf("item %d: work error %v", i, err)
			}
			if err == nil {
				got = append(got, i)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 || got[49] != 98 {
		t.Fatalf("consumed %v", got)
	}
}

// Each way of stopping returns its own error, never the cancellation it
// caused in the other parts, consumes nothing more, and leaves nothing
// running.
func TestStop(t *testing.T) {
	errProduce := errors.New("produce failed")
	errWork := errors.New("work failed")
	errConsume := errors.New("consume failed")
	stopAt := 40
	cases := []struct {
		name    string
		produce func(context.Context, func(int, bool) error) error
		work    func(context.Context, int) error
		consume func(ctx context.Context, i int, err error) error
		cancel  bool // cancel ctx when item stopAt is consumed
		want    error
	}{{
		name: "produce error",
		produce: func(ctx context.Context, emit func(int, bool) error) error {
			if err := count(5, all)(ctx, emit); err != nil { // less than the window
				return err
			}
			return errProduce
		},
		// The work of item 0 waits until the pipeline stops, so nothing is
		// consumed and the produce error must beat the cancellation.
		work: waitCtx,
		consume: func(_ context.Context, i int, err error) error {
			return fmt.Errorf("consumed %d: %w", i, err)
		},
		want: errProduce,
	}, {
		name:    "produce error, consumer waiting on ctx",
		produce: func(ctx context.Context, emit func(int, bool) error) error { emit(0, false); return errProduce },
		work:    waitCtx,
		consume: func(ctx context.Context, i int, err error) error { <-ctx.Done(); return ctx.Err() },
		want:    errProduce,
	}, {
		name:    "work error",
		produce: count(-1, all),
		work: func(ctx context.Context, i int) error {
			if i == stopAt {
				return errWork
			}
			if i > stopAt {
				return waitCtx(ctx, i)
			}
			return nil
		},
		consume: func(_ context.Context, i int, err error) error {
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			return nil
		},
		want: errWork,
	}, {
		name:    "consume error",
		produce: count(-1, thirds),
		work: func(ctx context.Context, i int) error {
			if i > stopAt {
				return waitCtx(ctx, i)
			}
			return nil
		},
		consume: func(_ context.Context, i int, err error) error {
			if i == stopAt {
				return errConsume
			}
			return err
		},
		want: errConsume,
	}, {
		name:    "cancel in consume",
		produce: count(-1, thirds),
		work: func(ctx context.Context, i int) error {
			if i > stopAt {
				return waitCtx(ctx, i)
			}
			return nil
		},
		consume: func(_ context.Context, i int, err error) error { return err },
		cancel:  true,
		want:    context.Canceled,
	}, {
		name:    "cancel, producer blocked",
		produce: count(-1, all),
		work:    func(context.Context, int) error { return nil },
		consume: func(ctx context.Context, i int, err error) error {
			if i == stopAt {
				<-ctx.Done() // while the window fills
			}
			return err
		},
		cancel: true,
		want:   context.Canceled,
	}, {
		name: "cancel, producer ignores emit errors",
		produce: func(ctx context.Context, emit func(int, bool) error) error {
			for i := range 1000 {
				emit(i, thirds(i))
			}
			return nil
		},
		work:    func(context.Context, int) error { return nil },
		consume: func(_ context.Context, i int, err error) error { return err },
		cancel:  true,
		want:    context.Canceled,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 200 { // the parts race each other; try many orders
				ctx, cancel := context.WithCancel(context.Background())
				var tr tracker[int]
				last := -1
				err := tr.run(t, ctx, Options{Workers: 4, Window: 8}, c.produce, c.work,
					func(ctx context.Context, i int, err error) error {
						if i != last+1 {
							t.Fatalf("consumed %d after %d", i, last)
						}
						last = i
						if c.cancel && i == stopAt {
							cancel()
						}
						return c.consume(ctx, i, err)
					})
				cancel()
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				if c.want != errProduce && last != stopAt {
					t.Fatalf("last consumed %d, want %d", last, stopAt)
				}
			}
		})
	}
}

// A cancelled context stops a pipeline whose every part is blocked on it,
// and a context cancelled before the start runs nothing.
func TestCancelWhileBlocked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var tr tracker[int]
	time.AfterFunc(10*time.Millisecond, cancel)
	err := tr.run(t, ctx, Options{Workers: 2, Window: 4}, count(-1, all), waitCtx,
		func(context.Context, int, error) error { t.Error("consumed"); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}

	tr = tracker[int]{}
	err = tr.run(t, ctx, Options{Workers: 2, Window: 4}, count(-1, all), waitCtx,
		func(context.Context, int, error) error { t.Error("consumed"); return nil })
	if !errors.Is(err, context.Canceled) || tr.works.Load() != 0 {
		t.Fatalf("err = %v and %d work calls, want context.Canceled and none", err, tr.works.Load())
	}
}

// A panic in consume still stops the other goroutines.
func TestConsumePanic(t *testing.T) {
	noLeaks(t)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	Ordered(context.Background(), Options{Workers: 2, Window: 4}, count(-1, all),
		func(context.Context, int) error { return nil },
		func(context.Context, int, error) error { panic("consume") })
}
