package lease

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"
)

func testKeys(t *testing.T) *crypto.Keys {
	t.Helper()
	k, err := crypto.DeriveKeys(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// put writes a record as another coffer would have.
func put(t *testing.T, st store.Storage, keys *crypto.Keys, name string, r Record) {
	t.Helper()
	if err := st.Put(context.Background(), store.Handle{Kind: store.KindLock, Name: name}, seal(keys, name, r)); err != nil {
		t.Fatal(err)
	}
}

// TestExclusive: a live lock refuses a second taker and names its
// holder; a lock of a dead process of this host, or one expired past
// the skew, is taken over; an unreadable one is never.
func TestExclusive(t *testing.T) {
	ctx := context.Background()
	for _, st := range []store.Storage{store.NewMemory(), mustFolder(t)} {
		keys := testKeys(t)
		l, err := Exclusive(ctx, st, keys, PruneName, Options{Command: "prune"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Exclusive(ctx, st, keys, PruneName, Options{})
		var held *HeldError
		if !errors.As(err, &held) || held.Record.PID != l.Record().PID || !strings.Contains(err.Error(), "held by prune on ") {
			t.Fatalf("second taker: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		put(t, st, keys, PruneName, Record{Kind: "prune", Host: hostname(), PID: deadPID(t), Start: now, Refreshed: now, Expires: now.Add(time.Hour)})
		l2, err := Exclusive(ctx, st, keys, PruneName, Options{})
		if err != nil {
			t.Fatalf("taking over a dead process's lock: %v", err)
		}
		l2.Release(ctx)
		put(t, st, keys, PruneName, Record{Kind: "prune", Host: "elsewhere", PID: 1, Start: now.Add(-time.Hour), Expires: now.Add(-Skew - time.Second)})
		l3, err := Exclusive(ctx, st, keys, PruneName, Options{})
		if err != nil {
			t.Fatalf("taking over an expired lock: %v", err)
		}
		l3.Release(ctx)
		put(t, st, keys, PruneName, Record{Kind: "prune", Host: "elsewhere", PID: 1, Start: now, Expires: now.Add(-time.Second)})
		if _, err := Exclusive(ctx, st, keys, PruneName, Options{}); !errors.As(err, &held) {
			t.Fatalf("a lock expired less than the skew ago was taken: %v", err)
		}
		st.Put(ctx, store.Handle{Kind: store.KindLock, Name: PruneName}, []byte("garbage that does not open"))
		if _, err := Exclusive(ctx, st, keys, PruneName, Options{}); !errors.As(err, &held) || held.Err == nil {
			t.Fatalf("an unreadable lock: %v", err)
		}
	}
}

func mustFolder(t *testing.T) store.Storage {
	st, err := store.NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMarkerLapse: a marker refreshes while its owner runs; once it has
// expired it never refreshes again and Check fails, and a marker
// removed by someone else lapses at the next refresh.
func TestMarkerLapse(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	keys := testKeys(t)
	m, err := Mark(ctx, st, keys, KindBackup, Options{Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !IsMarker(m.Name(), KindBackup) {
		t.Fatalf("marker name %q", m.Name())
	}
	first := m.Record().Expires
	time.Sleep(250 * time.Millisecond) // two refreshes
	if err := m.Check(); err != nil {
		t.Fatalf("a refreshed marker: %v", err)
	}
	if !m.Record().Expires.After(first) {
		t.Fatal("the marker was not refreshed")
	}
	infos, err := List(ctx, st, keys)
	if err != nil || len(infos) != 1 || infos[0].Name != m.Name() || infos[0].Record.Kind != KindBackup {
		t.Fatalf("List: %+v, %v", infos, err)
	}
	m.Release(ctx)
	if infos, _ := List(ctx, st, keys); len(infos) != 0 {
		t.Fatalf("released marker still listed: %+v", infos)
	}

	// A paused owner: no refresh until past the expiry.
	p := &Lease{st: st, keys: keys, h: store.Handle{Kind: store.KindLock, Name: "backup-paused"}, dur: 50 * time.Millisecond, rec: newRecord(KindBackup, Options{Duration: 50 * time.Millisecond})}
	if err := p.write(ctx, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if err := p.Refresh(ctx); !errors.Is(err, ErrLapsed) {
		t.Fatalf("refresh after the expiry: %v", err)
	}
	if err := p.Check(); !errors.Is(err, ErrLapsed) {
		t.Fatalf("check after the expiry: %v", err)
	}

	// Removed by unlock --force.
	q, err := Mark(ctx, st, keys, KindBackup, Options{Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	st.Delete(ctx, store.Handle{Kind: store.KindLock, Name: q.Name()})
	if err := q.Refresh(ctx); !errors.Is(err, ErrLapsed) {
		t.Fatalf("refresh of a removed marker: %v", err)
	}
	q.Release(ctx)
}
