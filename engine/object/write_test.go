package object

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/cache/cachetest"
)

// slowLoads loads from st after a random delay of up to maxDelay, and
// records how many loads ran at once at most.
type slowLoads struct {
	st       *cachetest.Store[key]
	maxDelay time.Duration

	mu      sync.Mutex
	r       *rand.Rand
	running atomic.Int32
	peak    atomic.Int32
}

func (s *slowLoads) load(ctx context.Context, k key) ([]byte, error) {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.mu.Lock()
	d := time.Duration(s.r.Int64N(int64(s.maxDelay)))
	s.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.st.Load(ctx, k)
}

func TestWriteToKeepsOrder(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, want := makeFile(st, 5, 60, 3000)
	for _, ahead := range []int{-1, 0, 1, 3, 16} {
		sl := &slowLoads{st: st, maxDelay: 3 * time.Millisecond, r: rand.New(rand.NewPCG(uint64(ahead+2), 1))}
		var buf bytes.Buffer
		if err := WriteTo(t.Context(), &buf, l, sl.load, ahead); err != nil {
			t.Fatalf("ahead %d: %v", ahead, err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("ahead %d: content differs", ahead)
		}
		// At most ahead loads wait to be written, besides the one being
		// waited for; fewer than one ahead means 4.
		bound := int32(ahead)
		if ahead < 1 {
			bound = 4
		}
		if p := sl.peak.Load(); p > bound+1 || (bound > 1 && p < 2) {
			t.Fatalf("ahead %d: %d loads at once", ahead, p)
		}
	}
	var buf bytes.Buffer
	if err := WriteTo(t.Context(), &buf, NewLayout[key](nil), st.Load, 0); err != nil || buf.Len() != 0 {
		t.Fatalf("empty file: %d bytes, %v", buf.Len(), err)
	}
}

// TestWriteToStopsOnError: the first failing piece in file order stops
// the stream after the pieces before it, and its error is returned.
func TestWriteToStopsOnError(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, want := makeFile(st, 6, 200, 3000)
	const bad = 7
	delete(st.Blobs, l.Piece(bad).Key)
	sl := &slowLoads{st: st, maxDelay: time.Millisecond, r: rand.New(rand.NewPCG(3, 3))}
	var buf bytes.Buffer
	if err := WriteTo(t.Context(), &buf, l, sl.load, 4); !errors.Is(err, cachetest.ErrNotFound) {
		t.Fatalf("missing piece: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), want[:l.Start(bad)]) {
		t.Fatalf("wrote %d bytes, want the %d before the missing piece", buf.Len(), l.Start(bad))
	}
	if n := st.Total.Load(); n > bad+1+4+1 {
		t.Fatalf("%d pieces loaded after piece %d failed", n-bad-1, bad)
	}

	// A piece of the wrong length is an error, not a shifted file.
	st2 := cachetest.NewStore[key]()
	l2, _ := makeFile(st2, 7, 10, 3000)
	st2.Blobs[l2.Piece(3).Key] = append(st2.Blobs[l2.Piece(3).Key], 0)
	buf.Reset()
	if err := WriteTo(t.Context(), &buf, l2, st2.Load, 2); err == nil || !strings.Contains(err.Error(), "piece 3") || int64(buf.Len()) != l2.Start(3) {
		t.Fatalf("long piece: %v after %d bytes", err, buf.Len())
	}

	// The writer's error stops it too.
	ew := &failWriter{after: 2}
	if err := WriteTo(t.Context(), ew, l2, st2.Load, 2); !errors.Is(err, errWrite) || ew.writes != 3 {
		t.Fatalf("failing writer: %v after %d writes", err, ew.writes)
	}
}

var errWrite = errors.New("disk full")

type failWriter struct{ after, writes int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes > w.after {
		return 0, errWrite
	}
	return len(p), nil
}

// TestWriteToCancel: a cancelled context stops the stream, the loads in
// flight are cancelled, and the context's error is returned.
func TestWriteToCancel(t *testing.T) {
	st := cachetest.NewStore[key]()
	l, want := makeFile(st, 8, 100, 3000)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Piece 5 and later wait for the context; the writer cancels it once
	// it has the first three.
	index := map[key]int{}
	for i := 0; i < l.Len(); i++ {
		index[l.Piece(i).Key] = i
	}
	load := func(ctx context.Context, k key) ([]byte, error) {
		if index[k] >= 5 {
			st.Load(ctx, k) // counted
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return st.Load(ctx, k)
	}
	w := &cancelWriter{after: 3, cancel: cancel}
	done := make(chan error, 1)
	go func() { done <- WriteTo(ctx, w, l, load, 4) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo did not stop on cancel")
	}
	if !bytes.Equal(w.buf.Bytes(), want[:w.buf.Len()]) || w.buf.Len() > int(l.Start(5)) {
		t.Fatalf("wrote %d bytes before stopping", w.buf.Len())
	}
	if n := st.Total.Load(); n > 5+4+1 {
		t.Fatalf("%d loads after a cancel", n)
	}

	// A context cancelled before the start stops it at once (a piece or
	// two may have been started and written: this loader ignores ctx).
	var buf bytes.Buffer
	if err := WriteTo(ctx, &buf, l, st.Load, 4); !errors.Is(err, context.Canceled) || buf.Len() >= len(want)/2 {
		t.Fatalf("cancelled before: %v, %d bytes", err, buf.Len())
	}
}

type cancelWriter struct {
	buf    bytes.Buffer
	after  int
	writes int
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes == w.after {
		w.cancel()
	}
	return w.buf.Write(p)
}
