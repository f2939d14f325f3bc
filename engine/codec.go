package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// encoder appends the primitives of the binary formats in docs/FORMAT.md:
// unsigned and zig-zag varints, length-prefixed byte strings, raw ids.
type encoder struct{ b []byte }

func (e *encoder) byte(v byte)       { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) id(id ID)          { e.b = append(e.b, id[:]...) }
func (e *encoder) bytes(v []byte)    { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) string(v string)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) uint32le(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }

// errCorrupt is wrapped by every decoder error.
var errCorrupt = errors.New("corrupt encoding")

// decoder reads what encoder wrote. The first error sticks; later reads
// return zero values, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", errCorrupt, what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that announces n items of at least minSize bytes
// each, refusing counts the remaining input cannot hold (so a corrupt
// length cannot make a decoder allocate gigabytes).
func (d *decoder) count(minSize int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if v > uint64(len(d.b)/minSize) {
		d.fail("count")
		return 0
	}
	return int(v)
}

func (d *decoder) id() ID {
	var id ID
	if d.err != nil || len(d.b) < len(id) {
		d.fail("id")
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[len(id):]
	return id
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("byte string")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// done fails unless the input was consumed exactly.
func (d *decoder) done(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after %s", errCorrupt, len(d.b), what)
	}
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	return nil
}
