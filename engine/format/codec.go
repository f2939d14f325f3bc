package format

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// encoder appends the primitives of the binary formats in docs/FORMAT.md:
// unsigned and zig-zag varints, length-prefixed byte strings, raw ids.
type Encoder struct{ B []byte }

func (e *Encoder) Byte(v byte)      { e.B = append(e.B, v) }
func (e *Encoder) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }
func (e *Encoder) Varint(v int64)   { e.B = binary.AppendVarint(e.B, v) }
func (e *Encoder) ID(id crypto.ID)  { e.B = append(e.B, id[:]...) }
func (e *Encoder) Bytes(v []byte)   { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }
func (e *Encoder) Str(v string)     { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }

// errCorrupt is wrapped by every decoder error.
var ErrCorrupt = errors.New("corrupt encoding")

// decoder reads what encoder wrote. The first error sticks; later reads
// return zero values, so callers check err once at the end.
type Decoder struct {
	B   []byte
	Err error
}

func (d *Decoder) Fail(what string) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: truncated or invalid %s", ErrCorrupt, what)
	}
}

func (d *Decoder) Byte() byte {
	if d.Err != nil || len(d.B) < 1 {
		d.Fail("byte")
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

func (d *Decoder) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail("uvarint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Decoder) Varint() int64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail("varint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// count reads a length that announces n items of at least minSize bytes
// each, refusing counts the remaining input cannot hold (so a corrupt
// length cannot make a decoder allocate gigabytes).
func (d *Decoder) Count(minSize int) int {
	v := d.Uvarint()
	if d.Err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if v > uint64(len(d.B)/minSize) {
		d.Fail("count")
		return 0
	}
	return int(v)
}

func (d *Decoder) ID() crypto.ID {
	var id crypto.ID
	if d.Err != nil || len(d.B) < len(id) {
		d.Fail("id")
		return id
	}
	copy(id[:], d.B)
	d.B = d.B[len(id):]
	return id
}

func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil || n > uint64(len(d.B)) {
		d.Fail("byte string")
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

func (d *Decoder) Str() string { return string(d.Bytes()) }

// done fails unless the input was consumed exactly.
func (d *Decoder) Done(what string) error {
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%w: %d trailing bytes after %s", ErrCorrupt, len(d.B), what)
	}
	if d.Err != nil {
		return fmt.Errorf("%s: %w", what, d.Err)
	}
	return nil
}
