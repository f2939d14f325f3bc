package backup

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPatternsMatch(t *testing.T) {
	type probe struct {
		path  string
		dir   bool
		match bool
	}
	cases := []struct {
		pats   []string
		fold   bool
		probes []probe
	}{
		// No slash: the name at any depth.
		{[]string{"*.tmp"}, false, []probe{{"a.tmp", false, true}, {"x/y/a.tmp", false, true}, {"a.tmp.txt", false, false}, {"x.tmp/y", false, false}, {"A.TMP", false, false}}},
		{[]string{"node_modules"}, false, []probe{{"node_modules", true, true}, {"src/node_modules", true, true}, {"src/node_modules2", true, false}}},
		{[]string{"?.c"}, false, []probe{{"a.c", false, true}, {"ab.c", false, false}}},
		{[]string{"[ab]*.go"}, false, []probe{{"b1.go", false, true}, {"c1.go", false, false}}},
		{[]string{`\*star`}, false, []probe{{"*star", false, true}, {"xstar", false, false}}},
		// A leading slash anchors at the root.
		{[]string{"/build"}, false, []probe{{"build", true, true}, {"build", false, true}, {"src/build", true, false}}},
		// A slash in the middle anchors too.
		{[]string{"docs/*.pdf"}, false, []probe{{"docs/a.pdf", false, true}, {"x/docs/a.pdf", false, false}, {"docs/sub/a.pdf", false, false}}},
		// "**" spans segments, zero or more.
		{[]string{"**/cache"}, false, []probe{{"cache", true, true}, {"a/b/cache", true, true}, {"a/b/cache2", true, false}}},
		{[]string{"a/**/z"}, false, []probe{{"a/z", false, true}, {"a/b/c/z", false, true}, {"b/a/z", false, false}}},
		{[]string{"/logs/**"}, false, []probe{{"logs/x", false, true}, {"logs/x/y", false, true}, {"logs", true, false}}},
		// A trailing slash: directories only.
		{[]string{"cache/"}, false, []probe{{"cache", true, true}, {"cache", false, false}, {"x/cache", true, true}}},
		{[]string{"/out/"}, false, []probe{{"out", true, true}, {"out", false, false}, {"x/out", true, false}}},
		// "!" re-includes; the last match decides.
		{[]string{"*.log", "!keep.log"}, false, []probe{{"a.log", false, true}, {"keep.log", false, false}, {"d/keep.log", false, false}}},
		{[]string{"!keep.log", "*.log"}, false, []probe{{"keep.log", false, true}}},
		// Case-insensitive (--iexclude).
		{[]string{"*.JPG"}, true, []probe{{"a.jpg", false, true}, {"B/A.Jpg", false, true}, {"a.png", false, false}}},
		{[]string{"/Photos/raw"}, true, []probe{{"photos/RAW", true, true}}},
		// Plain prefixes.
		{[]string{"prefix:logs/2024-"}, false, []probe{{"logs/2024-01.gz", false, true}, {"logs/2024-02/x", false, true}, {"logs/2023-01.gz", false, false}, {"x/logs/2024-01", false, false}}},
		{[]string{"prefix:/a*"}, false, []probe{{"a*b", false, true}, {"ab", false, false}}},
	}
	for _, c := range cases {
		var p Patterns
		if err := p.AddAll(c.pats, c.fold); err != nil {
			t.Fatalf("%q: %v", c.pats, err)
		}
		for _, pr := range c.probes {
			if got := p.Match(pr.path, pr.dir); got != pr.match {
				t.Errorf("patterns %q (fold %v): Match(%q, dir=%v) = %v, want %v", c.pats, c.fold, pr.path, pr.dir, got, pr.match)
			}
		}
	}
}

func TestPatternsMatchKey(t *testing.T) {
	var p Patterns
	if err := p.AddAll([]string{"tmp/", "/logs/2024-*", "*.bak"}, false); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"tmp/a": true, "x/tmp/y/z": true, "tmp": false, // tmp/ is a directory: the key "tmp" is a file
		"logs/2024-01/a.gz": true, "logs/2024-01.gz": true, "logs/2023/a": false,
		"a/b.bak": true, "a.bak/c": true, // a.bak is a directory of that name "keep/me": false, "a//b": false,
	} {
		if got := p.MatchKey(key); got != want {
			t.Errorf("MatchKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestPatternsBad(t *testing.T) {
	for _, s := range []string{"[", "a/[b", "/", "!", "prefix:", ""} {
		var p Patterns
		if err := p.Add(s, false); err == nil {
			t.Errorf("Add(%q) accepted", s)
		}
	}
}

func TestFilterKeepKey(t *testing.T) {
	f := &Filter{LargerThan: 100}
	f.Include.AddAll([]string{"prefix:photos/", "*.txt"}, false)
	f.Exclude.AddAll([]string{"raw/"}, false)
	for _, c := range []struct {
		key  string
		size uint64
		keep bool
	}{
		{"photos/a.jpg", 10, true}, {"notes/a.txt", 10, true}, {"other/a.jpg", 10, false},
		{"photos/raw/a.cr2", 10, false}, {"photos/big.jpg", 101, false}, {"photos/edge.jpg", 100, true},
	} {
		if got := f.KeepKey(c.key, c.size); got != c.keep {
			t.Errorf("KeepKey(%q, %d) = %v", c.key, c.size, got)
		}
	}
	if got := f.Counts(); got != (Excluded{Files: 3}) {
		t.Errorf("counts %+v, want 3 files", got)
	}
}

func TestReadPatternFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ex")
	os.WriteFile(p, []byte("# comment\n*.tmp\n\n  /build/  \n\t#also a comment\n!keep.tmp\n"), 0o644)
	got, err := ReadPatternFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"*.tmp", "/build/", "!keep.tmp"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := ReadPatternFile(p + ".missing"); err == nil {
		t.Error("a missing file was accepted")
	}
}
