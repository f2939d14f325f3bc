package s3io

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
)

// Memory is the byte budget of the buffers s3io holds: the parts of a
// large object read by a Source, the parts of a multipart upload and the
// whole body of a small object written by a Destination. Every such
// buffer comes from Get and goes back with Put; a Get that does not fit
// waits (first come, first served) until enough comes back, so
// concurrency adapts to the budget instead of memory growing with it.
// Buffers that come back are kept for reuse, counted in the budget, and
// dropped when a request of another size needs their room.
//
// One Memory is shared by every client of a command (cmd/coffer's
// --memory), so a backup's source reads and a restore's uploads draw
// on the same bytes.
type Memory struct {
	budget int64

	mu      sync.Mutex
	used    int64            // bytes of buffers handed out
	idle    map[int][][]byte // buffers back, by capacity, for reuse
	idleLen int64            // bytes of idle buffers
	queue   []*memWaiter     // Gets waiting, in arrival order
	high    int64            // high-water mark of used
	total   int64            // bytes handed out, ever
	gets    int64
}

type memWaiter struct {
	size  int
	bare  bool        // Acquire: bytes only, no buffer
	ready chan []byte // the buffer (nil: allocate) once granted
}

// MinMemory is the smallest budget: one part of the minimum multipart
// size (5 MiB) beside room for small objects.
const MinMemory = 8 << 20

// DefaultMemory is the budget when the user does not set one: enough
// for four 16 MiB parts, or hundreds of small objects, in flight.
const DefaultMemory = 64 << 20

// NewMemory returns a budget of budget bytes (at least MinMemory).
func NewMemory(budget int64) (*Memory, error) {
	if budget < MinMemory {
		return nil, fmt.Errorf("s3io: memory budget %d bytes is below the minimum of %d MiB (one 5 MiB multipart part and room beside it)", budget, MinMemory>>20)
	}
	return &Memory{budget: budget, idle: map[int][][]byte{}}, nil
}

// Budget returns the budget in bytes.
func (m *Memory) Budget() int64 { return m.budget }

// Size is Budget, for engine/restore's Budget interface.
func (m *Memory) Size() int64 { return m.budget }

// Acquire takes n bytes of the budget without a buffer, waiting (in the
// same first-come, first-served queue as Get) until they fit or ctx
// ends: a restore reserves what a whole job will hold (its pack range,
// the buffers of the objects it writes) before starting it, and the
// job's buffers are then allocated within that reservation. n is
// clamped to the budget. A caller must not hold bytes of the budget
// while it waits: that is what keeps waiting deadlock-free.
func (m *Memory) Acquire(ctx context.Context, n int64) error {
	n = min(n, m.budget)
	if n <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err // ended: grants nothing, even if the bytes are free
	}
	m.mu.Lock()
	if len(m.queue) == 0 && m.used+n <= m.budget {
		m.account(int(n))
		m.trimIdle()
		m.mu.Unlock()
		return nil
	}
	w := &memWaiter{size: int(n), bare: true, ready: make(chan []byte, 1)}
	m.queue = append(m.queue, w)
	m.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		for i, q := range m.queue {
			if q == w {
				m.queue = append(m.queue[:i], m.queue[i+1:]...)
				m.wake()
				m.mu.Unlock()
				return ctx.Err()
			}
		}
		m.mu.Unlock()
		m.Release(n) // granted meanwhile
		return ctx.Err()
	}
}

// Release gives back n bytes taken by Acquire (clamped as Acquire
// clamps them).
func (m *Memory) Release(n int64) {
	n = min(n, m.budget)
	if n <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used -= n
	if m.used < 0 {
		panic("s3io: Memory.Release of bytes not acquired")
	}
	m.wake()
}

// MemoryStats describe a Memory's use, for tests and -v.
type MemoryStats struct {
	Budget int64
	InUse  int64 // bytes handed out now
	Idle   int64 // bytes kept for reuse
	High   int64 // the most ever handed out at once
	Total  int64 // bytes handed out, summed over every Get
	Gets   int64
}

// Stats returns the current figures.
func (m *Memory) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return MemoryStats{Budget: m.budget, InUse: m.used, Idle: m.idleLen, High: m.high, Total: m.total, Gets: m.gets}
}

// sizeClass rounds n up to one of eight steps per power of two (at most
// 12.5% more), so that buffers of near sizes are reused.
func sizeClass(n int) int {
	if n <= 4096 {
		return 4096
	}
	shift := bits.Len(uint(n-1)) - 4 // keep the top 4 bits
	step := 1 << shift
	return (n + step - 1) &^ (step - 1)
}

// ErrOverBudget says a buffer was asked that the budget can never hold.
type ErrOverBudget struct{ Size, Budget int64 }

func (e *ErrOverBudget) Error() string {
	return fmt.Sprintf("s3io: a buffer of %d bytes does not fit the memory budget of %d bytes: raise --memory or lower part_size", e.Size, e.Budget)
}

// Get returns a buffer of n bytes (its content is not zeroed), waiting
// until the budget has room for it or ctx ends. A ctx already ended gets
// its error and no buffer, even when the budget has room: a reader
// closed while its parts wait their turn must not take bytes after it
// gave its own back.
func (m *Memory) Get(ctx context.Context, n int) ([]byte, error) {
	c := sizeClass(n)
	if int64(c) > m.budget {
		return nil, &ErrOverBudget{Size: int64(n), Budget: m.budget}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if len(m.queue) == 0 && m.used+int64(c) <= m.budget {
		b := m.grant(c)
		m.mu.Unlock()
		return m.fill(b, c, n), nil
	}
	w := &memWaiter{size: c, ready: make(chan []byte, 1)}
	m.queue = append(m.queue, w)
	m.mu.Unlock()
	select {
	case b := <-w.ready:
		return m.fill(b, c, n), nil
	case <-ctx.Done():
		m.mu.Lock()
		for i, q := range m.queue {
			if q == w {
				m.queue = append(m.queue[:i], m.queue[i+1:]...)
				m.wake() // a large request leaving may let smaller ones go
				m.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		m.mu.Unlock()
		// Granted meanwhile: give it back.
		b := <-w.ready
		m.Put(m.fill(b, c, n))
		return nil, ctx.Err()
	}
}

// fill allocates a granted buffer that had no idle one to reuse.
func (m *Memory) fill(b []byte, c, n int) []byte {
	if b == nil {
		b = make([]byte, c)
	}
	return b[:n]
}

// grant counts c bytes as used and returns an idle buffer of that class,
// or nil (the caller allocates), dropping other idle buffers to make
// room. m.mu is held.
func (m *Memory) grant(c int) []byte {
	m.account(c)
	if l := m.idle[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		m.idle[c] = l[:len(l)-1]
		m.idleLen -= int64(c)
		return b
	}
	m.trimIdle()
	return nil
}

// account counts c bytes as used. m.mu is held.
// Idle buffers are trimmed by the caller (grant, after reusing one).
func (m *Memory) account(c int) {
	m.used += int64(c)
	m.high = max(m.high, m.used)
	m.total += int64(c)
	m.gets++
}

// trimIdle drops idle buffers until used and idle bytes fit the budget.
// m.mu is held.
func (m *Memory) trimIdle() {
	for k, l := range m.idle {
		if m.used+m.idleLen <= m.budget {
			break
		}
		for len(l) > 0 && m.used+m.idleLen > m.budget {
			l[len(l)-1] = nil
			l = l[:len(l)-1]
			m.idleLen -= int64(k)
		}
		m.idle[k] = l
	}
}

// Put gives back a buffer from Get. Put(nil) does nothing.
func (m *Memory) Put(b []byte) {
	if b == nil {
		return
	}
	c := cap(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used -= int64(c)
	if m.used < 0 {
		panic("s3io: Memory.Put of a buffer not from Get")
	}
	m.idle[c] = append(m.idle[c], b[:c])
	m.idleLen += int64(c)
	m.wake()
}

// wake grants waiting Gets in order while they fit. m.mu is held.
func (m *Memory) wake() {
	for len(m.queue) > 0 && m.used+int64(m.queue[0].size) <= m.budget {
		w := m.queue[0]
		m.queue = m.queue[1:]
		if w.bare {
			m.account(w.size)
			m.trimIdle()
			w.ready <- nil
			continue
		}
		w.ready <- m.grant(w.size)
	}
}
