package object

import (
	"context"
	"sync"
	"time"
)

// LevelsAhead lists the folders of a level before they are asked for:
// when a level is listed, the first page of each of its folders is
// fetched in the background, a bounded number at once, and kept a short
// while for the List that comes for it. A walk (find, ls -R) then waits
// for listings that are already coming instead of sending one request
// after the other as it descends. Safe for concurrent use.
type LevelsAhead struct {
	list   func(ctx context.Context, prefix string) (LivePage, error)
	maxAge time.Duration
	max    int
	sem    chan struct{}

	mu   sync.Mutex
	held map[string]*aheadList
}

type aheadList struct {
	started bool
	done    chan struct{}
	pg      LivePage
	err     error
	at      time.Time // when it was listed
}

// NewLevelsAhead returns listings ahead made with list (the first page
// of a level), at most parallel at once, each kept at most maxAge, and
// at most max of them held or coming.
func NewLevelsAhead(list func(ctx context.Context, prefix string) (LivePage, error), parallel, limit int, maxAge time.Duration) *LevelsAhead {
	return &LevelsAhead{list: list, maxAge: maxAge, max: limit, sem: make(chan struct{}, max(parallel, 1)),
		held: map[string]*aheadList{}}
}

// Take returns the first page of the level under prefix if it was
// listed ahead, or is being listed (then it waits for it), and forgets
// it; ok is false if there is none (not queued, not started yet, failed
// or too old): the caller lists it itself.
func (a *LevelsAhead) Take(ctx context.Context, prefix string) (pg LivePage, ok bool) {
	a.mu.Lock()
	l := a.held[prefix]
	delete(a.held, prefix)
	started := l != nil && l.started
	a.mu.Unlock()
	if !started {
		return LivePage{}, false // one not started is dropped: its turn does nothing
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return LivePage{}, false
	}
	if l.err != nil || time.Since(l.at) > a.maxAge {
		return LivePage{}, false
	}
	return l.pg, true
}

// Peek returns the whole level under prefix if a listing ahead of it
// is done, fresh and complete (one page), without taking it: a lookup
// of one name in it costs no request.
func (a *LevelsAhead) Peek(prefix string) (LivePage, bool) {
	a.mu.Lock()
	l := a.held[prefix]
	started := l != nil && l.started
	a.mu.Unlock()
	if !started {
		return LivePage{}, false
	}
	select {
	case <-l.done:
	default:
		return LivePage{}, false
	}
	if l.err != nil || l.pg.Next != "" || time.Since(l.at) > a.maxAge {
		return LivePage{}, false
	}
	return l.pg, true
}

// Queue lists ahead the levels of the folders of pg, a page of the
// level under prefix, that are not held or coming, as far as the bound
// allows.
func (a *LevelsAhead) Queue(prefix string, pg LivePage) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range pg.Entries {
		if !e.Dir {
			continue
		}
		p := prefix + e.Name + "/"
		if a.held[p] != nil {
			continue
		}
		if len(a.held) >= a.max {
			a.sweepLocked()
			if len(a.held) >= a.max {
				return
			}
		}
		l := &aheadList{done: make(chan struct{})}
		a.held[p] = l
		go a.run(p, l)
	}
}

// sweepLocked forgets the listings done and too old to be used.
func (a *LevelsAhead) sweepLocked() {
	for p, l := range a.held {
		select {
		case <-l.done:
			if l.err != nil || time.Since(l.at) > a.maxAge {
				delete(a.held, p)
			}
		default:
		}
	}
}

func (a *LevelsAhead) run(prefix string, l *aheadList) {
	a.sem <- struct{}{}
	defer func() { <-a.sem }()
	a.mu.Lock()
	if a.held[prefix] != l {
		a.mu.Unlock()
		return // taken before its turn: the taker listed it
	}
	l.started = true
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.pg, l.err = a.list(ctx, prefix)
	l.at = time.Now()
	close(l.done)
}
