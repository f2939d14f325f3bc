package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/diskcache"
	"github.com/coffer-backup/coffer/engine/store/faults"
	"github.com/coffer-backup/coffer/engine/store/storetest"
)

// LockingMemory with no policy is a Storage like the others.
func TestLockingMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Storage { return store.NewLockingMemory() })
}

// RetainerOf finds the Retainer through the decorators, and none where
// no layer locks.
func TestRetainerOf(t *testing.T) {
	m := store.NewLockingMemory()
	for _, st := range []store.Storage{m, diskcache.New(m), faults.New(diskcache.New(m), faults.Config{})} {
		if r, ok := store.RetainerOf(st); !ok || r != store.Retainer(m) {
			t.Errorf("RetainerOf(%T) = %v, %v", st, r, ok)
		}
	}
	if r, ok := store.RetainerOf(diskcache.New(store.NewMemory())); ok {
		t.Errorf("RetainerOf a memory store = %v", r)
	}
}

func TestParseRetentionMode(t *testing.T) {
	for in, want := range map[string]store.RetentionMode{"governance": store.Governance, "COMPLIANCE": store.Compliance, "Governance": store.Governance} {
		if got, err := store.ParseRetentionMode(in); err != nil || got != want {
			t.Errorf("ParseRetentionMode(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "legal-hold", "gov"} {
		if _, err := store.ParseRetentionMode(in); err == nil {
			t.Errorf("ParseRetentionMode(%q) accepted", in)
		}
	}
}

// A locked object's Delete fails with a permanent *LockedError that
// names it and the date, changes nothing, and works once the date has
// passed; the lock (config, packs, index, snapshots, not locks) follows
// the policy; ExtendRetention lengthens and never shortens.
func TestLockingMemoryLocks(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	m := store.NewLockingMemory()
	m.Now = func() time.Time { return now }
	m.SetRetention(store.RetentionPolicy{Mode: store.Governance, Days: 2})
	snap := store.Handle{Kind: store.KindSnapshot, Name: strings.Repeat("ab", 32)}
	lock := store.Handle{Kind: store.KindLock, Name: "prune"}
	for _, h := range []store.Handle{snap, lock} {
		if err := m.Put(ctx, h, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Delete(ctx, lock); err != nil {
		t.Fatalf("a lock object is locked: %v", err)
	}
	err := m.Delete(ctx, snap)
	var le *store.LockedError
	if !errors.As(err, &le) || !errors.Is(err, store.ErrLocked) || !store.IsPermanent(err) || le.Handle != snap {
		t.Fatalf("Delete of a locked snapshot: %v", err)
	}
	want := "snapshots/" + snap.Name + " is locked until 2026-11-30 10:00 UTC (object lock, governance); it can be deleted after that"
	if err.Error() != want {
		t.Errorf("message:\n%s\nwant\n%s", err, want)
	}
	if _, err := m.Stat(ctx, snap); err != nil {
		t.Fatalf("a refused Delete removed the object: %v", err)
	}
	later := now.Add(5 * 24 * time.Hour)
	if moved, err := m.ExtendRetention(ctx, snap, later); err != nil || !moved {
		t.Fatalf("ExtendRetention to a later date: moved %v, %v", moved, err)
	}
	if moved, err := m.ExtendRetention(ctx, snap, now.Add(time.Hour)); err != nil || moved {
		t.Fatalf("ExtendRetention to an earlier date: moved %v, %v", moved, err)
	}
	if r, err := m.Retention(ctx, snap); err != nil || !r.Until.Equal(later) || r.Mode != store.Governance {
		t.Fatalf("Retention after extending = %+v, %v", r, err)
	}
	now = later.Add(-time.Second)
	if err := m.Delete(ctx, snap); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Delete a second before the date: %v", err)
	}
	now = later
	if err := m.Delete(ctx, snap); err != nil {
		t.Fatalf("Delete once the date passed: %v", err)
	}
	if _, err := m.ExtendRetention(ctx, snap, later); !store.IsNotFound(err) {
		t.Errorf("ExtendRetention of a missing object: %v", err)
	}
}
