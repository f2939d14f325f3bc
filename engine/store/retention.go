package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RetentionMode is how strictly a storage holds a locked object (S3
// Object Lock's two modes).
type RetentionMode string

const (
	// Governance: nobody deletes or shortens the lock, except a user
	// allowed to bypass governance retention (s3:BypassGovernanceRetention).
	Governance RetentionMode = "governance"
	// Compliance: nobody at all, not even the account's root user, until
	// the date passes.
	Compliance RetentionMode = "compliance"
)

// ParseRetentionMode reads "governance" or "compliance" (any case).
func ParseRetentionMode(s string) (RetentionMode, error) {
	switch m := RetentionMode(strings.ToLower(s)); m {
	case Governance, Compliance:
		return m, nil
	}
	return "", fmt.Errorf("object lock mode %q: want governance or compliance", s)
}

// RetentionPolicy says how long every object written is locked: Days
// from the time of its write, in Mode.
type RetentionPolicy struct {
	Mode RetentionMode
	Days int
}

// Until is the retain-until date of an object written at now.
func (p RetentionPolicy) Until(now time.Time) time.Time {
	return now.Add(time.Duration(p.Days) * 24 * time.Hour)
}

// Locks reports whether the policy locks objects of kind k: everything
// the store keeps (the config, packs, index files, snapshots), not the
// locks that clients take and drop.
func (p RetentionPolicy) Locks(k Kind) bool { return p.Days > 0 && k != KindLock }

// Retention is one object's lock. The zero value means not locked.
type Retention struct {
	Mode  RetentionMode
	Until time.Time
}

// LockedAt reports whether the object cannot be deleted at now.
func (r Retention) LockedAt(now time.Time) bool { return !r.Until.IsZero() && now.Before(r.Until) }

// Retainer is the optional capability of a storage that can lock objects
// against deletion until a date (S3 Object Lock). Find it with
// RetainerOf, which looks through decorators.
//
// A Retainer's Delete of an object still locked fails with a
// *LockedError (errors.Is(err, ErrLocked)) and changes nothing: it never
// hides a locked object behind a delete marker.
type Retainer interface {
	// CheckRetention reports whether the storage can lock objects by p
	// (for S3: the bucket has Object Lock enabled); its error says what
	// to do otherwise.
	CheckRetention(ctx context.Context, p RetentionPolicy) error

	// SetRetention makes every later Put and PutIf of a kind p.Locks
	// lock its object until p.Until(time of the write). The zero policy
	// turns locking off. It does no I/O.
	SetRetention(p RetentionPolicy)

	// Retention returns h's current lock: the zero Retention when h has
	// none, an error wrapping ErrNotFound when h does not exist.
	Retention(ctx context.Context, h Handle) (Retention, error)

	// ExtendRetention moves h's lock to until, in the storage's policy
	// mode (or h's own mode when it has one), and reports whether it
	// moved it. A lock is never shortened: when h is already locked until
	// until or later, it does nothing (and returns false). An error wraps
	// ErrNotFound when h does not exist.
	ExtendRetention(ctx context.Context, h Handle, until time.Time) (bool, error)
}

// RetainerOf returns the Retainer of st or of what its decorators wrap
// (Unwrap), and false when no layer can lock objects. Decorators pass
// retention through this way, as they pass Features: it always reaches
// the storage that holds the objects.
func RetainerOf(st Storage) (Retainer, bool) {
	for st != nil {
		if r, ok := st.(Retainer); ok {
			return r, true
		}
		w, ok := st.(Wrapper)
		if !ok {
			return nil, false
		}
		st = w.Unwrap()
	}
	return nil, false
}

// ErrLocked is wrapped by the errors of a Delete refused because the
// object is locked (see LockedError).
var ErrLocked = errors.New("the object is locked")

// LockedError is a Delete refused because the object is locked until a
// date. Match it with errors.Is(err, ErrLocked), or errors.As to read
// the handle and the date. It is permanent: retrying before Until fails
// the same way.
type LockedError struct {
	Handle Handle
	Retention
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is locked until %s (object lock, %s); it can be deleted after that",
		e.Handle, e.Until.UTC().Format("2006-01-02 15:04 UTC"), e.Mode)
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }
