// Package lease owns the concurrency protocol's objects under locks/
// (docs/FORMAT.md §9): the markers that backups leave while they run,
// the one exclusive prune lock, and how a stale one is recognised. Each
// is a small sealed record (it names hosts and users) that its owner
// refreshes while it runs and that expires when it stops doing so.
//
// Nothing here decides what a marker protects: engine.Prune reads them.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"
)

// Kinds of records under locks/.
const (
	KindBackup = "backup" // a backup in progress: protects what it may reference
	KindPrune  = "prune"  // the one prune at a time
)

// PruneName is the name of the exclusive prune lock; PendingName is the
// prune's sealed list of deletion candidates (not a lock: unlock leaves
// it). Markers are named <kind>-<16 random hex digits>.
const (
	PruneName   = "prune"
	PendingName = "prune-pending"
)

// DefaultDuration is how long a record stays valid after a refresh; its
// owner refreshes it every third of that.
const DefaultDuration = 15 * time.Minute

// Skew is how long past its expiry (by the reader's clock) a record is
// still honoured, for clocks that disagree between hosts.
const Skew = 5 * time.Minute

// ErrLapsed says a record's owner let it expire (a paused process, a
// sleeping laptop, a store it could not reach): what it protected may
// be gone.
var ErrLapsed = errors.New("lock lapsed")

// Record is what a marker or lock holds.
type Record struct {
	Kind      string    `json:"kind"`
	Host      string    `json:"host"`
	User      string    `json:"user,omitempty"`
	PID       int       `json:"pid"`
	Command   string    `json:"command,omitempty"`
	Start     time.Time `json:"start"`
	Refreshed time.Time `json:"refreshed"`
	Expires   time.Time `json:"expires"`
}

// Owner describes who holds r, for messages.
// The prune lock's holder is named by its command ("prune", "repair
// index"), a marker by its kind.
func (r Record) Owner() string {
	what := r.Kind
	if r.Kind == KindPrune && r.Command != "" {
		what = r.Command
	}
	who := fmt.Sprintf("%s on %s (pid %d", what, r.Host, r.PID)
	if r.User != "" {
		who += ", user " + r.User
	}
	return who + ", started " + r.Start.Local().Format(time.RFC3339) + ")"
}

// Stale reports whether r no longer protects anything at now: it
// expired more than Skew ago, or it belongs to a process of this host
// that no longer runs.
func (r Record) Stale(now time.Time) bool {
	if now.After(r.Expires.Add(Skew)) {
		return true
	}
	return r.Host == hostname() && r.PID > 0 && !processAlive(r.PID)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func lockHandle(name string) store.Handle { return store.Handle{Kind: store.KindLock, Name: name} }

func aad(name string) []byte { return []byte("coffer lock v1\x00" + name) }

func seal(keys *crypto.Keys, name string, r Record) []byte {
	b, _ := json.Marshal(r)
	return keys.Seal(nil, b, aad(name))
}

func open(keys *crypto.Keys, name string, data []byte) (Record, error) {
	var r Record
	p, err := keys.Open(nil, data, aad(name))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(p, &r); err != nil {
		return r, fmt.Errorf("lock %s: %w", name, err)
	}
	return r, nil
}

// Options tune a lease.
type Options struct {
	Duration time.Duration // DefaultDuration when 0
	Command  string        // what runs, for messages
	Host     string        // os.Hostname() when ""
}

// Lease is a held record: a backup's marker or the prune lock.
type Lease struct {
	st   store.Storage
	keys *crypto.Keys
	h    store.Handle
	dur  time.Duration

	mu      sync.Mutex
	rec     Record
	ver     store.Version
	lapsed  error
	stop    chan struct{}
	stopped chan struct{}
}

func newRecord(kind string, opt Options) Record {
	now := time.Now()
	r := Record{Kind: kind, Host: opt.Host, PID: os.Getpid(), Command: opt.Command, Start: now, Refreshed: now, Expires: now.Add(opt.Duration)}
	if r.Host == "" {
		r.Host = hostname()
	}
	if u, err := user.Current(); err == nil {
		r.User = u.Username
	}
	return r
}

func defaults(opt *Options) {
	if opt.Duration <= 0 {
		opt.Duration = DefaultDuration
	}
}

// Mark writes a new marker of kind (KindBackup) under a random name and
// keeps it refreshed until Release.
func Mark(ctx context.Context, st store.Storage, keys *crypto.Keys, kind string, opt Options) (*Lease, error) {
	defaults(&opt)
	var rnd [8]byte
	rand.Read(rnd[:])
	l := &Lease{st: st, keys: keys, h: store.Handle{Kind: store.KindLock, Name: kind + "-" + hex.EncodeToString(rnd[:])}, dur: opt.Duration, rec: newRecord(kind, opt)}
	if err := l.write(ctx, ""); err != nil {
		return nil, fmt.Errorf("writing the %s marker %s: %w", kind, l.h, err)
	}
	l.keep()
	return l, nil
}

// HeldError says the exclusive lock is held by someone else.
type HeldError struct {
	Name   string
	Record Record
	Err    error // the record could not be read (it is then held by "someone")
}

func (e *HeldError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s exists and cannot be read (%v): another coffer holds it, or it is damaged (coffer unlock --force removes it)", lockHandle(e.Name), e.Err)
	}
	return fmt.Sprintf("%s is held by %s until %s; wait for it to finish, or if it is dead run coffer unlock",
		lockHandle(e.Name), e.Record.Owner(), e.Record.Expires.Local().Format(time.RFC3339))
}

// Exclusive takes the lock name (PruneName) with a conditional write: it
// creates it if absent, or replaces a stale one (Record.Stale) only if
// it is still the version it read. Anything else fails with a
// *HeldError naming the holder.
func Exclusive(ctx context.Context, st store.Storage, keys *crypto.Keys, name string, opt Options) (*Lease, error) {
	defaults(&opt)
	l := &Lease{st: st, keys: keys, h: store.Handle{Kind: store.KindLock, Name: name}, dur: opt.Duration, rec: newRecord(name, opt)}
	err := l.write(ctx, "")
	if errors.Is(err, store.ErrPreconditionFailed) {
		data, v, gerr := st.GetVersion(ctx, l.h)
		if store.IsNotFound(gerr) {
			err = l.write(ctx, "") // released meanwhile
		} else if gerr != nil {
			return nil, fmt.Errorf("reading %s: %w", l.h, gerr)
		} else {
			rec, oerr := open(keys, name, data)
			if oerr != nil {
				return nil, &HeldError{Name: name, Err: oerr}
			}
			if !rec.Stale(time.Now()) {
				return nil, &HeldError{Name: name, Record: rec}
			}
			err = l.write(ctx, v)
		}
		if errors.Is(err, store.ErrPreconditionFailed) {
			return nil, fmt.Errorf("%s was taken by another coffer at the same moment: %w", l.h, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("taking %s: %w", l.h, err)
	}
	l.keep()
	return l, nil
}

// write stores l.rec if the object's version is v ("" = absent), and
// learns the new version.
func (l *Lease) write(ctx context.Context, v store.Version) error {
	data := seal(l.keys, l.h.Name, l.rec)
	if !l.st.Features().Conditional {
		if l.rec.Kind != KindBackup {
			return fmt.Errorf("%s cannot be held on %s: it has no conditional writes", l.h, l.st.Location())
		}
		// A marker's name is random: only its owner writes it.
		return l.st.Put(ctx, l.h, data)
	}
	if err := l.st.PutIf(ctx, l.h, data, v); err != nil {
		return err
	}
	got, nv, err := l.st.GetVersion(ctx, l.h)
	if err != nil {
		return err
	}
	if string(got) != string(data) {
		return fmt.Errorf("%s was replaced right after it was written: %w", l.h, store.ErrPreconditionFailed)
	}
	l.ver = nv
	return nil
}

// Name is the record's object name under locks/.
func (l *Lease) Name() string { return l.h.Name }

// Record returns the record as last written.
func (l *Lease) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// Refresh extends the record. Once the record has expired it fails with
// ErrLapsed, for good: what it protected may be gone. A record replaced
// or removed by someone else (unlock --force, a takeover) also lapses.
func (l *Lease) Refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lapsed != nil {
		return l.lapsed
	}
	now := time.Now()
	if !now.Before(l.rec.Expires) {
		l.lapsed = fmt.Errorf("%s expired at %s before it could be refreshed: %w", l.h, l.rec.Expires.Local().Format(time.RFC3339), ErrLapsed)
		return l.lapsed
	}
	old := l.rec
	l.rec.Refreshed, l.rec.Expires = now, now.Add(l.dur)
	if err := l.write(ctx, l.ver); err != nil {
		l.rec = old
		if errors.Is(err, store.ErrPreconditionFailed) {
			l.lapsed = fmt.Errorf("%s was removed or replaced by another coffer (coffer unlock?): %w", l.h, ErrLapsed)
			return l.lapsed
		}
		return err // try again at the next tick
	}
	return nil
}

// Check fails with ErrLapsed unless the record is valid for at least a
// third of its duration more: a backup calls it just before it writes its
// snapshot, so the snapshot is durable before anyone may call the
// record stale.
func (l *Lease) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lapsed != nil {
		return l.lapsed
	}
	if time.Now().After(l.rec.Expires.Add(-l.dur / 3)) {
		return fmt.Errorf("%s was last refreshed at %s and is about to expire: %w", l.h, l.rec.Refreshed.Local().Format(time.RFC3339), ErrLapsed)
	}
	return nil
}

// keep refreshes the record every third of its duration until Release.
func (l *Lease) keep() {
	l.stop, l.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.stopped)
		t := time.NewTicker(l.dur / 3)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), l.dur/3)
				err := l.Refresh(ctx)
				cancel()
				if errors.Is(err, ErrLapsed) {
					return
				}
			}
		}
	}()
}

// Release stops refreshing and deletes the record (unless another coffer
// took it over meanwhile).
func (l *Lease) Release(ctx context.Context) error {
	if l.stop != nil {
		close(l.stop)
		<-l.stopped
		l.stop = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lapsed != nil && errors.Is(l.lapsed, ErrLapsed) {
		// Perhaps replaced: delete only if it is still ours.
		data, _, err := l.st.GetVersion(ctx, l.h)
		if err != nil || string(data) != string(seal(l.keys, l.h.Name, l.rec)) {
			return nil
		}
	}
	return l.st.Delete(ctx, l.h)
}

// Info is one record found under locks/.
type Info struct {
	Name   string
	Record Record
	Err    error // unreadable: damaged, or sealed with another key
}

// Stale reports whether the record no longer protects anything; an
// unreadable one always does (only --force removes it).
func (i Info) Stale(now time.Time) bool { return i.Err == nil && i.Record.Stale(now) }

// List reads every marker and lock under locks/ (not PendingName),
// sorted by name.
func List(ctx context.Context, st store.Storage, keys *crypto.Keys) ([]Info, error) {
	var names []string
	err := st.List(ctx, store.KindLock, func(o store.ObjectInfo) error {
		if o.Handle.Name != PendingName {
			names = append(names, o.Handle.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Info
	for _, n := range names {
		data, err := st.Get(ctx, store.Handle{Kind: store.KindLock, Name: n}, 0, -1)
		if store.IsNotFound(err) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, err
		}
		rec, err := open(keys, n, data)
		out = append(out, Info{Name: n, Record: rec, Err: err})
	}
	return out, nil
}

// IsMarker reports whether name is a marker of kind.
func IsMarker(name, kind string) bool { return strings.HasPrefix(name, kind+"-") }

// Put writes r under locks/name as it is, unconditionally: for tests
// that need a record another host or a dead process left.
func Put(ctx context.Context, st store.Storage, keys *crypto.Keys, name string, r Record) error {
	return st.Put(ctx, store.Handle{Kind: store.KindLock, Name: name}, seal(keys, name, r))
}
