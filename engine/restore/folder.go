package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/coffer-backup/coffer/engine/keymap"

	"github.com/coffer-backup/coffer/engine/tree"

	"golang.org/x/sys/unix"
)

// FSDestination restores into a local folder.
type Folder struct {
	root string
	// Owners restores uid/gid (only root may); the default is to do so
	// when running as root.
	Owners bool
	// Mapped, if set, is told of each entry whose name had to be mapped
	// to a local name (keymap.go), with the local path below the target.
	Mapped func(path, local string)

	mu     sync.Mutex
	beside map[string]bool // directories that share their name with a file
}

// NewFSDestination returns a destination writing below dir.
func NewFolder(dir string) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Folder{root: abs, Owners: os.Geteuid() == 0}, nil
}

func (d *Folder) URI() string { return d.root }

// localPath maps an item path below the target, segment by segment
// through LocalName (keymap.go), so that every S3 key has a place in a
// folder and no segment can escape it. last is the local name of the
// last segment (several "/"-joined pieces for a name over NameMax).
// localPath maps item path p below the target; dir says whether p itself
// is a directory (only a directory takes the beside-a-file name).
func (d *Folder) localPath(p string, dir bool) (lp, last string, mapped bool) {
	if p == "" {
		return d.root, "", false
	}
	d.mu.Lock()
	nbeside := len(d.beside)
	d.mu.Unlock()
	var b strings.Builder
	b.WriteString(d.root)
	segs := strings.Split(p[1:], "/")
	at := 0
	for i, s := range segs {
		at += 1 + len(s)
		isBeside := false
		if nbeside > 0 && (dir || i < len(segs)-1) {
			d.mu.Lock()
			isBeside = d.beside[p[:at]]
			d.mu.Unlock()
		}
		last = keymap.LocalName(s, isBeside)
		mapped = last != s
		b.WriteByte(filepath.Separator)
		b.WriteString(filepath.FromSlash(last))
	}
	return b.String(), last, mapped
}

// place returns the local path of p, reports a mapped name, and makes the
// folders that the pieces of a name over NameMax are nested in.
func (d *Folder) place(p string, isDir bool) (string, error) {
	lp, last, mapped := d.localPath(p, isDir)
	if !mapped {
		return lp, nil
	}
	if d.Mapped != nil {
		rel, _ := filepath.Rel(d.root, lp)
		d.Mapped(p, rel)
	}
	pieces := strings.Split(last, "/")
	dir := strings.TrimSuffix(lp, string(filepath.Separator)+filepath.FromSlash(last))
	for _, piece := range pieces[:len(pieces)-1] {
		dir = filepath.Join(dir, piece)
		fi, err := os.Lstat(dir)
		switch {
		case err == nil && fi.IsDir():
		case err == nil:
			return "", fmt.Errorf("restore: %s exists and is not a directory", dir)
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(dir, 0o755); err != nil {
				return "", fmt.Errorf("restore: %w", err)
			}
		default:
			return "", err
		}
	}
	return lp, nil
}

func (d *Folder) MkDir(ctx context.Context, path string, n *tree.Node) error {
	if path != "" {
		// A file of the same name (S3 keys "a" and "a/b") was restored
		// just before: this directory takes the name LocalName gives a
		// directory beside a file.
		if lp, _, _ := d.localPath(path, false); isRegular(lp) {
			d.mu.Lock()
			if d.beside == nil {
				d.beside = map[string]bool{}
			}
			d.beside[path] = true
			d.mu.Unlock()
		}
	}
	lp, err := d.place(path, true)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(lp)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("restore: %s exists and is not a directory", lp)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if path == "" {
		return os.MkdirAll(lp, 0o700)
	}
	return os.Mkdir(lp, 0o700)
}

// BesideFile tells the destination, before MkDir, that the directory at
// path shares its name with a file in the same directory, so that it
// takes the name LocalName gives such a directory whatever the order the
// two are created in.
func (d *Folder) BesideFile(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.beside == nil {
		d.beside = map[string]bool{}
	}
	d.beside[path] = true
}

func isRegular(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

func (d *Folder) meta(lp string, n *tree.Node, link bool) error {
	if d.Owners {
		if err := os.Lchown(lp, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("restore: chown %s: %w", lp, err)
		}
	}
	if !link {
		if err := os.Chmod(lp, fileMode(n.Mode)); err != nil {
			return fmt.Errorf("restore: chmod %s: %w", lp, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, lp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore: set times of %s: %w", lp, err)
	}
	return nil
}

func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

func (d *Folder) FinishDir(ctx context.Context, path string, n *tree.Node) error {
	lp, _, _ := d.localPath(path, true)
	return d.meta(lp, n, false)
}

func (d *Folder) Symlink(ctx context.Context, path string, n *tree.Node) error {
	lp, err := d.place(path, false)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(lp); err == nil && !fi.IsDir() {
		os.Remove(lp)
	}
	if err := os.Symlink(n.Target, lp); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return d.meta(lp, n, true)
}

type fsFile struct {
	d  *Folder
	f  *os.File
	lp string
	n  *tree.Node
}

func (d *Folder) CreateFile(ctx context.Context, path string, n *tree.Node) (FileWriter, error) {
	lp, err := d.place(path, false)
	if err != nil {
		return nil, err
	}
	// O_NOFOLLOW: an existing symlink must not redirect the write; it is
	// replaced. O_TRUNC empties an existing file; every byte is written.
	const flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC | syscall.O_NOFOLLOW
	f, err := os.OpenFile(lp, flags, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		os.Remove(lp)
		f, err = os.OpenFile(lp, flags, 0o600)
	}
	if errors.Is(err, syscall.EISDIR) {
		return nil, fmt.Errorf("restore: %s exists and is a directory", lp)
	}
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return &fsFile{d: d, f: f, lp: lp, n: n}, nil
}

func (w *fsFile) WriteAt(p []byte, off int64) (int, error) { return w.f.WriteAt(p, off) }

func (w *fsFile) Close(abort bool) error {
	if abort {
		err := w.f.Close()
		os.Remove(w.lp)
		return err
	}
	// Metadata through the open descriptor: no path lookups, and the
	// times are set last, after the content and the mode.
	err := w.d.fileMeta(w.f, w.n)
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore: %w", cerr)
	}
	return err
}

// fileMeta applies owner, mode and times to an open file.
func (d *Folder) fileMeta(f *os.File, n *tree.Node) error {
	if d.Owners {
		if err := f.Chown(int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("restore: chown %s: %w", f.Name(), err)
		}
	}
	if err := f.Chmod(fileMode(n.Mode)); err != nil { // after chown, which clears setuid
		return fmt.Errorf("restore: chmod %s: %w", f.Name(), err)
	}
	ts := [2]unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		// futimens(fd, ts): utimensat with a NULL path acts on fd.
		_, _, errno = unix.Syscall6(unix.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return fmt.Errorf("restore: set times of %s: %w", f.Name(), errno)
	}
	return nil
}

var _ io.WriterAt = (*fsFile)(nil)
