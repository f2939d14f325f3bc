package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TempPrefix starts the names of files being written; List skips them, so a
// crash mid-write leaves a file no reader ever sees.
const TempPrefix = ".tmp-"

// Folder keeps a store in a local folder. Writes go to a temp file that is
// fsynced, renamed into place, and whose directory is fsynced, so an object
// is either absent or complete and durable. PutIf holds an flock(2) on the
// root folder around its check and its rename (the kernel drops it if the
// process dies), and an object's version is the SHA-256 of its bytes.
type Folder struct {
	root string

	mu   sync.Mutex
	dirs map[string]bool // directories known to exist
}

var _ Storage = (*Folder)(nil)

// NewFolder opens the folder root (which need not exist yet).
func NewFolder(root string) (*Folder, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	return &Folder{root: abs, dirs: map[string]bool{}}, nil
}

func (s *Folder) Location() string { return s.root }

// Features: temp objects and conditional writes; one upload at a time,
// since packs are written while the next fills, and a second writer to
// the same disk gains nothing but another pack in RAM.
func (s *Folder) Features() Features { return Features{Temp: true, Conditional: true, Uploads: 1} }

func (s *Folder) path(h Handle) (string, error) {
	if err := h.Valid(); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(ObjectName(h))), nil
}

func (s *Folder) ensureDir(dir string) error {
	s.mu.Lock()
	ok := s.dirs[dir]
	s.mu.Unlock()
	if ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Make the new directory entries themselves durable.
	for d := dir; len(d) > len(s.root); d = filepath.Dir(d) {
		syncDir(filepath.Dir(d))
	}
	s.mu.Lock()
	s.dirs[dir] = true
	s.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func (s *Folder) Put(ctx context.Context, h Handle, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(h)
	if err != nil {
		return err
	}
	if err := s.writeFile(p, data); err != nil {
		return fmt.Errorf("folder store: put %s: %w", h, err)
	}
	return nil
}

// writeFile writes p durably through a temp file and a rename.
func (s *Folder) writeFile(p string, data []byte) error {
	dir := filepath.Dir(p)
	if err := s.ensureDir(dir); err != nil {
		return err
	}
	f, err := s.createTemp(dir)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), p)
	}
	if werr == nil {
		werr = syncDir(dir)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
}

func (s *Folder) createTemp(dir string) (*os.File, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	return os.OpenFile(filepath.Join(dir, TempPrefix+hex.EncodeToString(rnd[:])), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// NewTemp starts a temp file in the store's root, on the same file
// system as every object, so Commit is a rename.
func (s *Folder) NewTemp(ctx context.Context) (TempObject, error) {
	if err := s.ensureDir(s.root); err != nil {
		return nil, fmt.Errorf("folder store: %w", err)
	}
	f, err := s.createTemp(s.root)
	if err != nil {
		return nil, fmt.Errorf("folder store: %w", err)
	}
	return &folderTemp{s: s, f: f}, nil
}

type folderTemp struct {
	s *Folder
	f *os.File
}

func (t *folderTemp) Write(p []byte) (int, error) { return t.f.Write(p) }

func (t *folderTemp) Commit(ctx context.Context, h Handle) error {
	p, err := t.s.path(h)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = t.s.ensureDir(filepath.Dir(p))
	}
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(t.f.Name(), p)
	}
	if err == nil {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		os.Remove(t.f.Name())
		return fmt.Errorf("folder store: put %s: %w", h, err)
	}
	return nil
}

func (t *folderTemp) Abort() {
	t.f.Close()
	os.Remove(t.f.Name())
}

func (s *Folder) Get(ctx context.Context, h Handle, offset, length int64) ([]byte, error) {
	var buf []byte
	err := s.readAt(ctx, h, offset, length, func(n int64) []byte {
		buf = make([]byte, n)
		return buf
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// GetInto is Get into the caller's buffer (RangeReader).
func (s *Folder) GetInto(ctx context.Context, h Handle, offset int64, buf []byte) error {
	return s.readAt(ctx, h, offset, int64(len(buf)), func(int64) []byte { return buf })
}

// readAt reads length bytes of h at offset (to the end when length < 0)
// into the buffer that into gives for that many bytes.
func (s *Folder) readAt(ctx context.Context, h Handle, offset, length int64, into func(n int64) []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(h)
	if err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("folder store: get %s: negative offset %d", h, offset)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("folder store: get %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("folder store: get %s: %w", h, err)
	}
	defer f.Close()
	if length <= 0 {
		// ReadAt of nothing succeeds anywhere, so an offset past the
		// end must be caught here.
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("folder store: get %s: %w", h, err)
		}
		if offset > st.Size() {
			return fmt.Errorf("folder store: get %s: offset %d outside its %d bytes", h, offset, st.Size())
		}
		if length < 0 {
			length = st.Size() - offset
		}
	}
	n, err := f.ReadAt(into(length), offset)
	if err != nil && !(err == io.EOF && int64(n) == length) {
		if err == io.EOF {
			return fmt.Errorf("folder store: get %s [%d,+%d): short object (%d bytes)", h, offset, length, n)
		}
		return fmt.Errorf("folder store: get %s: %w", h, err)
	}
	return nil
}

func (s *Folder) List(ctx context.Context, k Kind, fn func(ObjectInfo) error) error {
	// Checked first: a kind with no folder yet is never walked, and its
	// empty listing must not pass for a successful one.
	if err := ctx.Err(); err != nil {
		return err
	}
	if k == KindConfig {
		info, err := s.Stat(ctx, ConfigHandle)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(info)
	}
	start := filepath.Join(s.root, filepath.FromSlash(strings.TrimSuffix(dirOf(k), "/")))
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		h, ok := ParseObjectName(filepath.ToSlash(rel))
		if !ok || h.Kind != k {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(ObjectInfo{Handle: h, Size: info.Size()})
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("folder store: list %s: %w", Prefix(k), err)
	}
	return nil
}

func (s *Folder) Stat(ctx context.Context, h Handle) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	p, err := s.path(h)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, fmt.Errorf("folder store: stat %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("folder store: stat %s: %w", h, err)
	}
	return ObjectInfo{Handle: h, Size: st.Size()}, nil
}

func (s *Folder) Delete(ctx context.Context, h Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(h)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("folder store: delete %s: %w", h, err)
	}
	// The removal is durable once the directory is: a crash after Delete
	// returns must not bring the object back (a forgotten snapshot).
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("folder store: delete %s: sync its folder: %w", h, err)
	}
	return nil
}

func folderVersion(data []byte) Version {
	sum := sha256.Sum256(data)
	return Version(hex.EncodeToString(sum[:]))
}

func (s *Folder) GetVersion(ctx context.Context, h Handle) ([]byte, Version, error) {
	data, err := s.Get(ctx, h, 0, -1)
	if err != nil {
		return nil, "", err
	}
	return data, folderVersion(data), nil
}

func (s *Folder) PutIf(ctx context.Context, h Handle, data []byte, v Version) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(h)
	if err != nil {
		return err
	}
	if err := s.ensureDir(s.root); err != nil {
		return fmt.Errorf("folder store: put %s: %w", h, err)
	}
	unlock, err := s.lockRoot(ctx)
	if err != nil {
		return fmt.Errorf("folder store: put %s: %w", h, err)
	}
	defer unlock()
	cur, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if v != "" {
			return fmt.Errorf("folder store: put %s: it no longer exists: %w", h, ErrPreconditionFailed)
		}
	case err != nil:
		return fmt.Errorf("folder store: put %s: %w", h, err)
	case v == "":
		return fmt.Errorf("folder store: put %s: it exists: %w", h, ErrPreconditionFailed)
	case folderVersion(cur) != v:
		return fmt.Errorf("folder store: put %s: %w", h, ErrPreconditionFailed)
	}
	if err := s.writeFile(p, data); err != nil {
		return fmt.Errorf("folder store: put %s: %w", h, err)
	}
	return nil
}

// lockRoot takes an exclusive flock on the root folder, waiting for it
// (politely, so ctx can stop the wait).
func (s *Folder) lockRoot(ctx context.Context) (func(), error) {
	f, err := os.Open(s.root)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
