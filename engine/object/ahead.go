package object

import (
	"context"
	"strings"
	"sync"
	"time"
)

// LevelsAhead lists the folders of a level before they are asked for,
// once a walk is seen: when a level is listed that is a folder of a
// level listed a moment before (the walker descends), the first page of
// each folder of both is fetched in the background, a bounded number at
// once, and kept a short while for the List that comes for it. A walk
// (find, ls -R) then waits for listings that are already coming instead
// of sending one request after the other as it descends, while a plain
// listing of one folder (ls) costs no more than its own. Safe for
// concurrent use.
type LevelsAhead struct {
	list   func(ctx context.Context, prefix string) (LivePage, error)
	maxAge time.Duration
	max    int
	sem    chan struct{}

	mu     sync.Mutex
	held   map[string]*aheadList
	listed map[string]listedLevel // levels listed lately, by prefix
}

// listedLevel is a level listed lately: when, and its first folders.
type listedLevel struct {
	at   time.Time
	dirs LivePage // its folders, at most maxRemembered
}

// maxRemembered bounds the levels LevelsAhead remembers, and the folders
// of each.
const maxRemembered = 1024

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
		held: map[string]*aheadList{}, listed: map[string]listedLevel{}}
}

// Listed records that the level under prefix was listed, pg its first
// page, and, when its parent level was listed within maxAge (a walk
// descends), lists ahead the folders of both that are neither listed
// lately, nor held, nor coming.
func (a *LevelsAhead) Listed(prefix string, pg LivePage) {
	var dirs LivePage
	for _, e := range pg.Entries {
		if e.Dir && len(dirs.Entries) < maxRemembered {
			dirs.Entries = append(dirs.Entries, LiveEntry{Name: e.Name, Dir: true})
		}
	}
	a.mu.Lock()
	if len(a.listed) >= maxRemembered {
		for p, l := range a.listed {
			if time.Since(l.at) > a.maxAge {
				delete(a.listed, p)
			}
		}
	}
	if len(a.listed) < maxRemembered {
		a.listed[prefix] = listedLevel{at: time.Now(), dirs: dirs}
	}
	parent, ok := parentLevel(prefix)
	up, descended := a.listed[parent]
	descended = ok && descended && time.Since(up.at) <= a.maxAge
	a.mu.Unlock()
	if descended {
		a.Queue(parent, up.dirs)
		a.Queue(prefix, dirs)
	}
}

// parentLevel returns the level above prefix ("" for the top level's
// folders); ok is false for the top level.
func parentLevel(prefix string) (string, bool) {
	if prefix == "" {
		return "", false
	}
	i := strings.LastIndexByte(prefix[:len(prefix)-1], '/')
	return prefix[:i+1], true
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
		if l, ok := a.listed[p]; ok && time.Since(l.at) <= a.maxAge {
			continue // listed lately: by the walker, or taken
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
