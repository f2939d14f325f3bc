package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
	"golang.org/x/sys/unix"
)

// TestStoreFormatV1Fixture reads test/testdata/store-v1, a store that
// coffer wrote in format 1 and that is frozen in the repository
// (scripts/mkfixture), and proves this coffer still lists, checks,
// restores and cats it exactly as its manifest says. If it fails, a
// change broke reading format 1 stores: fix the reader, never the fixture.
func TestStoreFormatV1Fixture(t *testing.T) { testStoreFixture(t, 1) }

// TestStoreFormatV2Fixture reads test/testdata/store-v2 the same way. Its
// folder /many is a directory of 400 entries written with two levels of
// index pages (format 2, docs/FORMAT.md §7): the fixture was written by
// the real coffer with the tree builder's cut rules lowered at link time
// (scripts/mkfixture).
func TestStoreFormatV2Fixture(t *testing.T) { testStoreFixture(t, 2) }

// fixtureIndexed is, per format version, a directory of the fixture that
// has index pages, and how many levels of them at least.
var fixtureIndexed = map[int]struct {
	dir    string
	height int
}{2: {"/many", 2}}

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

	if ix, ok := fixtureIndexed[version]; ok {
		names := checkIndexedDir(t, e, storeDir, ix.dir, ix.height, want[2])
		// A subtest, so that a machine without FUSE skips only this.
		t.Run("mount", func(t *testing.T) {
			se := *e
			se.t = t
			checkIndexedDirMount(t, &se, snaps[1].ID+":"+ix.dir, names)
		})
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

	// Last: it adds a snapshot (a new latest).
	checkFixtureWrites(t, e, storeDir, version)
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

// checkIndexedDir checks that dir in the fixture's latest snapshot has
// index pages (at least height levels), then lists it and cats entries
// of it through coffer: ls walks every page (its names, in sort-key
// order, must be the manifest's), cat looks one entry up. It
// returns the names in dir in sort-key order (docs/FORMAT.md §7).
func checkIndexedDir(t *testing.T, e *env, storeDir, dir string, height int, want map[string]string) []string {
	t.Helper()
	ctx := context.Background()
	st, err := store.NewFolder(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := engine.Open(ctx, st, []byte(e.pass))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sn, err := r.FindSnapshot(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.ResolvePath(ctx, sn, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.LoadDir(ctx, n.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if d.Height < height {
		t.Fatalf("%s has %d levels of index pages, want at least %d", dir, d.Height, height)
	}

	var entries []string
	for p := range want {
		if strings.HasPrefix(p, dir+"/") && !strings.Contains(p[len(dir)+1:], "/") {
			entries = append(entries, p[len(dir)+1:])
		}
	}
	sortKey := func(name string) string {
		if strings.Split(want[dir+"/"+name], "\t")[1] == "dir" {
			return name + "/"
		}
		return name
	}
	sort.Slice(entries, func(i, j int) bool { return sortKey(entries[i]) < sortKey(entries[j]) })
	if len(entries) < 100 {
		t.Fatalf("the manifest has %d entries in %s, want at least 100", len(entries), dir)
	}
	out := e.ok("ls", "--json", "latest:"+dir).stdout
	var ls []struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatalf("ls --json latest:%s: %v\n%s", dir, err, out)
	}
	listed := make([]string, len(ls))
	for i, l := range ls {
		listed[i] = strings.TrimPrefix(l.Path, dir+"/")
	}
	if strings.Join(listed, "\n") != strings.Join(entries, "\n") {
		t.Fatalf("ls latest:%s lists %d entries from %q, the manifest %d from %q", dir, len(listed), first(listed), len(entries), first(entries))
	}
	checked := 0
	for _, name := range entries {
		f := strings.Split(want[dir+"/"+name], "\t")
		if f[1] != "file" || f[3] == "0" {
			continue
		}
		got := e.ok("cat", "latest:"+dir+"/"+name).stdout
		if sum := sha256.Sum256([]byte(got)); hex.EncodeToString(sum[:]) != f[5] {
			t.Errorf("cat latest:%s/%s: sha256 %x, manifest %s", dir, name, sum, f[5])
		}
		if checked++; checked == 5 {
			break
		}
	}
	if checked == 0 {
		t.Fatalf("no non-empty file in %s to cat", dir)
	}
	return entries
}

// checkFixtureWrites backs a new folder up into the (copied) fixture
// store: coffer keeps writing into a store of an older format what that
// format allows, and the store keeps its version.
func checkFixtureWrites(t *testing.T, e *env, storeDir string, version int) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "new")
	for i := range 300 {
		p := filepath.Join(src, "dir", fmt.Sprintf("f%03d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var sn snapOut
	if err := json.Unmarshal([]byte(e.ok("backup", "--json", src).stdout), &sn); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Params struct {
			Version int `json:"version"`
		} `json:"params"`
	}
	data, err := os.ReadFile(filepath.Join(storeDir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil || cfg.Params.Version != version {
		t.Fatalf("after a backup the format-%d store says version %d (%v)", version, cfg.Params.Version, err)
	}
	e.ok("check", sn.ID)
	out := filepath.Join(t.TempDir(), "restore")
	e.ok("restore", "-to", out, sn.ID)
	for _, i := range []int{0, 299} {
		got, err := os.ReadFile(filepath.Join(out, "dir", fmt.Sprintf("f%03d", i)))
		if err != nil || string(got) != fmt.Sprintf("file %d\n", i) {
			t.Fatalf("restored f%03d: %q, %v", i, got, err)
		}
	}
}

// checkIndexedDirMount mounts path (a directory with index pages, holding
// names in this order) and lists it through the kernel: from offsets
// (seekdir), which the mount serves by descending the index pages by entry
// counts, and on a fresh mount from the start.
func checkIndexedDirMount(t *testing.T, e *env, path string, names []string) {
	t.Helper()
	needFUSE(t)
	// Offsets are positions: after "." and "..", entry i is followed by
	// offset i+3 (fusefs/tree.go).
	seeks := []int64{3 + 200, 3 + 5, 3 + 399, 3 + 1000}
	m := e.mount(nil, nil, path)
	fd, err := unix.Open(m.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := map[int64][]string{}
	for _, off := range seeks {
		if _, err := unix.Seek(fd, off, 0); err != nil {
			t.Fatal(err)
		}
		after[off] = getdents(t, fd)
	}
	unix.Close(fd)
	m.stop(os.Interrupt)

	m = e.mount(nil, nil, path)
	defer m.stop(os.Interrupt)
	fd, err = unix.Open(m.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := getdents(t, fd)
	unix.Close(fd)
	if want := append([]string{".", ".."}, names...); strings.Join(all, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the mount lists %d entries of %s from %q, want %d from %q", len(all), path, all[:min(len(all), 5)], len(want), want[:min(len(want), 5)])
	}
	for _, off := range seeks {
		var want []string
		if int(off) < len(all) {
			want = all[off:]
		}
		if got := after[off]; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("after seekdir(%d): %d entries from %q, want %d from %q", off, len(got), first(got), len(want), first(want))
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// getdents reads the directory fd from its offset to the end and returns
// the names.
func getdents(t *testing.T, fd int) []string {
	t.Helper()
	var names []string
	buf := make([]byte, 4096) // a few dozen entries per call
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return names
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(b[16]) | int(b[17])<<8
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			names = append(names, string(name))
			b = b[reclen:]
		}
	}
}
