package index

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// A run is a sorted, duplicate-free list of blob records in a file: the
// records in sealed blocks, then their 8-byte id prefixes in sealed
// blocks. RAM holds only a table built from the prefixes (2.25 bytes a
// blob, see run.fp); record i is in block i/recsPerBlock, so a match
// costs one block read.
//
// File layout (docs/FORMAT.md, appendix "Local index cache"):
//
//	runMagic (16 bytes) || record blocks || prefix blocks
//
// Every block is blockSize bytes: AES-256-GCM(payload) || tag, under a key
// of its own file (fileAEAD: the cache key, the store id, the file id),
// with the region and block number as nonce. Each block of a file is
// sealed once, so a nonce never repeats under a key, and a block cannot
// be moved within a file, between files, between stores or between the
// two regions unnoticed.
const (
	recSize      = 50 // id 32, pack 4, offset 4, length 4, rawLen 4, kind 1, comp 1
	blockSize    = 1024
	blockPayload = blockSize - gcmTag     // 1008
	recsPerBlock = blockPayload / recSize // 20
	pfxPerBlock  = blockPayload / 8       // 126
	headerSize   = 16

	regionRecords  = 'r'
	regionPrefixes = 'p'

	// ioBlocks blocks are read or written at once when streaming.
	ioBlocks = 64
)

var runMagic = [headerSize]byte{'c', 'o', 'f', 'f', 'e', 'r', '-', 'i', 'd', 'x', '-', 'r', 'u', 'n', '1', '\n'}

// location is a blob's place, as kept in the memtable and in records.
type location struct {
	pack   uint32 // position in Master.packs
	offset uint32
	length uint32
	rawLen uint32
	kind   format.BlobKind
	comp   format.Compression
}

func putRecord(b []byte, id *crypto.ID, l *location) {
	copy(b, id[:])
	binary.LittleEndian.PutUint32(b[32:], l.pack)
	binary.LittleEndian.PutUint32(b[36:], l.offset)
	binary.LittleEndian.PutUint32(b[40:], l.length)
	binary.LittleEndian.PutUint32(b[44:], l.rawLen)
	b[48] = byte(l.kind)
	b[49] = byte(l.comp)
}

func getRecord(b []byte) (id crypto.ID, l location) {
	copy(id[:], b[:32])
	l.pack = binary.LittleEndian.Uint32(b[32:])
	l.offset = binary.LittleEndian.Uint32(b[36:])
	l.length = binary.LittleEndian.Uint32(b[40:])
	l.rawLen = binary.LittleEndian.Uint32(b[44:])
	l.kind = format.BlobKind(b[48])
	l.comp = format.Compression(b[49])
	return id, l
}

// prefixOf orders like the id itself: big-endian first 8 bytes.
func prefixOf(id *crypto.ID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// run is one sorted run file.
type run struct {
	f      *os.File
	name   string // base name in the cache folder; "" for an unlinked temp file
	dir    string // the cache folder, for messages
	fileID [16]byte
	n      int // records
	nmax   int // records the file has room for (the prefix region follows)
	// The lookup table in RAM, built from the records' 8-byte id
	// prefixes: starts[b] is the first position whose prefix's top bits
	// (prefix >> shift) are b or more, and fp[i] holds the 16 bits of
	// prefix i just below them. A lookup searches only fp[starts[b]:
	// starts[b+1]] (about radixSpan entries) and reads the record of
	// every match: with the top bits that is a 16+(64-shift)-bit
	// prefix (31 bits at a million blobs) for 2.25 bytes a blob instead
	// of 8.25. nil when the run has no table (dropped while merging).
	fp     []uint16
	starts []uint32
	shift  uint

	aead      cipher.AEAD // of this file (fileAEAD)
	persisted bool        // referenced by the manifest on disk: never removed by merges
}

func (r *run) size() int64 {
	return headerSize + int64(ceilDiv(r.nmax, recsPerBlock)+ceilDiv(r.nmax, pfxPerBlock))*blockSize
}

func (r *run) blockOff(region byte, i int) int64 {
	off := int64(headerSize) + int64(i)*blockSize
	if region == regionPrefixes {
		off += int64(ceilDiv(r.nmax, recsPerBlock)) * blockSize
	}
	return off
}

// errCache wraps every failure to read a cache or run file: the file is
// damaged, truncated, foreign or gone.
var errCache = errors.New("index cache unreadable (removing its folder makes coffer rebuild it)")

// blockBufs holds a sealed block and its plaintext.
var blockBufs = sync.Pool{New: func() any { b := make([]byte, 2*blockSize); return &b }}

// record reads record i.
func (r *run) record(i int) (crypto.ID, location, error) {
	bp := blockBufs.Get().(*[]byte)
	defer blockBufs.Put(bp)
	buf := *bp
	sealed, plainBuf := buf[:blockSize], buf[blockSize:blockSize]
	b := i / recsPerBlock
	if _, err := r.f.ReadAt(sealed, r.blockOff(regionRecords, b)); err != nil {
		return crypto.ID{}, location{}, fmt.Errorf("%w: %s block %d: %v", errCache, r.label(), b, err)
	}
	nonce := blockNonce(regionRecords, b)
	plain, err := r.aead.Open(plainBuf, nonce[:], sealed, nil)
	if err != nil {
		return crypto.ID{}, location{}, fmt.Errorf("%w: %s block %d: %v", errCache, r.label(), b, err)
	}
	s := (i % recsPerBlock) * recSize
	id, l := getRecord(plain[s : s+recSize])
	return id, l, nil
}

func (r *run) label() string {
	if r.name == "" {
		return "temporary index run"
	}
	return "index run " + filepath.Join(r.dir, r.name)
}

// radixSpan is about how many prefixes share one entry of run.starts:
// the table costs 4/radixSpan bytes a blob (0.25) and leaves a lookup a
// binary search of about radixSpan prefixes (two cache lines) instead of
// one over the whole run (20 scattered reads for a million blobs).
const radixSpan = 16

// radixBits is how many top bits of the prefix index run.starts for a
// run of n records: about n/radixSpan buckets, none for small runs.
func radixBits(n int) uint {
	bits := uint(0)
	if n < 4*radixSpan {
		return 0
	}
	for (n/radixSpan)>>(bits+1) > 0 && bits < 24 {
		bits++
	}
	return bits
}

// setPrefixes builds the run's lookup table from its n prefixes, in
// order, as next yields them (n == 0: the run has none). It fails on a
// prefix out of order or on next's error, leaving the run without one.
func (r *run) setPrefixes(n int, next func() (uint64, error)) error {
	r.fp, r.starts = nil, nil
	if n == 0 {
		return nil
	}
	bits := radixBits(n)
	shift := 64 - bits // p >> 64 is 0 in Go: one bucket
	fp := make([]uint16, n)
	st := make([]uint32, 1<<bits+1)
	var b, last uint64 // b: the first bucket whose start is not set
	for i := range n {
		p, err := next()
		if err != nil {
			return err
		}
		if i > 0 && p < last {
			return fmt.Errorf("%w: %s: prefixes out of order", errCache, r.label())
		}
		last = p
		for top := p >> shift; b <= top; b++ {
			st[b] = uint32(i)
		}
		fp[i] = uint16(p >> (shift - 16))
	}
	for ; b < uint64(len(st)); b++ {
		st[b] = uint32(n)
	}
	r.fp, r.starts, r.shift = fp, st, shift
	return nil
}

// dropPrefixes frees the lookup table: the run answers "absent".
func (r *run) dropPrefixes() { r.fp, r.starts = nil, nil }

// find returns the record of id, if the run holds it: a search of the
// table, then the full id compared on every match.
func (r *run) find(id *crypto.ID) (location, bool, error) {
	if r.starts == nil {
		return location{}, false, nil
	}
	p := prefixOf(id)
	b := p >> r.shift
	lo, end := int(r.starts[b]), int(r.starts[b+1])
	f := uint16(p >> (r.shift - 16))
	for hi := end; lo < hi; {
		m := int(uint(lo+hi) >> 1)
		if r.fp[m] < f {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < end && r.fp[i] == f; i++ {
		got, l, err := r.record(i)
		if err != nil {
			return location{}, false, err
		}
		if got == *id {
			return l, true, nil
		}
	}
	return location{}, false, nil
}

// blockWriter seals items into the blocks of one region of a run file.
type blockWriter struct {
	r        *run
	region   byte
	itemSize int
	perBlock int
	next     int    // next block number
	plain    []byte // the block being filled
	items    int
	out      []byte // sealed blocks not yet written
	outBlock int    // block number of out[0]
}

func newBlockWriter(r *run, region byte, itemSize int) *blockWriter {
	return &blockWriter{r: r, region: region, itemSize: itemSize, perBlock: blockPayload / itemSize,
		plain: make([]byte, 0, blockPayload), out: make([]byte, 0, ioBlocks*blockSize)}
}

func (w *blockWriter) add(item []byte) error {
	w.plain = append(w.plain, item...)
	w.items++
	if w.items == w.perBlock {
		return w.seal()
	}
	return nil
}

func (w *blockWriter) seal() error {
	for len(w.plain) < blockPayload {
		w.plain = append(w.plain, 0)
	}
	nonce := blockNonce(w.region, w.next)
	w.out = w.r.aead.Seal(w.out, nonce[:], w.plain, nil)
	w.next++
	w.plain, w.items = w.plain[:0], 0
	if len(w.out) == cap(w.out) {
		return w.flush()
	}
	return nil
}

func (w *blockWriter) flush() error {
	if len(w.out) == 0 {
		return nil
	}
	if _, err := w.r.f.WriteAt(w.out, w.r.blockOff(w.region, w.outBlock)); err != nil {
		return fmt.Errorf("writing %s: %w", w.r.label(), err)
	}
	w.outBlock += len(w.out) / blockSize
	w.out = w.out[:0]
	return nil
}

func (w *blockWriter) close() error {
	if w.items > 0 {
		if err := w.seal(); err != nil {
			return err
		}
	}
	return w.flush()
}

// blockReader streams the items of one region of a run file.
type blockReader struct {
	r        *run
	region   byte
	itemSize int
	perBlock int
	left     int // items not yet returned
	next     int // next block to read
	sealed   []byte
	plain    []byte // items of the current block not yet returned
	pbuf     []byte
}

func newBlockReader(r *run, region byte, itemSize, items int) *blockReader {
	return &blockReader{r: r, region: region, itemSize: itemSize, perBlock: blockPayload / itemSize, left: items,
		pbuf: make([]byte, 0, blockPayload)}
}

// item returns the next item, or io.EOF after the last.
func (br *blockReader) item() ([]byte, error) {
	if br.left == 0 {
		return nil, io.EOF
	}
	if len(br.plain) == 0 {
		if len(br.sealed) == 0 {
			nb := min(ioBlocks, ceilDiv(br.left, br.perBlock))
			if cap(br.sealed) < nb*blockSize {
				br.sealed = make([]byte, nb*blockSize)
			}
			br.sealed = br.sealed[:nb*blockSize]
			if _, err := br.r.f.ReadAt(br.sealed, br.r.blockOff(br.region, br.next)); err != nil {
				return nil, fmt.Errorf("%w: %s block %d: %v", errCache, br.r.label(), br.next, err)
			}
		}
		nonce := blockNonce(br.region, br.next)
		p, err := br.r.aead.Open(br.pbuf[:0], nonce[:], br.sealed[:blockSize], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %s block %d: %v", errCache, br.r.label(), br.next, err)
		}
		br.sealed = br.sealed[blockSize:]
		br.next++
		br.plain = p[:min(br.perBlock, br.left)*br.itemSize]
	}
	it := br.plain[:br.itemSize]
	br.plain = br.plain[br.itemSize:]
	br.left--
	return it, nil
}

// loadPrefixes reads the prefix region into the run's lookup table.
func (r *run) loadPrefixes() error {
	br := newBlockReader(r, regionPrefixes, 8, r.n)
	return r.setPrefixes(r.n, func() (uint64, error) {
		it, err := br.item()
		if err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint64(it), nil
	})
}

// runWriter writes a new run: records in id order, then the prefixes,
// which it keeps on disk (not in RAM) until the run is complete.
type runWriter struct {
	r    *run
	recs *blockWriter
	pfxs *blockWriter
	last crypto.ID
	rec  [recSize]byte
}

func (w *runWriter) add(id *crypto.ID, l *location) error {
	if w.r.n > 0 && bytes.Compare(id[:], w.last[:]) <= 0 {
		return fmt.Errorf("index run: records out of order") // a bug, never data
	}
	if w.r.n == w.r.nmax {
		return fmt.Errorf("index run: more records than announced")
	}
	w.last = *id
	putRecord(w.rec[:], id, l)
	if err := w.recs.add(w.rec[:]); err != nil {
		return err
	}
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], prefixOf(id))
	w.r.n++
	return w.pfxs.add(p[:])
}

func (w *runWriter) close() error {
	if err := w.recs.close(); err != nil {
		return err
	}
	if err := w.pfxs.close(); err != nil {
		return err
	}
	if err := w.r.f.Truncate(w.r.size()); err != nil { // a last sparse block
		return fmt.Errorf("writing %s: %w", w.r.label(), err)
	}
	return nil
}

// drop closes the run's file (release also removes it).
func (r *run) drop() {
	if r.f != nil {
		r.f.Close()
	}
}
