package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/engine/tree"
)

// Folder backs up a local folder (or a single file).
type Folder struct {
	root   string
	single bool // root is a file, not a folder
	// Filter, if set, leaves entries below the root out (a single-file
	// source is always backed up).
	Filter *Filter
	dev    uint64 // the root's device, for Filter.OneFileSystem
}

var _ Excluder = (*Folder)(nil)

// ExcludedCounts returns what the Filter left out of the last walk.
func (s *Folder) ExcludedCounts() Excluded { return s.Filter.Counts() }

// NewFSSource returns a source for the folder or file at path.
func NewFolder(path string) (*Folder, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	return &Folder{root: abs, single: !fi.IsDir()}, nil
}

func (s *Folder) URI() string { return s.root }

func statNode(name string, fi fs.FileInfo) (tree.Node, bool) {
	n := tree.Node{Name: name, Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UnixNano()}
	m := fi.Mode()
	if m&fs.ModeSetuid != 0 {
		n.Mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n.Mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n.Mode |= 0o1000
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID, n.Inode = st.Uid, st.Gid, st.Ino
		n.CTime = time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)).UnixNano()
	}
	switch {
	case m.IsRegular():
		n.Type, n.Size = tree.TypeFile, uint64(fi.Size())
	case m.IsDir():
		n.Type = tree.TypeDir
	case m&fs.ModeSymlink != 0:
		n.Type = tree.TypeSymlink
	default:
		return n, false
	}
	return n, true
}

func (s *Folder) Walk(ctx context.Context, fn func(*Item) error, warn func(string, error)) error {
	fi, err := os.Lstat(s.root)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.root, err)
	}
	n, ok := statNode("", fi)
	if !ok {
		return fmt.Errorf("source %s: not a file, folder or symlink", s.root)
	}
	if n.Type != tree.TypeDir {
		// A single file: the snapshot holds it at /<name>.
		n.Name = filepath.Base(s.root)
		if n.Type == tree.TypeSymlink {
			if n.Target, err = os.Readlink(s.root); err != nil {
				return err
			}
		}
		return fn(&Item{Path: n.Name, Node: n})
	}
	s.Filter.Reset()
	s.dev = device(fi)
	if err := fn(&Item{Path: "", Node: n}); err != nil {
		return err
	}
	return s.walkDir(ctx, s.root, "", fn, warn)
}

type fsEntry struct {
	name string
	key  string
	dir  bool
}

func (s *Folder) walkDir(ctx context.Context, dir, rel string, fn func(*Item) error, warn func(string, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	des, err := os.ReadDir(dir)
	if err != nil && len(des) == 0 {
		warn(rel, err)
		return nil
	}
	ents := make([]fsEntry, len(des))
	for i, de := range des {
		e := fsEntry{name: de.Name(), key: de.Name(), dir: de.IsDir()}
		if e.dir {
			e.key += "/"
		}
		ents[i] = e
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].key < ents[j].key })
	for _, e := range ents {
		p := filepath.Join(dir, e.name)
		ip := e.name
		if rel != "" {
			ip = rel + "/" + e.name
		}
		f := s.Filter
		if f != nil && f.Exclude.Match(ip, e.dir) {
			f.Count(e.dir)
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			warn(ip, err)
			continue
		}
		n, ok := statNode(e.name, fi)
		if !ok {
			warn(ip, fmt.Errorf("unsupported file type %s (devices, sockets and pipes are not backed up)", fi.Mode().Type()))
			continue
		}
		if (n.Type == tree.TypeDir) != e.dir {
			warn(ip, errors.New("changed type during the backup"))
			continue
		}
		if n.Type == tree.TypeSymlink {
			if n.Target, err = os.Readlink(p); err != nil {
				warn(ip, err)
				continue
			}
		}
		descend := n.Type == tree.TypeDir
		if f != nil {
			switch {
			case n.Type == tree.TypeFile && f.LargerThan > 0 && n.Size > f.LargerThan:
				f.Count(false)
				continue
			case n.Type == tree.TypeDir && holdsAny(p, f.IfPresent):
				f.Count(true)
				continue
			case f.OneFileSystem && device(fi) != s.dev:
				f.Count(n.Type == tree.TypeDir)
				if n.Type != tree.TypeDir {
					continue // a file bind-mounted here
				}
				descend = false // a mount point: kept, empty
			}
		}
		if err := fn(&Item{Path: ip, Node: n}); err != nil {
			return err
		}
		if descend {
			if err := s.walkDir(ctx, p, ip, fn, warn); err != nil {
				return err
			}
		}
	}
	return nil
}

// device returns the file system an entry is on.
func device(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

// holdsAny says whether the directory dir has an entry of one of names
// (--exclude-if-present).
func holdsAny(dir string, names []string) bool {
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

func (s *Folder) Open(ctx context.Context, it *Item) (io.ReadCloser, error) {
	if s.single {
		return os.Open(s.root)
	}
	return os.Open(filepath.Join(s.root, filepath.FromSlash(it.Path)))
}
