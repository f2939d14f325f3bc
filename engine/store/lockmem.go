package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// LockingMemory is a Memory that locks objects as S3 Object Lock does,
// for tests of code that meets locked objects (prune): a Retainer whose
// Put and PutIf lock the kinds its policy locks, whose Delete of an
// object still locked fails with a *LockedError, and whose clock a test
// sets. Like S3 it has no temp objects.
type LockingMemory struct {
	*Memory
	mu     sync.Mutex
	policy RetentionPolicy
	locks  map[Handle]Retention
	// Now is the clock of the writes' dates and of Delete's check;
	// time.Now when nil. Set it before use.
	Now func() time.Time
	// CheckErr, when set, is what CheckRetention returns (a bucket
	// without Object Lock).
	CheckErr error
}

var (
	_ Storage  = (*LockingMemory)(nil)
	_ Retainer = (*LockingMemory)(nil)
)

// NewLockingMemory returns an empty locking store in memory with no
// policy (SetRetention sets one).
func NewLockingMemory() *LockingMemory {
	return &LockingMemory{Memory: NewMemory(), locks: map[Handle]Retention{}}
}

func (m *LockingMemory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *LockingMemory) Location() string { return "locking memory" }

// Features: no temp objects, as on S3.
func (m *LockingMemory) Features() Features { return Features{Conditional: true} }

func (m *LockingMemory) NewTemp(ctx context.Context) (TempObject, error) {
	return nil, fmt.Errorf("locking memory: temp objects: %w", ErrNotSupported)
}

// lock records the lock of a write of h that just succeeded.
func (m *LockingMemory) lock(h Handle) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.policy.Locks(h.Kind) {
		until := m.policy.Until(m.now())
		if cur := m.locks[h]; cur.Until.After(until) {
			until = cur.Until // a new version does not shorten the old one's lock
		}
		m.locks[h] = Retention{Mode: m.policy.Mode, Until: until}
	}
}

func (m *LockingMemory) Put(ctx context.Context, h Handle, data []byte) error {
	if err := m.Memory.Put(ctx, h, data); err != nil {
		return err
	}
	m.lock(h)
	return nil
}

func (m *LockingMemory) PutIf(ctx context.Context, h Handle, data []byte, v Version) error {
	if err := m.Memory.PutIf(ctx, h, data, v); err != nil {
		return err
	}
	m.lock(h)
	return nil
}

func (m *LockingMemory) Delete(ctx context.Context, h Handle) error {
	m.mu.Lock()
	r := m.locks[h]
	m.mu.Unlock()
	if r.LockedAt(m.now()) {
		if _, err := m.Memory.Stat(ctx, h); err == nil {
			return &LockedError{Handle: h, Retention: r}
		}
	}
	if err := m.Memory.Delete(ctx, h); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.locks, h)
	m.mu.Unlock()
	return nil
}

func (m *LockingMemory) CheckRetention(ctx context.Context, p RetentionPolicy) error {
	if p.Days <= 0 {
		return fmt.Errorf("object lock of %d days: want at least 1", p.Days)
	}
	return m.CheckErr
}

func (m *LockingMemory) SetRetention(p RetentionPolicy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.policy = p
}

func (m *LockingMemory) Retention(ctx context.Context, h Handle) (Retention, error) {
	if _, err := m.Memory.Stat(ctx, h); err != nil {
		return Retention{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.locks[h], nil
}

func (m *LockingMemory) ExtendRetention(ctx context.Context, h Handle, until time.Time) (bool, error) {
	if _, err := m.Memory.Stat(ctx, h); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.locks[h]
	if !cur.Until.Before(until) {
		return false, nil
	}
	if cur.Mode == "" {
		cur.Mode = m.policy.Mode
	}
	if cur.Mode == "" {
		cur.Mode = Governance
	}
	cur.Until = until
	m.locks[h] = cur
	return true, nil
}
