package object

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// levels is a tree of folders, 3 levels of fan folders under "", that
// counts its listings and how many run at once.
type levels struct {
	fan                  int
	delay                time.Duration
	running, peak, lists atomic.Int32
	mu                   sync.Mutex
	per                  map[string]int
}

func (v *levels) list(ctx context.Context, prefix string) (LivePage, error) {
	n := v.running.Add(1)
	defer v.running.Add(-1)
	for p := v.peak.Load(); n > p && !v.peak.CompareAndSwap(p, n); p = v.peak.Load() {
	}
	v.lists.Add(1)
	v.mu.Lock()
	v.per[prefix]++
	v.mu.Unlock()
	time.Sleep(v.delay)
	var pg LivePage
	depth := 0
	for _, c := range prefix {
		if c == '/' {
			depth++
		}
	}
	for i := 0; i < v.fan; i++ {
		pg.Entries = append(pg.Entries, LiveEntry{Name: fmt.Sprintf("f%d", i), Size: 1})
		if depth < 3 {
			pg.Entries = append(pg.Entries, LiveEntry{Name: fmt.Sprintf("d%d", i), Dir: true})
		}
	}
	return pg, nil
}

// walk lists the tree depth first, one level after the other, as find
// does, through a (or directly when a is nil); it returns the folders.
func walk(t *testing.T, v *levels, a *LevelsAhead, prefix string) int {
	var pg LivePage
	ok := false
	if a != nil {
		pg, ok = a.Take(context.Background(), prefix)
	}
	if !ok {
		var err error
		if pg, err = v.list(context.Background(), prefix); err != nil {
			t.Fatal(err)
		}
	}
	if a != nil {
		a.Listed(prefix, pg)
	}
	n := 1
	for _, e := range pg.Entries {
		if e.Dir {
			n += walk(t, v, a, prefix+e.Name+"/")
		}
	}
	return n
}

// TestLevelsAhead: a walk through LevelsAhead lists each folder once,
// several at once (at most the bound), and sees the same tree; a
// listing older than maxAge is not used.
func TestLevelsAhead(t *testing.T) {
	v := &levels{fan: 4, delay: 2 * time.Millisecond, per: map[string]int{}}
	want := walk(t, v, nil, "")
	serial := v.lists.Load()
	if v.peak.Load() != 1 {
		t.Fatal("the plain walk listed in parallel")
	}
	v.lists.Store(0)
	v.peak.Store(0)
	clear(v.per)
	a := NewLevelsAhead(v.list, 3, 256, time.Minute)
	if got := walk(t, v, a, ""); got != want {
		t.Fatalf("walked %d folders ahead, %d plainly", got, want)
	}
	for a.pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	if l := v.lists.Load(); l != serial {
		t.Fatalf("%d lists with listing ahead, %d without", l, serial)
	}
	for p, n := range v.per {
		if n != 1 {
			t.Fatalf("%q listed %d times", p, n)
		}
	}
	if p := v.peak.Load(); p < 2 || p > 3+1 {
		t.Fatalf("%d lists at once, want 2 to 4 (3 ahead and the walker's)", p)
	}
	// A plain listing of one level lists nothing ahead; a listing of one
	// of its folders then lists ahead the other folders of both levels
	// (not the one the walker listed).
	v.lists.Store(0)
	clear(v.per)
	ls := NewLevelsAhead(v.list, 3, 256, time.Minute)
	root, _ := v.list(context.Background(), "")
	ls.Listed("", root)
	time.Sleep(20 * time.Millisecond)
	if n := ls.pending() + int(v.lists.Load()); n != 1 {
		t.Fatalf("a plain listing of one level made %d more listings", n-1)
	}
	d1, _ := v.list(context.Background(), "d1/")
	ls.Listed("d1/", d1)
	for ls.pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	if got, want := int(v.lists.Load()), 2+(v.fan-1)+v.fan; got != want || v.per["d1/"] != 1 || v.per["d0/"] != 1 || v.per["d1/d3/"] != 1 {
		t.Fatalf("after descending into d1/: %d listings (%v), want %d", got, v.per, want)
	}
	// Too old: listed again by the walker.
	old := NewLevelsAhead(v.list, 3, 256, time.Nanosecond)
	v.lists.Store(0)
	old.Queue("", LivePage{Entries: []LiveEntry{{Name: "d0", Dir: true}}})
	for old.pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	if _, ok := old.Take(context.Background(), "d0/"); ok {
		t.Fatal("a listing older than maxAge was used")
	}
	// Peek: a done, fresh listing answers without being taken; none is
	// there for a level not listed ahead.
	peek := NewLevelsAhead(v.list, 2, 256, time.Minute)
	peek.Queue("", LivePage{Entries: []LiveEntry{{Name: "d1", Dir: true}}})
	for peek.pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	if pg, ok := peek.Peek("d1/"); !ok || len(pg.Entries) != 2*v.fan {
		t.Fatalf("peek of a level listed ahead: %v, %d entries", ok, len(pg.Entries))
	}
	if _, ok := peek.Take(context.Background(), "d1/"); !ok {
		t.Fatal("a peek took the listing")
	}
	if _, ok := peek.Peek("d2/"); ok {
		t.Fatal("peek of a level not listed ahead")
	}
	// The bound on what is held.
	small := NewLevelsAhead(v.list, 1, 2, time.Minute)
	pg, _ := v.list(context.Background(), "")
	small.Queue("", pg)
	small.mu.Lock()
	if n := len(small.held); n != 2 {
		t.Fatalf("%d listings held or coming, bound 2", n)
	}
	small.mu.Unlock()
}

// pending counts the listings ahead not done yet.
func (a *LevelsAhead) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, l := range a.held {
		select {
		case <-l.done:
		default:
			n++
		}
	}
	return n
}
