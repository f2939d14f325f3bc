package faults_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/faults"
	"github.com/coffer-backup/coffer/engine/store/storetest"
)

// With no faults configured the decorator is a transparent Storage.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Storage {
		return faults.New(store.NewMemory(), faults.Config{})
	})
}

// With latency alone it still is, and the jitter shuffles the
// interleavings of the concurrent cases.
func TestConformanceWithLatency(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Storage {
		return faults.New(store.NewMemory(), faults.Config{Seed: 7, Jitter: 200 * time.Microsecond})
	})
}

// retry is the simplest retry loop a caller could write: again until
// success or an error that store.IsPermanent calls final.
func retry(t testing.TB, what string, fn func() error) error {
	t.Helper()
	for range 200 {
		err := fn()
		if err == nil || store.IsPermanent(err) {
			return err
		}
		if !errors.Is(err, faults.ErrInjected) {
			t.Fatalf("%s: %v: not an injected fault", what, err)
		}
	}
	t.Fatalf("%s: 200 attempts failed", what)
	return nil
}

func id(i int) string { return fmt.Sprintf("%064x", i) }

// A retry loop gets every operation through a storage that fails a
// third of all calls, and the faults really happened.
func TestRetryGetsThrough(t *testing.T) {
	ctx := t.Context()
	mem := store.NewMemory()
	st := faults.New(mem, faults.Config{
		Seed: 1, Put: 0.3, Get: 0.3, Stat: 0.3, List: 0.3, Delete: 0.3, ShortRead: 0.2, LostReply: 0.2,
	})
	want := map[store.Handle][]byte{}
	for i := range 50 {
		h := store.Handle{Kind: store.KindIndex, Name: id(i)}
		want[h] = bytes.Repeat([]byte{byte(i)}, 100+i)
		if err := retry(t, "put", func() error { return st.Put(ctx, h, want[h]) }); err != nil {
			t.Fatal(err)
		}
	}
	for h, data := range want {
		var got []byte
		err := retry(t, "get", func() (err error) { got, err = st.Get(ctx, h, 0, -1); return err })
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get %s: %d bytes, %v", h, len(got), err)
		}
		var info store.ObjectInfo
		err = retry(t, "stat", func() (err error) { info, err = st.Stat(ctx, h); return err })
		if err != nil || info.Size != int64(len(data)) {
			t.Fatalf("Stat %s: %+v, %v", h, info, err)
		}
	}
	for range 10 {
		var n int
		err := retry(t, "list", func() error {
			n = 0
			return st.List(ctx, store.KindIndex, func(store.ObjectInfo) error { n++; return nil })
		})
		if err != nil || n != len(want) {
			t.Fatalf("List: %d objects, %v", n, err)
		}
	}
	for h := range want {
		if err := retry(t, "delete", func() error { return st.Delete(ctx, h) }); err != nil {
			t.Fatal(err)
		}
		if _, err := mem.Stat(ctx, h); !store.IsNotFound(err) {
			t.Fatalf("after Delete %s: %v", h, err)
		}
	}
	c := st.Counts()
	t.Logf("faults injected: %+v", c)
	if c.Put == 0 || c.Get == 0 || c.Stat == 0 || c.List == 0 || c.Delete == 0 || c.ShortRead == 0 || c.LostReply == 0 {
		t.Errorf("some kind of fault never happened: %+v", c)
	}
}

// Injected errors are transient, say what was cut short, and never look
// like a missing object or a cancellation.
func TestInjectedErrors(t *testing.T) {
	ctx := t.Context()
	h := store.Handle{Kind: store.KindDataPack, Name: id(1)}
	mem := store.NewMemory()
	mem.Put(ctx, h, []byte("hello"))
	st := faults.New(mem, faults.Config{Put: 1, Get: 1, Stat: 1, List: 1, Delete: 1})
	_, gerr := st.Get(ctx, h, 0, -1)
	_, serr := st.Stat(ctx, h)
	for _, err := range []error{
		st.Put(ctx, h, nil), gerr, serr, st.Delete(ctx, h),
		st.List(ctx, store.KindDataPack, func(store.ObjectInfo) error { return nil }),
	} {
		if !errors.Is(err, faults.ErrInjected) || store.IsPermanent(err) {
			t.Errorf("%v: want a transient injected error", err)
		}
	}

	st = faults.New(mem, faults.Config{ShortRead: 1})
	b, err := st.Get(ctx, h, 0, -1)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, faults.ErrInjected) || b != nil {
		t.Errorf("short read: %q, %v; want no bytes and io.ErrUnexpectedEOF", b, err)
	}
	if c := st.Counts(); c.ShortRead != 1 || c.Total() != 1 {
		t.Errorf("counts after one short read: %+v", c)
	}
}

// The same seed and the same calls give the same faults.
func TestDeterministic(t *testing.T) {
	run := func() (faults.Counts, []bool) {
		st := faults.New(store.NewMemory(), faults.Config{Seed: 42, Put: 0.5, Stat: 0.5})
		var ok []bool
		for i := range 100 {
			h := store.Handle{Kind: store.KindSnapshot, Name: id(i)}
			ok = append(ok, st.Put(t.Context(), h, []byte{1}) == nil)
			_, err := st.Stat(t.Context(), h)
			ok = append(ok, err == nil)
		}
		return st.Counts(), ok
	}
	c1, ok1 := run()
	c2, ok2 := run()
	if c1 != c2 || fmt.Sprint(ok1) != fmt.Sprint(ok2) {
		t.Errorf("same seed, different faults: %+v vs %+v", c1, c2)
	}
	if c1.Put == 0 || c1.Stat == 0 {
		t.Errorf("no faults: %+v", c1)
	}
}

// Kinds limits faults to some kinds of object.
func TestKinds(t *testing.T) {
	ctx := t.Context()
	st := faults.New(store.NewMemory(), faults.Config{Put: 1, Get: 1, Stat: 1, Kinds: []store.Kind{store.KindDataPack}})
	idx := store.Handle{Kind: store.KindIndex, Name: id(1)}
	pack := store.Handle{Kind: store.KindDataPack, Name: id(1)}
	if err := st.Put(ctx, idx, []byte("x")); err != nil {
		t.Errorf("Put of an index: %v", err)
	}
	if _, err := st.Get(ctx, idx, 0, -1); err != nil {
		t.Errorf("Get of an index: %v", err)
	}
	if err := st.Put(ctx, pack, []byte("x")); !errors.Is(err, faults.ErrInjected) {
		t.Errorf("Put of a data pack: %v, want an injected fault", err)
	}
	if c := st.Counts(); c.Put != 1 || c.Total() != 1 {
		t.Errorf("counts: %+v", c)
	}
}

// Latency delays calls, and a cancelled context ends the wait with its
// own error, never an injected one.
func TestLatency(t *testing.T) {
	h := store.Handle{Kind: store.KindLock, Name: "l"}
	st := faults.New(store.NewMemory(), faults.Config{Latency: 30 * time.Millisecond, Jitter: 10 * time.Millisecond, Stat: 1})
	start := time.Now()
	st.Stat(t.Context(), h)
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("Stat took %v with 30ms latency", d)
	}
	// A latency far above what a loaded machine's scheduling adds, so
	// that a wait that ignores the context cannot pass.
	slow := faults.New(store.NewMemory(), faults.Config{Latency: 2 * time.Second, Stat: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := slow.Stat(ctx, h)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat whose context ends during the latency: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a cancelled wait took %v of a 2s latency", d)
	}
}

// A lost reply to a PutIf: the write happened, and retrying it fails as
// if someone else had written. A caller must compare bytes to know.
func TestLostReplyPutIf(t *testing.T) {
	ctx := t.Context()
	mem := store.NewMemory()
	st := faults.New(mem, faults.Config{LostReply: 1})
	h := store.ConfigHandle
	err := st.PutIf(ctx, h, []byte("v1"), "")
	if !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("PutIf with its reply lost: %v", err)
	}
	if got, _ := mem.Get(ctx, h, 0, -1); string(got) != "v1" {
		t.Fatalf("the write behind a lost reply did not happen: %q", got)
	}
	st.SetConfig(faults.Config{})
	if err := st.PutIf(ctx, h, []byte("v1"), ""); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("retried PutIf: %v, want ErrPreconditionFailed", err)
	}
}

// A Commit that fails leaves nothing behind.
func TestCommitFault(t *testing.T) {
	ctx := t.Context()
	mem := store.NewMemory()
	st := faults.New(mem, faults.Config{Put: 1})
	tmp, err := st.NewTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tmp.Write([]byte("pack"))
	h := store.Handle{Kind: store.KindDataPack, Name: id(3)}
	if err := tmp.Commit(ctx, h); !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("Commit: %v", err)
	}
	tmp.Abort()
	if _, err := mem.Stat(ctx, h); !store.IsNotFound(err) {
		t.Errorf("after a failed Commit: %v", err)
	}
}
