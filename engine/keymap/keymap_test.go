package keymap

import (
	"errors"
	"strings"
	"testing"
)

func TestLocalNameTable(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	cases := []struct {
		seg    string
		beside bool
		want   string
	}{
		{"a", false, "a"},
		{"photo 50% off.jpg", false, "photo 50% off.jpg"},
		{"", false, "%_"},
		{".", false, "%."},
		{"..", false, "%.."},
		{"...", false, "..."},
		{"a\x00b", false, "a%00b"},
		{"%25", false, "%2525"},
		{"100%25 sure%", false, "100%2525 sure%25"},
		{"%_", false, "%25_"},
		{"x%~", false, "x%25~"},
		{"a", true, "a%~"},
		{"", true, "%_%~"},
		{"a%", true, "a%%~"},
		{"日本語/", false, "日本語/"}, // never given a "/", but kept as bytes
	}
	for _, c := range cases {
		if c.seg == "日本語/" {
			continue
		}
		if got := LocalName(c.seg, c.beside); got != c.want {
			t.Errorf("LocalName(%q, %v) = %q, want %q", c.seg, c.beside, got, c.want)
		}
	}
	ln := LocalName(long, false)
	pieces := strings.Split(ln, "/")
	if len(pieces) != 2 || !strings.HasSuffix(pieces[0], "%+") || len(pieces[0]) > NameMax || pieces[0][:len(pieces[0])-2]+pieces[1] != long {
		t.Errorf("long name split as %q", ln)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00", "x%+/y"} {
		if _, _, err := SegmentFromLocal(bad); !errors.Is(err, ErrNotMapped) {
			t.Errorf("SegmentFromLocal(%q) = %v, want ErrNotMapped", bad, err)
		}
	}
}

func checkLocalName(t *testing.T, seg string, beside bool) {
	t.Helper()
	ln := LocalName(seg, beside)
	for _, p := range strings.Split(ln, "/") {
		if p == "" || p == "." || p == ".." || len(p) > NameMax || strings.ContainsRune(p, 0) {
			t.Fatalf("LocalName(%q, %v) = %q: bad piece %q", seg, beside, ln, p)
		}
	}
	if strings.Contains(seg, "/") {
		return
	}
	got, gb, err := SegmentFromLocal(ln)
	if err != nil || got != seg || gb != beside {
		t.Fatalf("SegmentFromLocal(LocalName(%q, %v) = %q) = %q, %v, %v", seg, beside, ln, got, gb, err)
	}
	if !beside && !NeedsMapping(seg) && ln != seg {
		t.Fatalf("plain %q mapped to %q", seg, ln)
	}
}

func FuzzLocalName(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a", "%", "%25", "%00", "%_", "%.", "%..", "x%~", "x%+", "a\x00",
		strings.Repeat("a", 254), strings.Repeat("%", 300), strings.Repeat("é", 300), strings.Repeat(".", 256)} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, seg string, beside bool) {
		if strings.Contains(seg, "/") {
			seg = strings.ReplaceAll(seg, "/", "%")
		}
		checkLocalName(t, seg, beside)
	})
}

func TestLocalNameLengths(t *testing.T) {
	for n := 250; n < 800; n++ {
		for _, unit := range []string{"a", "%", "é", ".", "\x00", "a%25"} {
			seg := strings.Repeat(unit, n/len(unit)+1)[:n]
			if !strings.HasPrefix(unit, "é") || n%2 == 0 {
				checkLocalName(t, seg, n%3 == 0)
			}
		}
	}
}
