package testtree

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Manifest describes every entry under root, root included, one line
// each, sorted by path:
//
//	PATH TYPE MODE SIZE MTIME DATA
//
// separated by tabs. PATH is the entry's path below root with a leading
// "/" (root itself is "/") and DATA a symlink's target, both Go-quoted
// (strconv.Quote), so any name fits on one line. TYPE is file, dir or
// symlink; MODE the permission, setuid, setgid and sticky bits in octal;
// SIZE the byte count ("-" for a directory); MTIME Unix nanoseconds;
// DATA a file's SHA-256 in hex ("-" for a directory). Owners are left out:
// they depend on who writes and who restores. Two trees with equal
// manifests hold the same names, types, bytes, modes, mtimes and targets.
func Manifest(root string) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := "/"
		if rel != "." {
			name += filepath.ToSlash(rel)
		}
		line, err := manifestLine(p, name)
		if err != nil {
			return err
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// WalkDir visits in lexical order of names, not of whole paths
	// ("a b/x" before "a/x"); sort on the quoted path's content.
	sort.SliceStable(lines, func(i, j int) bool { return manifestPath(lines[i]) < manifestPath(lines[j]) })
	return lines, nil
}

func manifestLine(p, name string) (string, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	mode := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		mode |= syscall.S_ISUID
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		mode |= syscall.S_ISGID
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= syscall.S_ISVTX
	}
	typ, size, data := "", strconv.FormatInt(fi.Size(), 10), ""
	switch {
	case fi.Mode().IsRegular():
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		typ, size, data = "file", strconv.FormatInt(n, 10), hex.EncodeToString(h.Sum(nil))
	case fi.IsDir():
		typ, size, data = "dir", "-", "-"
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		typ, data = "symlink", strconv.Quote(target)
	default:
		return "", fmt.Errorf("%s: unsupported type %v", p, fi.Mode().Type())
	}
	return fmt.Sprintf("%s\t%s\t%04o\t%s\t%d\t%s", strconv.Quote(name), typ, mode, size, fi.ModTime().UnixNano(), data), nil
}

// manifestPath returns the unquoted path of a Manifest line.
func manifestPath(line string) string {
	q, _, _ := strings.Cut(line, "\t")
	p, err := strconv.Unquote(q)
	if err != nil {
		return q
	}
	return p
}
