package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
)

// raceConfig runs hook between a GetVersion of the config and its return,
// as if another client changed the key slots just after this one read them.
type raceConfig struct {
	store.Storage
	hook func()
}

func (s *raceConfig) GetVersion(ctx context.Context, h store.Handle) ([]byte, store.Version, error) {
	data, v, err := s.Storage.GetVersion(ctx, h)
	if h == store.ConfigHandle && s.hook != nil {
		hook := s.hook
		s.hook = nil
		hook()
	}
	return data, v, err
}

// TestKeySlotChangesDoNotRace: two key-slot changes at once must neither
// lose a slot nor bring a removed one back. The second one to write fails
// with ErrConfigChanged and changes nothing; run again, it applies.
func TestKeySlotChangesDoNotRace(t *testing.T) {
	for _, kind := range []string{"folder", "memory"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			var st store.Storage = store.NewMemory()
			if kind == "folder" {
				f, err := store.NewFolder(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				st = f
			}
			pass := []byte("test passphrase")
			r1, err := engine.Create(ctx, st, pass, engine.CreateOptions{KDF: cheapKDF})
			if err != nil {
				t.Fatal(err)
			}
			racy := &raceConfig{Storage: st}
			r2, err := engine.Open(ctx, racy, pass)
			if err != nil {
				t.Fatal(err)
			}

			// r2 adds "b" while r1 adds "a" in between its read and write.
			var added engine.KeySlot
			racy.hook = func() {
				if added, err = r1.AddKeySlot(ctx, []byte("a"), cheapKDF); err != nil {
					t.Fatal(err)
				}
			}
			_, err = r2.AddKeySlot(ctx, []byte("b"), cheapKDF)
			if !errors.Is(err, engine.ErrConfigChanged) {
				t.Fatalf("a key slot added over a concurrent change: err = %v, want ErrConfigChanged", err)
			}
			if _, err := engine.Open(ctx, st, []byte("a")); err != nil {
				t.Fatalf("the concurrent slot was lost: %v", err)
			}
			if _, err := engine.Open(ctx, st, []byte("b")); !errors.Is(err, engine.ErrWrongPassphrase) {
				t.Fatalf("the refused change was written anyway: %v", err)
			}
			// Run again, it applies.
			if _, err := r2.AddKeySlot(ctx, []byte("b"), cheapKDF); err != nil {
				t.Fatal(err)
			}
			if _, err := engine.Open(ctx, st, []byte("b")); err != nil {
				t.Fatal(err)
			}

			// r2 removes "a"'s slot while r1 adds "c": the removal must
			// not undo the addition, nor the addition the removal.
			racy.hook = func() {
				if _, err := r1.AddKeySlot(ctx, []byte("c"), cheapKDF); err != nil {
					t.Fatal(err)
				}
			}
			if err := r2.RemoveKeySlot(ctx, added.ID); !errors.Is(err, engine.ErrConfigChanged) {
				t.Fatalf("a key slot removed over a concurrent change: err = %v, want ErrConfigChanged", err)
			}
			if _, err := engine.Open(ctx, st, []byte("c")); err != nil {
				t.Fatalf("the concurrent slot was lost: %v", err)
			}
			if _, err := engine.Open(ctx, st, []byte("a")); err != nil {
				t.Fatalf("the refused removal was written anyway: %v", err)
			}
		})
	}
}
