package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// tempPrefix starts the names of files being written; List skips them, so a
// crash mid-write leaves a file no reader ever sees.
const tempPrefix = ".tmp-"

// LocalStorage keeps a store in a folder. Writes go to a temp file that is
// fsynced, renamed into place, and whose directory is fsynced, so an object
// is either absent or complete and durable.
type LocalStorage struct {
	root string

	mu   sync.Mutex
	dirs map[string]bool // directories known to exist
}

// NewLocalStorage opens the folder root (which need not exist yet).
func NewLocalStorage(root string) (*LocalStorage, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	return &LocalStorage{root: abs, dirs: map[string]bool{}}, nil
}

func (s *LocalStorage) Location() string { return s.root }

// UploadParallelism is 1: packs are written while the next fills, and a
// second writer to the same disk gains nothing but another pack in RAM.
func (s *LocalStorage) UploadParallelism() int { return 1 }

func (s *LocalStorage) path(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("local storage: invalid object name %q", name)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

func (s *LocalStorage) ensureDir(dir string) error {
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

func (s *LocalStorage) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := s.ensureDir(dir); err != nil {
		return fmt.Errorf("local storage: put %s: %w", name, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("local storage: put %s: %w", name, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr == nil {
		werr = syncDir(dir)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("local storage: put %s: %w", name, werr)
	}
	return nil
}

// NewTemp starts a temp file in the store's root, on the same file
// system as every object, so Commit is a rename.
func (s *LocalStorage) NewTemp(ctx context.Context) (TempObject, error) {
	if err := s.ensureDir(s.root); err != nil {
		return nil, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	p := filepath.Join(s.root, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local storage: %w", err)
	}
	return &localTemp{s: s, f: f}, nil
}

type localTemp struct {
	s *LocalStorage
	f *os.File
}

func (t *localTemp) Write(p []byte) (int, error) { return t.f.Write(p) }

func (t *localTemp) Commit(ctx context.Context, name string) error {
	p, err := t.s.path(name)
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
		return fmt.Errorf("local storage: put %s: %w", name, err)
	}
	return nil
}

func (t *localTemp) Abort() {
	t.f.Close()
	os.Remove(t.f.Name())
}

func (s *LocalStorage) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound("local storage: get", name)
	}
	if err != nil {
		return nil, fmt.Errorf("local storage: get %s: %w", name, err)
	}
	defer f.Close()
	if length < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		length = st.Size() - offset
		if length < 0 {
			length = 0
		}
	}
	buf := make([]byte, length)
	n, err := f.ReadAt(buf, offset)
	if err != nil && !(err == io.EOF && int64(n) == length) {
		if err == io.EOF {
			return nil, fmt.Errorf("local storage: get %s [%d,+%d): short object (%d bytes)", name, offset, length, n)
		}
		return nil, fmt.Errorf("local storage: get %s: %w", name, err)
	}
	return buf, nil
}

func (s *LocalStorage) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	// Walk the deepest directory that contains every name with prefix.
	dir := prefix
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = prefix[:i]
	} else {
		dir = ""
	}
	start := filepath.Join(s.root, filepath.FromSlash(dir))
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
		if d.IsDir() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(ObjectInfo{Name: name, Size: info.Size()})
	})
	if err != nil {
		return fmt.Errorf("local storage: list %s: %w", prefix, err)
	}
	return nil
}

func (s *LocalStorage) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	p, err := s.path(name)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, notFound("local storage: stat", name)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("local storage: stat %s: %w", name, err)
	}
	return ObjectInfo{Name: name, Size: st.Size()}, nil
}

func (s *LocalStorage) Delete(ctx context.Context, name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local storage: delete %s: %w", name, err)
	}
	return nil
}
