package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/storetest"
)

// recorder is a testing.TB that notes failures instead of reporting
// them, so a test can run a case against a broken storage and check that
// it fails. Everything else (Context, TempDir, Cleanup) is the real t's.
type recorder struct {
	testing.TB
	mu      sync.Mutex
	failed  bool
	skipped bool
	msgs    []string
}

func (r *recorder) Helper() {}

func (r *recorder) note(failed bool, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = r.failed || failed
	r.msgs = append(r.msgs, msg)
}

func (r *recorder) Log(args ...any)                 { r.note(false, fmt.Sprint(args...)) }
func (r *recorder) Logf(format string, args ...any) { r.note(false, fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)               { r.note(true, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) {
	r.note(true, fmt.Sprintf(format, args...))
}
func (r *recorder) Fail() { r.note(true, "Fail") }
func (r *recorder) FailNow() {
	r.Fail()
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) {
	r.Error(args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}
func (r *recorder) SkipNow() {
	r.mu.Lock()
	r.skipped = true
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *recorder) Skip(args ...any) {
	r.note(false, fmt.Sprint(args...))
	r.SkipNow()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.note(false, fmt.Sprintf(format, args...))
	r.SkipNow()
}
func (r *recorder) Skipped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skipped
}

// runCase runs the named case on st under a recorder, on its own
// goroutine so that the case's Fatal can end it.
func runCase(t *testing.T, name string, st store.Storage) *recorder {
	t.Helper()
	for _, c := range storetest.Cases {
		if c.Name == name {
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.Fn(r, st)
			}()
			<-done
			return r
		}
	}
	t.Fatalf("no case %q", name)
	return nil
}

// TestCasesPassOnMemory is the control for TestSuiteBites: through the
// recorder, every case passes on a sound store.
func TestCasesPassOnMemory(t *testing.T) {
	for _, c := range storetest.Cases {
		r := runCase(t, c.Name, store.NewMemory())
		if r.Failed() || r.Skipped() {
			t.Errorf("%s on Memory: failed %v, skipped %v: %s", c.Name, r.Failed(), r.Skipped(), strings.Join(r.msgs, "; "))
		}
	}
}

// TestSuiteBites runs cases against stores with one deliberate bug each
// and checks that the case meant to catch it fails.
func TestSuiteBites(t *testing.T) {
	for _, m := range []struct {
		bug   string
		st    store.Storage
		case_ string
	}{
		{"Get maps not-found to a plain error", &notFoundGone{mem()}, "Missing"},
		{"Get returns what there is of a range that runs past the end", &shortRead{mem()}, "GetOutOfRange"},
		{"Get clamps a negative offset to 0", &shortRead{mem()}, "GetNegativeOffset"},
		{"List of tree packs also reports data packs", &kindLeak{mem()}, "ListKinds"},
		{"List drops an object (a lost page)", &dropsOne{mem()}, "ListMany"},
		{"PutIf ignores the version", &blindPutIf{mem()}, "PutIfVersion"},
		{"PutIf ignores the version", &blindPutIf{mem()}, "PutIfCreate"},
		{"PutIf ignores the version", &blindPutIf{mem()}, "PutIfRace"},
		{"methods ignore their context", &ignoresCancel{mem()}, "Cancel"},
		{"Delete accepts any handle", &deleteAnything{mem()}, "InvalidHandles"},
		{"Get hands out the buffer Put was given", newSharesBuffer(), "PutGet"},
		{"large Puts keep only the first 8 MiB", &truncatesLarge{mem()}, "Large"},
		{"a temp object keeps only its first write", &firstWriteOnly{mem()}, "Temp"},
		{"Features hides temp objects that work", &featureLiar{mem()}, "Features"},
	} {
		t.Run(m.case_+"/"+strings.ReplaceAll(m.bug, " ", "_"), func(t *testing.T) {
			r := runCase(t, m.case_, m.st)
			if !r.Failed() {
				t.Fatalf("case %s passed on a store where %s", m.case_, m.bug)
			}
			for i, msg := range r.msgs {
				if i == 3 {
					t.Logf("(and %d more)", len(r.msgs)-i)
					break
				}
				t.Logf("caught: %s", msg)
			}
		})
	}
}

// TestNotFoundBites is the one the suite was built around: a storage
// whose Get turns not-found into errors.New("gone") fails the Missing
// case, and names the problem.
func TestNotFoundBites(t *testing.T) {
	r := runCase(t, "Missing", &notFoundGone{mem()})
	if !r.Failed() {
		t.Fatal("Missing passed on a store whose Get says \"gone\" for a missing object")
	}
	all := strings.Join(r.msgs, "\n")
	if !strings.Contains(all, "gone; want an error wrapping store.ErrNotFound") {
		t.Errorf("the failure does not say what is wrong:\n%s", all)
	}
	t.Logf("Missing on the broken store reports:\n%s", all)
}

// TestWithoutFeatures: a storage without temp objects or conditional
// writes passes by saying ErrNotSupported; the cases that need them
// skip.
func TestWithoutFeatures(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Storage { return &noFeatures{mem()} })
}

// TestOptionsSkip: a case named in Options.Skip does not run (it never
// opens a store); the others do. All but two cases are skipped, to keep
// this cheap.
func TestOptionsSkip(t *testing.T) {
	skip := map[string]string{}
	for _, c := range storetest.Cases {
		if c.Name != "PutGet" && c.Name != "Stat" {
			skip[c.Name] = "skipped to test Options.Skip"
		}
	}
	var mu sync.Mutex
	opened := map[string]bool{}
	storetest.RunWith(t, func(t *testing.T) store.Storage {
		mu.Lock()
		opened[t.Name()[strings.LastIndex(t.Name(), "/")+1:]] = true
		mu.Unlock()
		return store.NewMemory()
	}, storetest.Options{Skip: skip})
	for name := range skip {
		if opened[name] {
			t.Errorf("case %s ran although Options.Skip names it", name)
		}
	}
	if !opened["PutGet"] || !opened["Stat"] {
		t.Errorf("cases not skipped did not run: opened %v", opened)
	}
}

func mem() store.Storage { return store.NewMemory() }

// The broken stores. Each embeds a sound Memory and breaks one thing.

type notFoundGone struct{ store.Storage }

func (s *notFoundGone) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	b, err := s.Storage.Get(ctx, h, off, n)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("gone")
	}
	return b, err
}

type shortRead struct{ store.Storage }

func (s *shortRead) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	all, err := s.Storage.Get(ctx, h, 0, -1)
	if err != nil {
		return nil, err
	}
	off = min(max(off, 0), int64(len(all)))
	end := int64(len(all))
	if n >= 0 {
		end = min(end, off+n)
	}
	return all[off:end], nil
}

type kindLeak struct{ store.Storage }

func (s *kindLeak) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	if k == store.KindTreePack {
		if err := s.Storage.List(ctx, store.KindDataPack, fn); err != nil {
			return err
		}
	}
	return s.Storage.List(ctx, k, fn)
}

type dropsOne struct{ store.Storage }

func (s *dropsOne) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	first := true
	return s.Storage.List(ctx, k, func(info store.ObjectInfo) error {
		if first {
			first = false
			return nil
		}
		return fn(info)
	})
}

type blindPutIf struct{ store.Storage }

func (s *blindPutIf) PutIf(ctx context.Context, h store.Handle, data []byte, _ store.Version) error {
	return s.Storage.Put(ctx, h, data)
}

type ignoresCancel struct{ store.Storage }

func (s *ignoresCancel) Put(_ context.Context, h store.Handle, data []byte) error {
	return s.Storage.Put(context.Background(), h, data)
}
func (s *ignoresCancel) Get(_ context.Context, h store.Handle, off, n int64) ([]byte, error) {
	return s.Storage.Get(context.Background(), h, off, n)
}
func (s *ignoresCancel) Stat(_ context.Context, h store.Handle) (store.ObjectInfo, error) {
	return s.Storage.Stat(context.Background(), h)
}

type deleteAnything struct{ store.Storage }

func (s *deleteAnything) Delete(ctx context.Context, h store.Handle) error {
	if h.Valid() != nil {
		return nil
	}
	return s.Storage.Delete(ctx, h)
}

// sharesBuffer keeps the slices it is given and hands them out again.
type sharesBuffer struct {
	store.Storage
	mu   sync.Mutex
	kept map[store.Handle][]byte
}

func newSharesBuffer() *sharesBuffer {
	return &sharesBuffer{Storage: mem(), kept: map[store.Handle][]byte{}}
}

func (s *sharesBuffer) Put(ctx context.Context, h store.Handle, data []byte) error {
	if err := s.Storage.Put(ctx, h, data); err != nil {
		return err
	}
	s.mu.Lock()
	s.kept[h] = data
	s.mu.Unlock()
	return nil
}

func (s *sharesBuffer) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	s.mu.Lock()
	b, ok := s.kept[h]
	s.mu.Unlock()
	if ok && off == 0 && n < 0 {
		return b, nil
	}
	return s.Storage.Get(ctx, h, off, n)
}

type truncatesLarge struct{ store.Storage }

func (s *truncatesLarge) Put(ctx context.Context, h store.Handle, data []byte) error {
	return s.Storage.Put(ctx, h, data[:min(len(data), 8<<20)])
}

type firstWriteOnly struct{ store.Storage }

func (s *firstWriteOnly) NewTemp(ctx context.Context) (store.TempObject, error) {
	tmp, err := s.Storage.NewTemp(ctx)
	return &firstWrite{TempObject: tmp}, err
}

type firstWrite struct {
	store.TempObject
	wrote bool
}

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.wrote {
		return len(p), nil
	}
	w.wrote = len(p) > 0
	return w.TempObject.Write(p)
}

type featureLiar struct{ store.Storage }

func (s *featureLiar) Features() store.Features {
	f := s.Storage.Features()
	f.Temp = false
	return f
}

// noFeatures is a sound storage with neither temp objects nor
// conditional writes.
type noFeatures struct{ store.Storage }

func (s *noFeatures) Features() store.Features { return store.Features{} }
func (s *noFeatures) NewTemp(context.Context) (store.TempObject, error) {
	return nil, store.ErrNotSupported
}
func (s *noFeatures) GetVersion(context.Context, store.Handle) ([]byte, store.Version, error) {
	return nil, "", store.ErrNotSupported
}
func (s *noFeatures) PutIf(context.Context, store.Handle, []byte, store.Version) error {
	return store.ErrNotSupported
}
