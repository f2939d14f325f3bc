// Package keymap is the one documented, reversible mapping from S3 key
// segments to local names that the folder view of a snapshot uses (restore
// into a folder, the mount): every key gets a place and no name escapes
// its folder.
package keymap

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The folder view of a snapshot (restore to a folder, the FUSE mount)
// needs a local name for every path segment, and S3 keys allow segments
// no folder can hold: "" (from "a//b", a leading "/" or a key ending in
// "/"), "." and "..", NUL, names longer than NAME_MAX, and a file beside
// a directory of the same name ("a" and "a/b"). LocalName maps a segment
// to a local name and SegmentFromLocal maps it back; the mapping is
// one-to-one, so nothing is lost and no name can climb out of the target.
//
// A segment is plain when it is not "", "." or "..", holds no NUL and no
// "%25" or "%00", is not "%_", "%." or "%..", and does not end in "%~" or
// "%+". A plain segment keeps its name: folder snapshots, and most keys,
// restore as they are, '%' included. Any other segment is escaped:
//
//	""                       → "%_"
//	"."                      → "%."
//	".."                     → "%.."
//	otherwise '%'            → "%25", NUL → "%00", every other byte kept
//
// Then:
//
//	a directory that shares  → its name + "%~"
//	its name with a file
//	longer than 255 bytes    → pieces of at most 255 bytes, every piece but
//	                           the last ending in "%+", nested as folders:
//	                           "AAA…%+/BBB…%+/CCC"
//
// SegmentFromLocal joins the pieces, strips "%~", maps "%_", "%." and
// "%.." back, and decodes "%25" and "%00"; any other '%' is literal.

// NameMax is the longest name a folder entry may have (Linux NAME_MAX).
const NameMax = 255

const (
	besideSuffix = "%~"
	splitSuffix  = "%+"
)

// plain reports whether seg is its own local name (before the collision
// suffix and splitting).
func plain(seg string) bool {
	switch seg {
	case "", ".", "..", "%_", "%.", "%..":
		return false
	}
	return !strings.ContainsRune(seg, 0) && !strings.Contains(seg, "%25") && !strings.Contains(seg, "%00") &&
		!strings.HasSuffix(seg, besideSuffix) && !strings.HasSuffix(seg, splitSuffix)
}

// NeedsMapping reports whether seg's local name differs from seg when it
// is not a directory beside a file.
func NeedsMapping(seg string) bool { return !plain(seg) || len(seg) > NameMax }

// LocalName returns the local name of segment seg; dirBesideFile says seg
// is a directory with a file of the same name in the same directory. The
// result is one name, or for a segment longer than NameMax several names
// joined by "/" (nested folders).
func LocalName(seg string, dirBesideFile bool) string {
	e := seg
	switch {
	case plain(seg):
	case seg == "":
		e = "%_"
	case seg == ".":
		e = "%."
	case seg == "..":
		e = "%.."
	default:
		var b strings.Builder
		for i := 0; i < len(seg); i++ {
			switch seg[i] {
			case '%':
				b.WriteString("%25")
			case 0:
				b.WriteString("%00")
			default:
				b.WriteByte(seg[i])
			}
		}
		e = b.String()
	}
	if dirBesideFile {
		e += besideSuffix
	}
	if len(e) <= NameMax {
		return e
	}
	var b strings.Builder
	for len(e) > NameMax {
		cut := NameMax - len(splitSuffix)
		// Do not cut inside a %XX escape or a UTF-8 sequence. The rest
		// stays longer than 2 bytes, so it is never "." or "..".
		for cut > 3 && (!utf8.RuneStart(e[cut]) || e[cut-1] == '%' || e[cut-2] == '%') {
			cut--
		}
		b.WriteString(e[:cut])
		b.WriteString(splitSuffix)
		b.WriteByte('/')
		e = e[cut:]
	}
	b.WriteString(e)
	return b.String()
}

// ErrNotMapped says a local name was not made by LocalName.
var ErrNotMapped = errors.New("not a name made by the key mapping")

// SegmentFromLocal reverses LocalName: name is one local name, or the
// "/"-joined pieces of a long one.
func SegmentFromLocal(name string) (seg string, dirBesideFile bool, err error) {
	pieces := strings.Split(name, "/")
	var e strings.Builder
	for i, p := range pieces {
		if i < len(pieces)-1 {
			if !strings.HasSuffix(p, splitSuffix) {
				return "", false, fmt.Errorf("%q: %w", name, ErrNotMapped)
			}
			p = strings.TrimSuffix(p, splitSuffix)
		}
		e.WriteString(p)
	}
	s := e.String()
	if strings.HasSuffix(s, besideSuffix) {
		s, dirBesideFile = strings.TrimSuffix(s, besideSuffix), true
	}
	switch s {
	case "%_":
		return "", dirBesideFile, nil
	case "%.":
		return ".", dirBesideFile, nil
	case "%..":
		return "..", dirBesideFile, nil
	case "", ".", "..":
		return "", false, fmt.Errorf("%q: %w", name, ErrNotMapped)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			return "", false, fmt.Errorf("%q: %w", name, ErrNotMapped)
		case c != '%':
			b.WriteByte(c)
		case strings.HasPrefix(s[i:], "%25"):
			b.WriteByte('%')
			i += 2
		case strings.HasPrefix(s[i:], "%00"):
			b.WriteByte(0)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	seg = b.String()
	if len(pieces) > 1 && LocalName(seg, dirBesideFile) != name {
		return "", false, fmt.Errorf("%q: %w (split where it need not be)", name, ErrNotMapped)
	}
	return seg, dirBesideFile, nil
}
