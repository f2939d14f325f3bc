package index

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// The manifest lists what a cache folder holds: the index files covered,
// the pack table and the run files. It is one sealed object (docs/FORMAT.md,
// appendix "Local index cache"):
//
//	manifestMagic (16 bytes) || salt (16) || AES-256-GCM(payload) || tag
//
// under fileAEAD(key, storeID, "manifest", salt) with a zero nonce (the
// salt is random, so each key seals once): a manifest of another store or
// under another key fails to open.
const manifestName = "manifest"

var manifestMagic = [16]byte{'c', 'o', 'f', 'f', 'e', 'r', '-', 'i', 'd', 'x', '-', 'm', 'a', 'n', '1', '\n'}

const manifestVersion = 1

// staleAfter is how old an unlisted run file must be before a save
// removes it: younger ones may belong to another process about to list
// them.
const staleAfter = 10 * time.Minute

func (x *Master) path(name string) string { return filepath.Join(x.opt.Dir, name) }
func (x *Master) manifestPath() string    { return x.path(manifestName) }

var zeroNonce [12]byte

// saveCache writes the manifest of the current runs (all named files in
// the folder) and removes the run files no manifest needs.
func (x *Master) saveCache() error {
	for _, r := range x.runs {
		if r.name == "" {
			return nil // cannot happen while !dirty; never list a temp file
		}
		// Durable before a manifest lists it (only the runs that survive
		// the load's merges are synced).
		if !r.persisted {
			if err := r.f.Sync(); err != nil {
				return fmt.Errorf("index cache: %s: %w", r.label(), err)
			}
		}
	}
	e := format.Encoder{}
	e.Uvarint(manifestVersion)
	e.Uvarint(uint64(len(x.covered)))
	for _, c := range x.covered {
		e.Str(c)
	}
	e.Uvarint(uint64(len(x.packs)))
	for i, p := range x.packs {
		e.ID(p)
		e.Byte(byte(x.kinds[i]))
	}
	e.Uvarint(uint64(len(x.runs)))
	names := make([]string, 0, len(x.runs))
	for _, r := range x.runs {
		e.Str(r.name)
		e.B = append(e.B, r.fileID[:]...)
		e.Uvarint(uint64(r.n))
		e.Uvarint(uint64(r.nmax))
		names = append(names, r.name)
	}
	var salt [16]byte
	rand.Read(salt[:])
	sealed := append(slices.Clone(manifestMagic[:]), salt[:]...)
	sealed = fileAEAD(x.opt.Key, x.opt.StoreID, "manifest", salt[:]).Seal(sealed, zeroNonce[:], e.B, nil)
	var sfx [8]byte
	rand.Read(sfx[:])
	tmp := x.path("manifest.tmp-" + hex.EncodeToString(sfx[:]))
	if err := writeSync(tmp, sealed); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("index cache: %w", err)
	}
	if err := os.Rename(tmp, x.manifestPath()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("index cache: %w", err)
	}
	for _, r := range x.runs {
		r.persisted = true
	}
	for _, o := range x.obsolete {
		os.Remove(x.path(o))
	}
	x.obsolete = nil
	// Left by crashed or racing processes.
	ents, _ := os.ReadDir(x.opt.Dir)
	for _, en := range ents {
		n := en.Name()
		if !strings.HasPrefix(n, "run-") && !strings.HasPrefix(n, "manifest.tmp-") || slices.Contains(names, n) {
			continue
		}
		if fi, err := en.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
			os.Remove(x.path(n))
		}
	}
	return nil
}

// loadCache reads the manifest and the prefixes of its runs. Any failure
// leaves x to be reset by the caller.
func (x *Master) loadCache() error {
	data, err := os.ReadFile(x.manifestPath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errCache, err)
	}
	if len(data) < len(manifestMagic)+16 || string(data[:len(manifestMagic)]) != string(manifestMagic[:]) {
		return fmt.Errorf("%w: %s is not an index manifest", errCache, x.manifestPath())
	}
	salt := data[len(manifestMagic) : len(manifestMagic)+16]
	plain, err := fileAEAD(x.opt.Key, x.opt.StoreID, "manifest", salt).Open(nil, zeroNonce[:], data[len(manifestMagic)+16:], nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %v (another store's or key's, or damaged)", errCache, x.manifestPath(), err)
	}
	data = nil
	d := format.Decoder{B: plain}
	if v := d.Uvarint(); d.Err == nil && v != manifestVersion {
		return fmt.Errorf("%w: manifest version %d", errCache, v)
	}
	covered := make([]string, d.Count(1))
	for i := range covered {
		covered[i] = d.Str()
	}
	np := d.Count(33)
	x.packs = make([]crypto.ID, 0, np)
	x.kinds = make([]format.BlobKind, 0, np)
	for range np {
		x.packs = append(x.packs, d.ID())
		x.kinds = append(x.kinds, format.BlobKind(d.Byte()))
	}
	nr := d.Count(19)
	runs := make([]*run, nr)
	for i := range runs {
		r := &run{persisted: true, dir: x.opt.Dir}
		r.name = d.Str()
		if len(d.B) >= 16 {
			copy(r.fileID[:], d.B)
			d.B = d.B[16:]
		} else {
			d.Fail("file id")
		}
		r.aead = fileAEAD(x.opt.Key, x.opt.StoreID, "run", r.fileID[:])
		r.n, r.nmax = int(d.Uvarint()), int(d.Uvarint())
		runs[i] = r
	}
	if err := d.Done("index manifest"); err != nil {
		return fmt.Errorf("%w: %v", errCache, err)
	}
	x.runs = runs // so that a failure below releases what was opened
	for _, r := range runs {
		if !strings.HasPrefix(r.name, "run-") || strings.ContainsAny(r.name, `/\`) || r.n > r.nmax || r.n < 0 {
			return fmt.Errorf("%w: manifest lists %q", errCache, r.name)
		}
		f, err := os.Open(x.path(r.name))
		if err != nil {
			return fmt.Errorf("%w: %v", errCache, err)
		}
		r.f = f
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("%w: %v", errCache, err)
		}
		if fi.Size() != r.size() {
			return fmt.Errorf("%w: %s is %d bytes, want %d (truncated?)", errCache, r.name, fi.Size(), r.size())
		}
		var magic [headerSize]byte
		if _, err := f.ReadAt(magic[:], 0); err != nil || magic != runMagic {
			return fmt.Errorf("%w: %s is not an index run", errCache, r.name)
		}
		if err := r.loadPrefixes(); err != nil {
			return err
		}
	}
	for pi, p := range x.packs {
		x.packNew[p] = uint32(pi)
	}
	x.sortPacksLocked()
	if len(x.packSorted) != len(x.packs) {
		return fmt.Errorf("%w: a pack is listed twice", errCache)
	}
	x.covered = covered
	return nil
}

// writeSync writes a new file and makes it durable.
func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
