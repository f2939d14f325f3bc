package object

import (
	"context"
	"io"
)

// WriteTo writes the content l lays out to w in order, loading each
// piece with load and fetching up to ahead pieces in parallel (4 if
// ahead < 1). The first error in file order, of a load, of a piece whose
// length is not its size, or of w, stops it and is returned; the loads
// still running are cancelled. If ctx ends, it stops and returns ctx's
// error (or a load's error caused by it).
func WriteTo[K comparable](ctx context.Context, w io.Writer, l *Layout[K], load func(context.Context, K) ([]byte, error), ahead int) error {
	if ahead < 1 {
		ahead = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	// futures holds, in file order, one channel per started load: the
	// loads run ahead of the writes by at most its capacity.
	futures := make(chan chan result, ahead)
	go func() {
		defer close(futures)
		for i, pc := range l.pieces {
			ch := make(chan result, 1)
			select {
			case futures <- ch:
			case <-ctx.Done():
				return
			}
			go func() {
				data, err := load(ctx, pc.Key)
				if err == nil {
					err = checkSize(i, pc, data)
				}
				ch <- result{data, err}
			}()
		}
	}()
	for ch := range futures {
		res := <-ch
		if res.err != nil {
			return res.err
		}
		if _, err := w.Write(res.data); err != nil {
			return err
		}
	}
	return ctx.Err()
}
