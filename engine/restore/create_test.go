package restore

import (
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine/tree"
)

func TestRoundRobin(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"/a/1", "/a/1"},
		{"/a/1 /a/2 /a/3", "/a/1 /a/2 /a/3"},
		{"/a/1 /a/2 /a/3 /b/1 /b/2 /c/1", "/a/1 /b/1 /c/1 /a/2 /b/2 /a/3"},
		{"/x /a/1 /y /a/b/1 /a/2", "/x /a/1 /a/b/1 /y /a/2"},
		{"//x /a//y /a//z /a/1", "//x /a//y /a/1 /a//z"},
	} {
		var in []*restoreFile
		for _, p := range strings.Fields(c.in) {
			in = append(in, &restoreFile{path: p})
		}
		var got []string
		for _, f := range roundRobin(in) {
			got = append(got, f.path)
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("roundRobin(%s) = %s, want %s", c.in, g, c.want)
		}
	}
}

// TestBesides: a directory is found beside a file of the same name
// however many entries sort between them.
func TestBesides(t *testing.T) {
	type e struct {
		name string
		dir  bool
	}
	entries := []e{{"a", false}, {"a b", false}, {"a-c", true}, {"a", true}, {"b", true}, {"c", false}, {"c.d", false}, {"c", true}, {"d", true}}
	want := map[string]bool{"a": true, "c": true}
	var nodes []*tree.Node
	for _, x := range entries {
		n := &tree.Node{Name: x.name, Type: tree.TypeFile}
		if x.dir {
			n.Type = tree.TypeDir
		}
		nodes = append(nodes, n)
	}
	// The walk meets entries in sort-key order.
	for i := 1; i < len(nodes); i++ {
		if nodes[i-1].SortKey() >= nodes[i].SortKey() {
			t.Fatalf("test entries out of order at %q", nodes[i].SortKey())
		}
	}
	var b besides
	for _, n := range nodes {
		if got := b.next(n); got != (n.Type == tree.TypeDir && want[n.Name]) {
			t.Errorf("%q (dir %v): beside %v", n.Name, n.Type == tree.TypeDir, got)
		}
	}
}

// TestSizeFetches: the files a restore may hold open (those of the fetches
// planned, queued and being written) stay within the limit on open files.
func TestSizeFetches(t *testing.T) {
	if f, w := sizeFetches(0, 16); f != maxFetchFiles || w != 16 {
		t.Fatalf("no limit: %d files per fetch, %d workers", f, w)
	}
	for _, limit := range []int{100, 200, 1024, 4096, 20000, 1 << 20} {
		for _, workers := range []int{1, 4, 16, 64} {
			f, w := sizeFetches(limit, workers)
			open := f*(2*w+maxOpenFetches+1) + 1
			if f < 1 || w < 1 || w > workers || f > maxFetchFiles || open+w+openReserve > max(limit, 2*openReserve) {
				t.Errorf("limit %d, %d workers: %d files per fetch, %d workers: up to %d open", limit, workers, f, w, open)
			}
		}
	}
	if f, w := sizeFetches(20000, 16); f != maxFetchFiles || w != 16 {
		t.Errorf("limit 20000: %d files per fetch, %d workers; want no change", f, w)
	}
}
