package backup

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strings"
	"sync/atomic"
)

// Patterns is a list of gitignore-style patterns matched against paths
// below a source's root ("a/b/c", segments joined by "/"):
//
//   - `*` matches any run of characters within a segment, `?` one
//     character, `[a-z]` a class, `\` escapes (path.Match, segment by
//     segment);
//   - a `**` segment matches zero or more segments;
//   - a pattern with a `/` at its start or in its middle is anchored to
//     the source root (`/build`, `docs/*.pdf`); without one it matches
//     the entry's name at any depth (`*.tmp`, `node_modules`);
//   - a trailing `/` matches directories only (`cache/`);
//   - a leading `!` re-includes what an earlier pattern excluded: the
//     last pattern that matches decides. As in git, an entry whose
//     directory is excluded stays excluded, since the directory is not
//     read.
//
// A pattern that matches a directory excludes everything below it.
type Patterns struct {
	pats []pattern
}

type pattern struct {
	text     string // as given, for messages
	segs     []string
	anchored bool
	dirOnly  bool
	negate   bool
	fold     bool // case-insensitive: segs are lower case
	prefix   string
	isPrefix bool
}

// PrefixMark starts a pattern that is a plain key prefix (bucket
// sources): "prefix:logs/2024-" matches every key starting with
// "logs/2024-", with no glob characters.
const PrefixMark = "prefix:"

// Add compiles one pattern; fold makes it case-insensitive (--iexclude).
// Blank patterns are refused; an invalid glob is an error naming it.
func (p *Patterns) Add(text string, fold bool) error {
	pt := pattern{text: text, fold: fold}
	s := text
	if strings.HasPrefix(s, "!") {
		pt.negate, s = true, s[1:]
	}
	if rest, ok := strings.CutPrefix(s, PrefixMark); ok {
		if rest == "" {
			return fmt.Errorf("pattern %q: an empty prefix", text)
		}
		pt.isPrefix, pt.prefix = true, strings.TrimPrefix(rest, "/")
		if fold {
			pt.prefix = strings.ToLower(pt.prefix)
		}
		p.pats = append(p.pats, pt)
		return nil
	}
	if strings.HasSuffix(s, "/") {
		pt.dirOnly, s = true, strings.TrimRight(s, "/")
	}
	if strings.HasPrefix(s, "/") {
		pt.anchored, s = true, strings.TrimLeft(s, "/")
	}
	if strings.Contains(s, "/") {
		pt.anchored = true
	}
	if s == "" {
		return fmt.Errorf("pattern %q matches nothing", text)
	}
	if fold {
		s = strings.ToLower(s)
	}
	pt.segs = strings.Split(s, "/")
	for _, seg := range pt.segs {
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", text, err)
		}
	}
	p.pats = append(p.pats, pt)
	return nil
}

// AddAll adds patterns, all case-sensitive or all not.
func (p *Patterns) AddAll(texts []string, fold bool) error {
	for _, t := range texts {
		if err := p.Add(t, fold); err != nil {
			return err
		}
	}
	return nil
}

// Empty says there are no patterns.
func (p *Patterns) Empty() bool { return p == nil || len(p.pats) == 0 }

// Match says whether the entry at rel ("a/b/c") is matched: the last
// pattern that matches it decides (a `!` pattern unmatches). Only the
// entry itself is tested, not its directories: a walk does not descend
// into a matched directory; MatchKey tests a flat key with its prefixes.
func (p *Patterns) Match(rel string, isDir bool) bool {
	if p.Empty() {
		return false
	}
	segs := strings.Split(rel, "/")
	var lower []string
	matched := false
	for i := range p.pats {
		pt := &p.pats[i]
		if matched != pt.negate {
			continue // cannot change the outcome
		}
		s := segs
		if pt.fold {
			if lower == nil {
				lower = strings.Split(strings.ToLower(rel), "/")
			}
			s = lower
		}
		if pt.match(s, isDir) {
			matched = !pt.negate
		}
	}
	return matched
}

// MatchKey says whether a bucket key (relative to the source prefix) is
// matched, as a file or through any of its prefixes up to a "/" taken as
// a directory, as if a walk had met them in turn.
func (p *Patterns) MatchKey(rel string) bool {
	if p.Empty() {
		return false
	}
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' && p.Match(rel[:i], true) {
			return true
		}
	}
	return p.Match(rel, false)
}

func (pt *pattern) match(segs []string, isDir bool) bool {
	if pt.isPrefix {
		return strings.HasPrefix(strings.Join(segs, "/"), pt.prefix)
	}
	if pt.dirOnly && !isDir {
		return false
	}
	if !pt.anchored {
		// A pattern of one segment: the entry's own name.
		ok, _ := path.Match(pt.segs[0], segs[len(segs)-1])
		return ok
	}
	return matchSegs(pt.segs, segs)
}

// matchSegs matches pattern segments against path segments, "**"
// standing for any number of segments.
func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			if len(rest) == 0 {
				return len(segs) > 0 // "a/**": what is inside a, not a
			}
			for i := 0; i <= len(segs); i++ {
				if matchSegs(rest, segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], segs[0]); !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}

// ReadPatternFile reads an exclude file: one pattern a line, surrounding
// spaces trimmed, blank lines and lines starting with "#" ignored.
func ReadPatternFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("exclude file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("exclude file %s: %w", name, err)
	}
	return out, nil
}

// Filter is what a source leaves out by the user's choice (not for an
// error: those are skipped entries). The zero Filter keeps everything.
type Filter struct {
	// Exclude: entries (and, for a directory, all below it) left out.
	Exclude Patterns
	// Include, when not empty, keeps only the keys it matches (bucket
	// sources), before Exclude is applied.
	Include Patterns
	// IfPresent: a directory holding an entry of one of these names is
	// left out (folders).
	IfPresent []string
	// LargerThan, if not 0, leaves out files of more bytes.
	LargerThan uint64
	// OneFileSystem keeps the walk on the root's file system: a mount
	// point is kept as an empty directory (folders).
	OneFileSystem bool

	files, dirs atomic.Uint64
}

// Clone returns a filter with f's choices and counters of its own (a
// scan ahead of the backup must not count into the backup's).
func (f *Filter) Clone() *Filter {
	return &Filter{Exclude: f.Exclude, Include: f.Include, IfPresent: f.IfPresent,
		LargerThan: f.LargerThan, OneFileSystem: f.OneFileSystem}
}

// Excluded counts what a filter left out.
type Excluded struct {
	Files, Dirs uint64
}

// Count records one entry left out; a directory counts once, whatever
// it holds.
func (f *Filter) Count(isDir bool) {
	if isDir {
		f.dirs.Add(1)
	} else {
		f.files.Add(1)
	}
}

// Counts returns what was left out since the last Reset.
func (f *Filter) Counts() Excluded {
	if f == nil {
		return Excluded{}
	}
	return Excluded{Files: f.files.Load(), Dirs: f.dirs.Load()}
}

// Reset zeroes the counts; a source does it as its walk starts.
func (f *Filter) Reset() {
	if f != nil {
		f.files.Store(0)
		f.dirs.Store(0)
	}
}

// KeepKey says whether a bucket key (relative to the source prefix) of
// size bytes is backed up, and counts it when it is not.
func (f *Filter) KeepKey(rel string, size uint64) bool {
	if f == nil {
		return true
	}
	if (!f.Include.Empty() && !f.Include.MatchKey(rel)) || f.Exclude.MatchKey(rel) ||
		(f.LargerThan > 0 && size > f.LargerThan) {
		f.Count(false)
		return false
	}
	return true
}

// Excluder is implemented by sources with a Filter: the backup records
// what they left out in the snapshot's stats.
type Excluder interface {
	ExcludedCounts() Excluded
}
