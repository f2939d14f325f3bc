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

// Folder restores into a local folder.
type Folder struct {
	root string
	// Owners restores uid/gid (only root may); the default is to do so
	// when running as root.
	Owners bool
	// KeyMapping maps each path segment through keymap.LocalName, so that
	// every S3 key has a place in a folder: set it for snapshots of
	// buckets only. Without it names are taken as they are, and a name
	// no folder can hold ("", ".", "..", NUL, over NameMax) fails.
	KeyMapping bool
	// Mapped, if set, is told of each entry whose name had to be mapped
	// to a local name (keymap.go), with the local path below the target.
	Mapped func(path, local string)

	mu     sync.Mutex
	beside map[string]bool // directories that share their name with a file
	temps  map[string]bool // replacements being written, for Extras
}

// NewFolder returns a destination writing below dir.
func NewFolder(dir string) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Folder{root: abs, Owners: os.Geteuid() == 0}, nil
}

func (d *Folder) URI() string { return d.root }

// MkDirAhead implements SerialCreator: the directory is made as MkDir
// makes it, with no report of a mapped name (MkDir reports it when the
// walk gets there).
func (d *Folder) MkDirAhead(ctx context.Context, path string) error {
	lp, err := d.place(path, true, false)
	if err != nil {
		return err
	}
	return os.Mkdir(lp, 0o700)
}

// MaxOpen implements SerialCreator: the limit on open files (Go raises
// the soft limit to the hard one when it starts).
func (d *Folder) MaxOpen() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}

// Empty implements Inspector.
func (d *Folder) Empty(ctx context.Context, path string) (bool, error) {
	lp, _, _, err := d.localPath(path, true)
	if err != nil {
		return false, err
	}
	f, err := os.Open(lp)
	if err != nil {
		return false, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("restore: %w", err)
	}
	return len(names) == 0, nil
}

// localPath maps item path p below the target. With KeyMapping each
// segment goes through LocalName (keymap.go), so that every S3 key has a
// place in a folder and no segment can escape it; last is then the local
// name of the last segment (several "/"-joined pieces for a name over
// NameMax). dir says whether p itself is a directory (only a directory
// takes the beside-a-file name).
func (d *Folder) localPath(p string, dir bool) (lp, last string, mapped bool, err error) {
	if p == "" {
		return d.root, "", false, nil
	}
	segs := strings.Split(p[1:], "/")
	if !d.KeyMapping {
		for _, s := range segs {
			if s == "" || s == "." || s == ".." || strings.IndexByte(s, 0) >= 0 || len(s) > keymap.NameMax {
				return "", "", false, fmt.Errorf("restore: %q: a folder cannot hold the name %q", p, s)
			}
		}
		return filepath.Join(d.root, filepath.FromSlash(p[1:])), segs[len(segs)-1], false, nil
	}
	d.mu.Lock()
	nbeside := len(d.beside)
	d.mu.Unlock()
	var b strings.Builder
	b.WriteString(d.root)
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
	return b.String(), last, mapped, nil
}

// place returns the local path of p, reports a mapped name (if report),
// and makes the folders that the pieces of a name over NameMax are nested
// in.
func (d *Folder) place(p string, isDir, report bool) (string, error) {
	lp, last, mapped, err := d.localPath(p, isDir)
	if err != nil || !mapped {
		return lp, err
	}
	if d.Mapped != nil && report {
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
	lp, err := d.place(path, true, true)
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
// two are created in. Only KeyMapping uses it.
func (d *Folder) BesideFile(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.beside == nil {
		d.beside = map[string]bool{}
	}
	d.beside[path] = true
}

// Lstat implements Inspector.
func (d *Folder) Lstat(ctx context.Context, path string, dir bool) (*Existing, error) {
	lp, _, _, err := d.localPath(path, dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(lp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	e := &Existing{Size: uint64(fi.Size()), MTime: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode().Perm())}
	if fi.Mode()&fs.ModeSetuid != 0 {
		e.Mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		e.Mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		e.Mode |= 0o1000
	}
	switch {
	case fi.Mode().IsRegular():
		e.Type = tree.TypeFile
	case fi.IsDir():
		e.Type = tree.TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = tree.TypeSymlink
		if e.Target, err = os.Readlink(lp); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	return e, nil
}

// Remove implements Inspector. A symlink is removed, never followed.
func (d *Folder) Remove(ctx context.Context, path string, dir bool) error {
	if path == "" {
		return errors.New("restore: will not remove the target itself")
	}
	lp, _, _, err := d.localPath(path, dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(lp); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// Extras implements Inspector.
func (d *Folder) Extras(ctx context.Context, path string, children []Child) ([]string, error) {
	dlp, _, _, err := d.localPath(path, true)
	if err != nil {
		return nil, err
	}
	keep := make(map[string]bool, len(children))
	for _, c := range children {
		lp, _, _, err := d.localPath(path+"/"+c.Name, c.Dir)
		if err != nil {
			continue
		}
		// The first piece of a name split over NameMax is the entry.
		rel, _ := filepath.Rel(dlp, lp)
		first, _, _ := strings.Cut(rel, string(filepath.Separator))
		keep[first] = true
	}
	ents, err := os.ReadDir(dlp)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var extras []string
	ours := tempPrefix()
	for _, e := range ents {
		// This restore's own replacements are never extras: one being
		// written is in d.temps; one renamed into place since ReadDir
		// listed it is gone from d.temps but was listed all the same.
		if !keep[e.Name()] && !d.temps[filepath.Join(dlp, e.Name())] && !strings.HasPrefix(e.Name(), ours) {
			extras = append(extras, e.Name())
		}
	}
	return extras, nil
}

// RemoveExtra implements Inspector.
func (d *Folder) RemoveExtra(ctx context.Context, path, local string) error {
	if local == "" || local == "." || local == ".." || strings.ContainsRune(local, filepath.Separator) {
		return fmt.Errorf("restore: will not remove %q", local)
	}
	dlp, _, _, err := d.localPath(path, true)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(dlp, local)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// tempPrefix starts the names of this process's replacements.
func tempPrefix() string { return fmt.Sprintf(".coffer-restore-%d-", os.Getpid()) }

// tempBeside returns an unused name in lp's folder, for a replacement
// written beside lp and renamed over it, and marks it in use.
func (d *Folder) tempBeside(lp string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.temps == nil {
		d.temps = map[string]bool{}
	}
	for i := 0; ; i++ {
		t := filepath.Join(filepath.Dir(lp), fmt.Sprintf("%s%d", tempPrefix(), len(d.temps)+i))
		if _, err := os.Lstat(t); errors.Is(err, fs.ErrNotExist) && !d.temps[t] {
			d.temps[t] = true
			return t
		}
	}
}

func (d *Folder) doneTemp(t string) {
	d.mu.Lock()
	delete(d.temps, t)
	d.mu.Unlock()
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
	lp, _, _, err := d.localPath(path, true)
	if err != nil {
		return err
	}
	return d.meta(lp, n, false)
}

// Symlink creates the link; one replacing an existing entry that is not a
// directory is made beside it and renamed over it.
func (d *Folder) Symlink(ctx context.Context, path string, n *tree.Node) error {
	lp, err := d.place(path, false, true)
	if err != nil {
		return err
	}
	at := lp
	if fi, err := os.Lstat(lp); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("restore: %s exists and is a directory", lp)
		}
		at = d.tempBeside(lp)
		defer d.doneTemp(at)
	}
	if err := os.Symlink(n.Target, at); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := d.meta(at, n, true); err != nil {
		if at != lp {
			os.Remove(at)
		}
		return err
	}
	if at != lp {
		if err := os.Rename(at, lp); err != nil {
			os.Remove(at)
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}

type fsFile struct {
	d *Folder
	// mu makes the workers writing parts of one large file take turns
	// here, where a waiting one sleeps and its core decrypts for another,
	// instead of spinning on the inode lock in the kernel.
	mu   sync.Mutex
	f    *os.File
	lp   string
	temp string // a replacement: written here, renamed over lp at Close
	n    *tree.Node
}

// CreateFile creates the file. One replacing an existing entry (a file,
// a symlink, which is never followed) is written beside it and renamed
// over it only when complete, so a failed replacement leaves the old one.
func (d *Folder) CreateFile(ctx context.Context, path string, n *tree.Node) (FileWriter, error) {
	lp, err := d.place(path, false, true)
	if err != nil {
		return nil, err
	}
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW
	f, err := os.OpenFile(lp, flags, 0o600)
	if err == nil {
		return &fsFile{d: d, f: f, lp: lp, n: n}, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if fi, err := os.Lstat(lp); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("restore: %s exists and is a directory", lp)
	}
	temp := d.tempBeside(lp)
	if f, err = os.OpenFile(temp, flags, 0o600); err != nil {
		d.doneTemp(temp)
		return nil, fmt.Errorf("restore: %w", err)
	}
	return &fsFile{d: d, f: f, lp: lp, temp: temp, n: n}, nil
}

func (w *fsFile) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.WriteAt(p, off)
}

func (w *fsFile) Close(abort bool) error {
	at := w.lp
	if w.temp != "" {
		at = w.temp
		defer w.d.doneTemp(w.temp)
	}
	if abort {
		err := w.f.Close()
		os.Remove(at)
		return err
	}
	// Metadata through the open descriptor: no path lookups, and the
	// times are set last, after the content and the mode.
	err := w.d.fileMeta(w.f, w.n)
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore: %w", cerr)
	}
	if w.temp != "" {
		if err == nil {
			if rerr := os.Rename(w.temp, w.lp); rerr != nil {
				err = fmt.Errorf("restore: %w", rerr)
			}
		}
		if err != nil {
			os.Remove(w.temp)
		}
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
