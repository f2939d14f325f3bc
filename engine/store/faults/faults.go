// Package faults is a store.Storage decorator that makes the storage it
// wraps unreliable on purpose: failed calls, reads that break off, writes
// whose reply is lost, and latency, at rates set per operation and drawn
// from a seeded PRNG. Tests of retry and recovery code run against it and
// then check Counts, so a green run proves faults really happened.
//
// Every error it injects is transient: it wraps ErrInjected, and is
// neither a store.PermanentError nor a not-found, so store.IsPermanent
// says to retry it.
package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
)

// ErrInjected is wrapped by every error the decorator makes up.
var ErrInjected = errors.New("injected fault")

// Config says how unreliable the storage is. Probabilities are per call,
// from 0 (never) to 1 (always); the zero Config injects nothing.
type Config struct {
	// Seed seeds the PRNG that decides every fault.
	Seed uint64

	// The probability that a call fails before reaching the inner
	// storage. GetVersion counts as a Get, PutIf and a temp object's
	// Commit as a Put. A failing List may first report some objects.
	Put, Get, Stat, List, Delete float64

	// ShortRead is the probability that a Get (or GetVersion) that would
	// succeed breaks off part way. Storage forbids short data, so it
	// surfaces as an error wrapping io.ErrUnexpectedEOF (and
	// ErrInjected), as a body cut short does in the S3 store.
	ShortRead float64

	// LostReply is the probability that a write (Put, PutIf, Delete, a
	// temp Commit) reaches the inner storage and succeeds, but its caller
	// gets an error, as when a connection drops before the answer. A
	// retried PutIf then fails with ErrPreconditionFailed although its
	// write happened.
	LostReply float64

	// Latency delays every call, plus a uniform random extra of up to
	// Jitter. A cancelled context ends the wait.
	Latency, Jitter time.Duration

	// Kinds, if not empty, limits faults (not latency) to objects of
	// these kinds. NewTemp and a temp object's writes are never faulted;
	// its Commit is, by the kind it commits to.
	Kinds []store.Kind
}

// Counts are the faults injected so far, per kind of fault.
type Counts struct {
	Put, Get, Stat, List, Delete int64
	ShortRead, LostReply         int64
}

// Total is the number of faults of every kind.
func (c Counts) Total() int64 {
	return c.Put + c.Get + c.Stat + c.List + c.Delete + c.ShortRead + c.LostReply
}

// Storage is the faulty decorator.
type Storage struct {
	inner store.Storage

	mu  sync.Mutex
	cfg Config
	rng *rand.Rand

	put, get, stat, list, del, short, lost atomic.Int64
}

var (
	_ store.Storage = (*Storage)(nil)
	_ store.Wrapper = (*Storage)(nil)
)

// New wraps inner with the faults cfg describes.
func New(inner store.Storage, cfg Config) *Storage {
	return &Storage{inner: inner, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// SetConfig changes the rates from now on, say to let a test set up or
// verify without faults; the PRNG goes on from where it was.
func (s *Storage) SetConfig(cfg Config) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

// Counts returns the faults injected so far.
func (s *Storage) Counts() Counts {
	return Counts{
		Put: s.put.Load(), Get: s.get.Load(), Stat: s.stat.Load(), List: s.list.Load(),
		Delete: s.del.Load(), ShortRead: s.short.Load(), LostReply: s.lost.Load(),
	}
}

func (s *Storage) Unwrap() store.Storage    { return s.inner }
func (s *Storage) Location() string         { return s.inner.Location() }
func (s *Storage) Features() store.Features { return s.inner.Features() }

// rate picks one probability from the config.
type rate func(Config) float64

var (
	putRate    rate = func(c Config) float64 { return c.Put }
	getRate    rate = func(c Config) float64 { return c.Get }
	statRate   rate = func(c Config) float64 { return c.Stat }
	listRate   rate = func(c Config) float64 { return c.List }
	deleteRate rate = func(c Config) float64 { return c.Delete }
	shortRate  rate = func(c Config) float64 { return c.ShortRead }
	lostRate   rate = func(c Config) float64 { return c.LostReply }
)

// roll reports whether a fault of rate r hits an object of kind k.
func (s *Storage) roll(r rate, k store.Kind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r(s.cfg)
	if p <= 0 || (len(s.cfg.Kinds) > 0 && !slices.Contains(s.cfg.Kinds, k)) {
		return false
	}
	return s.rng.Float64() < p
}

func (s *Storage) intN(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(n)
}

// wait is the latency of one call; it returns early, with the context's
// error, if ctx ends, and checks ctx even with no latency so an injected
// fault never hides a cancellation.
func (s *Storage) wait(ctx context.Context) error {
	s.mu.Lock()
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		d += time.Duration(s.rng.Int64N(int64(s.cfg.Jitter)))
	}
	s.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func injected(op string, h store.Handle) error {
	return fmt.Errorf("faults: %s %s: %w", op, h, ErrInjected)
}

func lostReply(op string, h store.Handle) error {
	return fmt.Errorf("faults: %s %s: reply lost after the write: %w", op, h, ErrInjected)
}

func (s *Storage) Put(ctx context.Context, h store.Handle, data []byte) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	if s.roll(putRate, h.Kind) {
		s.put.Add(1)
		return injected("put", h)
	}
	if err := s.inner.Put(ctx, h, data); err != nil {
		return err
	}
	if s.roll(lostRate, h.Kind) {
		s.lost.Add(1)
		return lostReply("put", h)
	}
	return nil
}

func (s *Storage) Get(ctx context.Context, h store.Handle, offset, length int64) ([]byte, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	if s.roll(getRate, h.Kind) {
		s.get.Add(1)
		return nil, injected("get", h)
	}
	data, err := s.inner.Get(ctx, h, offset, length)
	if err != nil {
		return nil, err
	}
	if err := s.cut(h, len(data)); err != nil {
		return nil, err
	}
	return data, nil
}

// cut decides whether a read of n bytes breaks off, and says where.
func (s *Storage) cut(h store.Handle, n int) error {
	if n == 0 || !s.roll(shortRate, h.Kind) {
		return nil
	}
	s.short.Add(1)
	return fmt.Errorf("faults: get %s: body cut short after %d of %d bytes: %w: %w",
		h, s.intN(n), n, ErrInjected, io.ErrUnexpectedEOF)
}

func (s *Storage) Stat(ctx context.Context, h store.Handle) (store.ObjectInfo, error) {
	if err := s.wait(ctx); err != nil {
		return store.ObjectInfo{}, err
	}
	if s.roll(statRate, h.Kind) {
		s.stat.Add(1)
		return store.ObjectInfo{}, injected("stat", h)
	}
	return s.inner.Stat(ctx, h)
}

// List fails, when it does, after a random handful of objects, as a
// listing whose second page fails would.
func (s *Storage) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	if !s.roll(listRate, k) {
		return s.inner.List(ctx, k, fn)
	}
	s.list.Add(1)
	fail := fmt.Errorf("faults: list %s: %w", k, ErrInjected)
	left := s.intN(4)
	err := s.inner.List(ctx, k, func(info store.ObjectInfo) error {
		if left == 0 {
			return fail
		}
		left--
		return fn(info)
	})
	if err == nil || errors.Is(err, ErrInjected) {
		return fail
	}
	return err
}

func (s *Storage) Delete(ctx context.Context, h store.Handle) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	if s.roll(deleteRate, h.Kind) {
		s.del.Add(1)
		return injected("delete", h)
	}
	if err := s.inner.Delete(ctx, h); err != nil {
		return err
	}
	if s.roll(lostRate, h.Kind) {
		s.lost.Add(1)
		return lostReply("delete", h)
	}
	return nil
}

func (s *Storage) NewTemp(ctx context.Context) (store.TempObject, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	tmp, err := s.inner.NewTemp(ctx)
	if err != nil {
		return nil, err
	}
	return &temp{TempObject: tmp, s: s}, nil
}

type temp struct {
	store.TempObject
	s *Storage
}

// Commit fails, when it does, as a failed Put: the inner temp object
// is discarded and nothing is stored.
func (t *temp) Commit(ctx context.Context, h store.Handle) error {
	if err := t.s.wait(ctx); err != nil {
		return err
	}
	if t.s.roll(putRate, h.Kind) {
		t.s.put.Add(1)
		t.TempObject.Abort()
		return injected("commit", h)
	}
	if err := t.TempObject.Commit(ctx, h); err != nil {
		return err
	}
	if t.s.roll(lostRate, h.Kind) {
		t.s.lost.Add(1)
		return lostReply("commit", h)
	}
	return nil
}

func (s *Storage) GetVersion(ctx context.Context, h store.Handle) ([]byte, store.Version, error) {
	if err := s.wait(ctx); err != nil {
		return nil, "", err
	}
	if !s.inner.Features().Conditional {
		return s.inner.GetVersion(ctx, h)
	}
	if s.roll(getRate, h.Kind) {
		s.get.Add(1)
		return nil, "", injected("get", h)
	}
	data, v, err := s.inner.GetVersion(ctx, h)
	if err != nil {
		return nil, "", err
	}
	if err := s.cut(h, len(data)); err != nil {
		return nil, "", err
	}
	return data, v, nil
}

func (s *Storage) PutIf(ctx context.Context, h store.Handle, data []byte, v store.Version) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	if !s.inner.Features().Conditional {
		return s.inner.PutIf(ctx, h, data, v)
	}
	if s.roll(putRate, h.Kind) {
		s.put.Add(1)
		return injected("put", h)
	}
	if err := s.inner.PutIf(ctx, h, data, v); err != nil {
		return err
	}
	if s.roll(lostRate, h.Kind) {
		s.lost.Add(1)
		return lostReply("put", h)
	}
	return nil
}
