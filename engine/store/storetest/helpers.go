package storetest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/engine/store"
)

// gen makes deterministic test data: the same case always writes the same
// bytes under the same names, so a failure can be replayed.
type gen struct {
	src *rand.ChaCha8
	*rand.Rand
}

func newGen(t testing.TB, salt string) *gen {
	h := fnv.New64a()
	h.Write([]byte(salt))
	var seed [32]byte
	copy(seed[:], h.Sum(nil))
	src := rand.NewChaCha8(seed)
	return &gen{src: src, Rand: rand.New(src)}
}

// bytes returns n random bytes.
func (g *gen) bytes(n int) []byte {
	b := make([]byte, n)
	g.src.Read(b)
	return b
}

// id returns a random 64-digit lower-case hex name.
func (g *gen) id() string { return hex.EncodeToString(g.bytes(32)) }

// handle returns a fresh valid handle of kind k.
func (g *gen) handle(k store.Kind) store.Handle {
	switch k {
	case store.KindConfig:
		return store.ConfigHandle
	case store.KindLock:
		return store.Handle{Kind: k, Name: "lock-" + hex.EncodeToString(g.bytes(8))}
	}
	return store.Handle{Kind: k, Name: g.id()}
}

func mustPut(t testing.TB, st store.Storage, h store.Handle, data []byte) {
	t.Helper()
	if err := st.Put(t.Context(), h, data); err != nil {
		t.Fatalf("Put %s (%d bytes): %v", h, len(data), err)
	}
}

func mustGet(t testing.TB, st store.Storage, h store.Handle, offset, length int64) []byte {
	t.Helper()
	b, err := st.Get(t.Context(), h, offset, length)
	if err != nil {
		t.Fatalf("Get %s%s: %v", h, rangeString(offset, length), err)
	}
	return b
}

// checkGet reads h[offset, offset+length) and compares it with want.
func checkGet(t testing.TB, st store.Storage, h store.Handle, offset, length int64, want []byte) {
	t.Helper()
	b, err := st.Get(t.Context(), h, offset, length)
	if err != nil {
		t.Errorf("Get %s%s: %v", h, rangeString(offset, length), err)
		return
	}
	checkBytes(t, "Get "+h.String()+rangeString(offset, length), b, want)
}

func rangeString(offset, length int64) string {
	if length < 0 {
		return fmt.Sprintf(" [%d,end)", offset)
	}
	return fmt.Sprintf(" [%d,+%d)", offset, length)
}

// object returns n random bytes and a handle of kind k for them, named
// as the engine names objects: packs, index files and snapshots by the
// BLAKE3 hash of their bytes. A decorator that checks a copy against its
// name (the disk cache) then takes the path it takes in use.
func (g *gen) object(k store.Kind, n int) (store.Handle, []byte) {
	data := g.bytes(n)
	h := g.handle(k)
	if k != store.KindConfig && k != store.KindLock {
		sum := blake3.Sum256(data)
		h.Name = hex.EncodeToString(sum[:])
	}
	return h, data
}

// checkBytes reports where got first differs from want, never the bytes
// themselves (they may be megabytes).
func checkBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	if len(got) <= 32 && len(want) <= 32 {
		t.Errorf("%s: got %q, want %q", what, got, want)
		return
	}
	t.Errorf("%s: got %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
}

func checkSize(t testing.TB, st store.Storage, h store.Handle, want int64) {
	t.Helper()
	info, err := st.Stat(t.Context(), h)
	if err != nil {
		t.Errorf("Stat %s: %v", h, err)
		return
	}
	if info.Size != want || info.Handle != h {
		t.Errorf("Stat %s = {%v %d}, want {%v %d}", h, info.Handle, info.Size, h, want)
	}
}

// checkNotFound checks that err says "not found", and only that.
func checkNotFound(t testing.TB, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s of a missing object: no error, want one wrapping store.ErrNotFound", what)
	case !errors.Is(err, store.ErrNotFound):
		t.Errorf("%s of a missing object: %v; want an error wrapping store.ErrNotFound", what, err)
	}
}

// checkAbsent checks that h does not exist (with a live context).
func checkAbsent(t testing.TB, st store.Storage, h store.Handle, why string) {
	t.Helper()
	_, err := st.Stat(t.Context(), h)
	if err == nil {
		t.Errorf("%s: %s exists", why, h)
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: Stat %s: %v", why, h, err)
	}
}

// checkCanceled checks that err is the context's cancellation, and not a
// not-found: a cancelled read must never look like a missing object.
func checkCanceled(t testing.TB, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s with a cancelled context: no error", what)
	case !errors.Is(err, context.Canceled):
		t.Errorf("%s with a cancelled context: %v; want an error wrapping context.Canceled", what, err)
	case errors.Is(err, store.ErrNotFound):
		t.Errorf("%s with a cancelled context: %v wraps store.ErrNotFound", what, err)
	}
}

func checkPrecondition(t testing.TB, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error, want store.ErrPreconditionFailed", what)
	case !errors.Is(err, store.ErrPreconditionFailed):
		t.Errorf("%s: %v; want an error wrapping store.ErrPreconditionFailed", what, err)
	}
}

// list returns what List(k) reports, failing on an error or a handle
// listed twice.
func list(t testing.TB, st store.Storage, k store.Kind) map[store.Handle]int64 {
	t.Helper()
	got := map[store.Handle]int64{}
	var dup []store.Handle
	err := st.List(t.Context(), k, func(info store.ObjectInfo) error {
		if _, ok := got[info.Handle]; ok {
			dup = append(dup, info.Handle)
		}
		got[info.Handle] = info.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List %s: %v", k, err)
	}
	if len(dup) > 0 {
		t.Errorf("List %s: %d handles listed twice, first %s", k, len(dup), dup[0])
	}
	return got
}

// checkList checks that List(k) reports exactly want.
func checkList(t testing.TB, st store.Storage, k store.Kind, want map[store.Handle]int64) {
	t.Helper()
	got := list(t, st, k)
	if maps.Equal(got, want) {
		return
	}
	var extra, missing, wrong []string
	for h, size := range got {
		w, ok := want[h]
		switch {
		case !ok:
			extra = append(extra, h.Kind.String()+" "+h.String())
		case w != size:
			wrong = append(wrong, fmt.Sprintf("%s: size %d, want %d", h, size, w))
		}
	}
	for h := range want {
		if _, ok := got[h]; !ok {
			missing = append(missing, h.String())
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	t.Errorf("List %s: %d objects, want %d; %d unexpected %s, %d missing %s, %d wrong sizes %s",
		k, len(got), len(want), len(extra), firstFew(extra), len(missing), firstFew(missing), len(wrong), firstFew(wrong))
}

func firstFew(s []string) []string {
	if len(s) > 3 {
		return append(s[:3:3], "...")
	}
	return s
}

// checkEmpty checks that no kind lists anything.
func checkEmpty(t testing.TB, st store.Storage, why string) {
	t.Helper()
	for _, k := range store.Kinds {
		if got := list(t, st, k); len(got) != 0 {
			for h := range got {
				t.Errorf("%s: List %s shows %d objects, e.g. %s", why, k, len(got), h)
				break
			}
		}
	}
}

// getVersion is GetVersion that must work.
func getVersion(t testing.TB, st store.Storage, h store.Handle) ([]byte, store.Version) {
	t.Helper()
	data, v, err := st.GetVersion(t.Context(), h)
	if err != nil {
		t.Fatalf("GetVersion %s: %v", h, err)
	}
	if v == "" {
		t.Fatalf("GetVersion %s: empty version for an existing object", h)
	}
	return data, v
}

// needConditional skips a case on a storage without conditional writes
// (the Features case checks that they then say ErrNotSupported).
func needConditional(t testing.TB, st store.Storage) {
	t.Helper()
	if !st.Features().Conditional {
		t.Skip("Features().Conditional is false; the Features case checks GetVersion and PutIf say ErrNotSupported")
	}
}

func needTemp(t testing.TB, st store.Storage) {
	t.Helper()
	if !st.Features().Temp {
		t.Skip("Features().Temp is false; the Features case checks NewTemp says ErrNotSupported")
	}
}
