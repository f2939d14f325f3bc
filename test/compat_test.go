package test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// TestStoreFormatV1Fixture reads test/testdata/store-v1, a store that
// coffer wrote in format 1 and that is frozen in the repository
// (scripts/mkfixture), and proves this coffer still lists, checks,
// restores and cats it exactly as its manifest says. If it fails, a
// change broke reading format 1 stores: fix the reader, never the fixture.
func TestStoreFormatV1Fixture(t *testing.T) { testStoreFixture(t, 1) }

// testStoreFixture checks the fixture of one format version, on a copy:
// the fixture itself is never opened by coffer.
func testStoreFixture(t *testing.T, version int) {
	name := fmt.Sprintf("store-v%d", version)
	fixture := filepath.Join("testdata", name)
	storeDir := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(storeDir, os.DirFS(fixture)); err != nil {
		t.Fatal(err)
	}
	pass, err := os.ReadFile(fixture + ".passphrase")
	if err != nil {
		t.Fatal(err)
	}
	want := readManifest(t, fixture+".manifest")
	e := &env{t: t, store: storeDir, pass: strings.TrimSpace(string(pass))}

	// Two snapshots, the second the child of the first (so restoring it
	// exercises reused subtrees), written with two index files.
	if idx, err := os.ReadDir(filepath.Join(storeDir, filepath.FromSlash(store.Prefix(store.KindIndex)))); err != nil || len(idx) != 2 {
		t.Fatalf("%s should hold 2 index files: %d, %v", name, len(idx), err)
	}
	var snaps []struct {
		snapOut
		Parent string `json:"parent"`
	}
	r := e.ok("ls", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	if len(snaps) != 2 || len(want) != 2 {
		t.Fatalf("ls: %d snapshots, manifest: %d; want 2\n%s", len(snaps), len(want), r.stdout)
	}
	if snaps[1].Parent != snaps[0].ID || snaps[0].Partial || snaps[1].Partial {
		t.Fatalf("ls: want snapshot 2 the complete child of snapshot 1:\n%s", r.stdout)
	}

	e.ok("check")

	for i, sn := range snaps {
		out := filepath.Join(t.TempDir(), "restore")
		e.ok("restore", "-to", out, sn.ID)
		got, err := testtree.Manifest(out)
		if err != nil {
			t.Fatal(err)
		}
		compareManifest(t, fmt.Sprintf("%s snapshot %d (%s)", name, i+1, sn.Short), got, want[i+1])
	}

	// cat: a file that differs between the snapshots, from the first
	// (by id prefix), and the multi-chunk file from latest.
	for _, c := range []struct {
		snap int
		ref  string
		path string
	}{{1, snaps[0].ID[:8], "/docs/readme.txt"}, {2, "latest", "/data/random.bin"}} {
		line, ok := want[c.snap][c.path]
		if !ok {
			t.Fatalf("manifest has no %s in snapshot %d", c.path, c.snap)
		}
		f := strings.Split(line, "\t")
		got := e.ok("cat", c.ref+":"+c.path).stdout
		sum := sha256.Sum256([]byte(got))
		if strconv.Itoa(len(got)) != f[3] || hex.EncodeToString(sum[:]) != f[5] {
			t.Errorf("cat %s:%s: %d bytes, sha256 %x; manifest: %s bytes, sha256 %s", c.ref, c.path, len(got), sum, f[3], f[5])
		}
	}
}

// readManifest reads a fixture manifest (scripts/mkfixture): for each
// snapshot number, its testtree.Manifest lines by path.
func readManifest(t *testing.T, file string) map[int]map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[int]map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		num, line, _ := strings.Cut(text, "\t")
		snap, err := strconv.Atoi(num)
		path, ok := manifestPath(line)
		if err != nil || !ok {
			t.Fatalf("%s:%d: not SNAPSHOT<tab>PATH<tab>…: %q", file, n, text)
		}
		if m[snap] == nil {
			m[snap] = map[string]string{}
		}
		m[snap][path] = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// manifestPath returns the path of a testtree.Manifest line: its first
// field, unquoted.
func manifestPath(line string) (string, bool) {
	f := strings.Split(line, "\t")
	if len(f) != 6 {
		return "", false
	}
	p, err := strconv.Unquote(f[0])
	return p, err == nil
}

// compareManifest fails the test for every entry that is missing from
// got, differs from want (bytes, size, mode, mtime, type or target), or
// is in got only.
func compareManifest(t *testing.T, what string, got []string, want map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range got {
		p, _ := manifestPath(line)
		seen[p] = true
		switch w, ok := want[p]; {
		case !ok:
			t.Errorf("%s: restore has an extra entry %q", what, p)
		case line != w:
			t.Errorf("%s: %q differs\n got: %s\nwant: %s", what, p, line, w)
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s: missing in restore: %q", what, p)
		}
	}
}
