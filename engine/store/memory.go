package store

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
)

// Memory is a Storage in RAM, for tests: fast, with every capability of
// the real ones (temp objects, conditional writes).
type Memory struct {
	mu      sync.Mutex
	objs    map[Handle][]byte
	version map[Handle]uint64
	next    uint64
}

var _ Storage = (*Memory)(nil)

// NewMemory returns an empty store in memory.
func NewMemory() *Memory {
	return &Memory{objs: map[Handle][]byte{}, version: map[Handle]uint64{}}
}

func (m *Memory) Location() string { return "memory" }

func (m *Memory) Features() Features { return Features{Temp: true, Conditional: true} }

func (m *Memory) put(h Handle, data []byte) {
	m.next++
	m.objs[h] = bytes.Clone(data)
	m.version[h] = m.next
}

func (m *Memory) Put(ctx context.Context, h Handle, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.Valid(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(h, data)
	return nil
}

func (m *Memory) Get(ctx context.Context, h Handle, offset, length int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.Valid(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	data, ok := m.objs[h]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("memory store: get %s: %w", h, ErrNotFound)
	}
	if offset < 0 || offset > int64(len(data)) {
		return nil, fmt.Errorf("memory store: get %s: offset %d outside its %d bytes", h, offset, len(data))
	}
	end := int64(len(data))
	if length >= 0 {
		if offset+length > end {
			return nil, fmt.Errorf("memory store: get %s [%d,+%d): short object (%d bytes)", h, offset, length, len(data))
		}
		end = offset + length
	}
	return bytes.Clone(data[offset:end]), nil
}

func (m *Memory) Stat(ctx context.Context, h Handle) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	if err := h.Valid(); err != nil {
		return ObjectInfo{}, err
	}
	m.mu.Lock()
	data, ok := m.objs[h]
	m.mu.Unlock()
	if !ok {
		return ObjectInfo{}, fmt.Errorf("memory store: stat %s: %w", h, ErrNotFound)
	}
	return ObjectInfo{Handle: h, Size: int64(len(data))}, nil
}

func (m *Memory) List(ctx context.Context, k Kind, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	var infos []ObjectInfo
	for h, data := range m.objs {
		if h.Kind == k {
			infos = append(infos, ObjectInfo{Handle: h, Size: int64(len(data))})
		}
	}
	m.mu.Unlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (m *Memory) Delete(ctx context.Context, h Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.Valid(); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objs, h)
	delete(m.version, h)
	m.mu.Unlock()
	return nil
}

func (m *Memory) NewTemp(ctx context.Context) (TempObject, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memTemp{m: m}, nil
}

type memTemp struct {
	m   *Memory
	buf bytes.Buffer
}

func (t *memTemp) Write(p []byte) (int, error) { return t.buf.Write(p) }
func (t *memTemp) Commit(ctx context.Context, h Handle) error {
	return t.m.Put(ctx, h, t.buf.Bytes())
}
func (t *memTemp) Abort() { t.buf.Reset() }

// GetVersion reads the bytes and their version under one lock: read
// apart, a write in between would pair old bytes with the new version,
// and a PutIf based on them would silently undo that write.
func (m *Memory) GetVersion(ctx context.Context, h Handle) ([]byte, Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := h.Valid(); err != nil {
		return nil, "", err
	}
	m.mu.Lock()
	data, ok := m.objs[h]
	v := m.version[h]
	m.mu.Unlock()
	if !ok {
		return nil, "", fmt.Errorf("memory store: get %s: %w", h, ErrNotFound)
	}
	return bytes.Clone(data), Version(strconv.FormatUint(v, 10)), nil
}

func (m *Memory) PutIf(ctx context.Context, h Handle, data []byte, v Version) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.Valid(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, exists := m.version[h]
	if (v == "" && exists) || (v != "" && (!exists || Version(strconv.FormatUint(cur, 10)) != v)) {
		return fmt.Errorf("memory store: put %s: %w", h, ErrPreconditionFailed)
	}
	m.put(h, data)
	return nil
}
