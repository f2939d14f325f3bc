package object

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// A listing file keeps a flat listing (FlatLive's: every object below a
// prefix, sorted by key) on disk, so that a mount started again within
// the TTL does not list the prefix again, and so that the listing is
// not held in memory: only the records' offsets are (8 bytes a key).
//
//	file    = record* offsets trailer
//	record  = uvarint(len(name)) name uvarint(size) varint(mtime, unix ns)
//	          uvarint(len(etag)) etag uvarint(len(class)) class
//	offsets = count × uint64 BE (each record's start; increasing)
//	trailer = count uint64 BE, listedAt int64 BE (unix ns, taken before
//	          the LIST started), crc32c uint32 BE (Castagnoli, of all that
//	          comes before it), magic "COFFLST1"
//
// Names are strictly increasing (bytewise, S3's order). A file whose
// trailer, checksum or offsets do not hold is not used (the prefix is
// listed again): it is a cache, never the only copy of anything.

const listMagic = "COFFLST1"

const listTrailer = 8 + 8 + 4 + len(listMagic)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errUnsorted says a listing did not come in strictly increasing key
// order, which a listing file needs.
var errUnsorted = errors.New("the listing is not in key order")

// listWriter writes a listing file from entries given in key order.
type listWriter struct {
	f       *os.File
	w       *bufio.Writer
	crc     uint32
	off     int64
	offsets []uint64
	last    string
	buf     []byte
}

func newListWriter(path string) (*listWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &listWriter{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (w *listWriter) write(b []byte) error {
	w.crc = crc32.Update(w.crc, castagnoli, b)
	w.off += int64(len(b))
	_, err := w.w.Write(b)
	return err
}

func (w *listWriter) add(e *LiveEntry) error {
	if len(w.offsets) > 0 && e.Name <= w.last {
		return fmt.Errorf("%w: %q after %q", errUnsorted, e.Name, w.last)
	}
	w.last = e.Name
	w.offsets = append(w.offsets, uint64(w.off))
	b := w.buf[:0]
	b = binary.AppendUvarint(b, uint64(len(e.Name)))
	b = append(b, e.Name...)
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendVarint(b, e.MTime.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(e.ETag)))
	b = append(b, e.ETag...)
	b = binary.AppendUvarint(b, uint64(len(e.Class)))
	b = append(b, e.Class...)
	w.buf = b
	return w.write(b)
}

// finish writes the offsets and the trailer and closes the file (synced:
// a listing file is renamed into place only whole).
func (w *listWriter) finish(listedAt time.Time) error {
	var b [8]byte
	for _, o := range w.offsets {
		binary.BigEndian.PutUint64(b[:], o)
		if err := w.write(b[:]); err != nil {
			return err
		}
	}
	t := make([]byte, 0, listTrailer)
	t = binary.BigEndian.AppendUint64(t, uint64(len(w.offsets)))
	t = binary.BigEndian.AppendUint64(t, uint64(listedAt.UnixNano()))
	if err := w.write(t); err != nil {
		return err
	}
	t = binary.BigEndian.AppendUint32(t[:0], w.crc)
	t = append(t, listMagic...)
	if _, err := w.w.Write(t); err != nil {
		return err
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	return w.f.Close()
}

func (w *listWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// listFile is an open listing file.
type listFile struct {
	f        *os.File
	offsets  []int64 // count+1: the last is the offsets table's start
	listedAt time.Time
}

// openListFile opens the listing file at path and checks it whole (its
// checksum, its offsets): an error means it is not to be used.
func openListFile(path string) (*listFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	lf, err := readListFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("listing file %s: %w", path, err)
	}
	return lf, nil
}

func readListFile(f *os.File) (*listFile, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < int64(listTrailer) {
		return nil, errors.New("too short")
	}
	var t [listTrailer]byte
	if _, err := f.ReadAt(t[:], size-int64(listTrailer)); err != nil {
		return nil, err
	}
	if string(t[20:]) != listMagic {
		return nil, errors.New("not a listing file")
	}
	count := binary.BigEndian.Uint64(t[0:8])
	listedAt := time.Unix(0, int64(binary.BigEndian.Uint64(t[8:16])))
	table := size - int64(listTrailer) - int64(count)*8
	if count > uint64(size)/8 || table < 0 {
		return nil, errors.New("its count does not fit its size")
	}
	// The checksum covers everything before it.
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size-12)); err != nil {
		return nil, err
	}
	if h.Sum32() != binary.BigEndian.Uint32(t[16:20]) {
		return nil, errors.New("checksum mismatch")
	}
	raw := make([]byte, count*8)
	if _, err := f.ReadAt(raw, table); err != nil {
		return nil, err
	}
	offsets := make([]int64, count+1)
	prev := int64(-1)
	for i := range count {
		o := int64(binary.BigEndian.Uint64(raw[i*8:]))
		if o <= prev || o >= table {
			return nil, errors.New("its offsets are out of order")
		}
		offsets[i], prev = o, o
	}
	offsets[count] = table
	if count > 0 && offsets[0] != 0 {
		return nil, errors.New("its first record is not at its start")
	}
	return &listFile{f: f, offsets: offsets, listedAt: listedAt}, nil
}

func (lf *listFile) Len() int { return len(lf.offsets) - 1 }

// Entries returns records i to j (j excluded), read with one read.
func (lf *listFile) Entries(i, j int) ([]LiveEntry, error) {
	b := make([]byte, lf.offsets[j]-lf.offsets[i])
	if _, err := lf.f.ReadAt(b, lf.offsets[i]); err != nil {
		return nil, fmt.Errorf("listing file %s: %w", lf.f.Name(), err)
	}
	es := make([]LiveEntry, j-i)
	for k := range es {
		n := lf.offsets[i+k+1] - lf.offsets[i+k]
		e, ok := parseRecord(b[:n])
		if !ok {
			return nil, fmt.Errorf("listing file %s: record %d is damaged", lf.f.Name(), i+k)
		}
		es[k], b = e, b[n:]
	}
	return es, nil
}

// Name returns the key of record i.
func (lf *listFile) Name(i int) (string, error) {
	es, err := lf.Entries(i, i+1)
	if err != nil {
		return "", err
	}
	return es[0].Name, nil
}

// parseRecord decodes one whole record.
func parseRecord(b []byte) (e LiveEntry, ok bool) {
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	if e.Name, ok = str(); !ok {
		return e, false
	}
	size, k := binary.Uvarint(b)
	if k <= 0 {
		return e, false
	}
	b = b[k:]
	mt, k := binary.Varint(b)
	if k <= 0 {
		return e, false
	}
	b = b[k:]
	e.Size, e.MTime = int64(size), time.Unix(0, mt)
	if e.ETag, ok = str(); !ok {
		return e, false
	}
	if e.Class, ok = str(); !ok {
		return e, false
	}
	return e, len(b) == 0
}

// removeOldListFiles removes, from the folder of listing files, those
// not used for maxAge (their mtime: a listing file is touched when a
// mount takes it) and unfinished temporary files older than a day.
func removeOldListFiles(dir string, maxAge time.Duration) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, d := range ents {
		fi, err := d.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		age := time.Since(fi.ModTime())
		switch ext := filepath.Ext(d.Name()); {
		case ext == ".list" && age > maxAge, ext == ".tmp" && age > 24*time.Hour:
			os.Remove(filepath.Join(dir, d.Name()))
		}
	}
}
