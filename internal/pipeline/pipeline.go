// Package pipeline owns one concurrency pattern: a producer emits items
// in order, a bounded number of workers process some of them at once,
// and a consumer receives every item in the producer's order once its
// work is done. The items in flight are bounded, the first error or a
// cancellation stops every part promptly, and no goroutine outlives the
// call.
package pipeline

import (
	"context"
	"sync"
)

// Options bound a pipeline.
type Options struct {
	// Workers is the most work calls that run at once; below 1 means 1.
	Workers int
	// Window is the most items in flight, from emit until their consume
	// returns: emit blocks while Window are. Below 1 means 1. A window larger
	// than Workers keeps the workers busy on later items while the
	// consumer waits for a slow one.
	Window int
}

// slot carries one item from emit to consume; a pipeline reuses its
// slots, so a steady stream of items allocates nothing.
type slot[T any] struct {
	item T
	work bool
	err  error
	done chan struct{} // one send when the work has returned
}

// Ordered runs a pipeline until produce has returned and every item it
// emitted has been consumed, or until the first error.
//
// produce runs in a goroutine of its own and passes items, in order, to
// emit; an item emitted with needsWork is handed to work, any other goes
// to consume without taking a worker. emit blocks while opt.Window items
// are in flight; it must be called only from produce's goroutine, and
// once it returns an error (the pipeline is stopping) produce should
// return soon, with that error or its own.
//
// work runs in up to opt.Workers goroutines. Its error does not stop the
// pipeline: it is passed to consume with the item, which decides whether
// to skip the item (return nil) or to stop (return an error).
//
// consume runs in the caller's goroutine, once for each item in the order
// it was emitted, after the item's work has returned; what work wrote to
// the item is visible to it.
//
// The first error from produce or consume, or ctx's error if it is
// cancelled first (even after the last consume), stops the pipeline and
// is returned; errors caused by
// the stop itself (a context.Canceled from the cancelled context) are
// not. Ordered returns only after produce and every work call have
// returned; no consume call starts after the stop.
func Ordered[T any](ctx context.Context, opt Options,
	produce func(ctx context.Context, emit func(item T, needsWork bool) error) error,
	work func(ctx context.Context, item T) error,
	consume func(ctx context.Context, item T, workErr error) error,
) error {
	workers, window := max(opt.Workers, 1), max(opt.Window, 1)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The first error is recorded before the context is cancelled, so an
	// error that the cancellation causes always comes second.
	var (
		once     sync.Once
		firstErr error
	)
	stop := func(err error) {
		once.Do(func() { firstErr = err })
		cancel()
	}

	// Neither channel ever blocks a send: each holds at most the slots in
	// flight, and free hands out at most window of them.
	free := make(chan *slot[T], window)
	order := make(chan *slot[T], window)
	jobs := make(chan *slot[T], window)

	var workerWG sync.WaitGroup
	startWorkers := func() {
		for range workers {
			workerWG.Add(1)
			go func() {
				defer workerWG.Done()
				for sl := range jobs {
					if err := ctx.Err(); err != nil {
						sl.err = err // stopping: no new work
					} else {
						sl.err = work(ctx, sl.item)
					}
					sl.done <- struct{}{}
				}
			}()
		}
	}

	// Producer-goroutine state: slots are made only as the window fills,
	// workers only when the first item needs one.
	made, started := 0, false
	emit := func(item T, needsWork bool) error {
		var sl *slot[T]
		select {
		case sl = <-free:
		default:
			if made < window {
				made++
				sl = &slot[T]{done: make(chan struct{}, 1)}
				break
			}
			select {
			case sl = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		sl.item, sl.work = item, needsWork
		if needsWork {
			if !started {
				started = true
				startWorkers()
			}
			jobs <- sl
		}
		order <- sl
		return nil
	}

	produced := make(chan struct{})
	go func() {
		defer close(produced)
		err := produce(ctx, emit)
		if err != nil {
			stop(err) // before the close, so the consumer sees the stop first
		}
		close(jobs)
		close(order)
	}()

	// The workers are all started (or never will be) once produce has
	// returned, so the Wait comes after <-produced. Deferred as well, so
	// that a panic in consume leaves no goroutine behind.
	shutdown := func() {
		cancel()
		<-produced
		workerWG.Wait()
	}
	defer shutdown()

	for sl := range order {
		if sl.work {
			select {
			case <-sl.done:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		if err := consume(ctx, sl.item, sl.err); err != nil {
			stop(err)
			break
		}
		var zero T
		sl.item, sl.err = zero, nil
		free <- sl
	}
	if err := parent.Err(); err != nil {
		stop(err) // a no-op if the pipeline had stopped already
	}
	shutdown()
	return firstErr
}
