package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// The default chunker's bounds, which the corpus straddles.
var defaultSizes = testtree.Sizes{Min: 512 << 10, Max: 8 << 20}

type snapOut struct {
	ID      string `json:"id"`
	Short   string `json:"short_id"`
	Source  string `json:"source"`
	Partial bool   `json:"partial"`
	Stats   struct {
		Files     uint64 `json:"files"`
		Bytes     uint64 `json:"bytes"`
		ReadBytes uint64 `json:"read_bytes"`
		Unchanged uint64 `json:"unchanged"`
		NewBlobs  uint64 `json:"new_blobs"`
	} `json:"stats"`
}

func (e *env) backup(dir string, args ...string) snapOut {
	e.t.Helper()
	r := e.ok(append(append([]string{"backup", "--json"}, args...), dir)...)
	var s snapOut
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("backup --json: %v\n%s", err, r.stdout)
	}
	return s
}

func TestRoundTripLocal(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := testtree.Make(src, defaultSizes); err != nil {
		t.Fatal(err)
	}
	s1 := e.backup(src)
	if s1.Stats.Files == 0 || s1.Stats.ReadBytes == 0 {
		t.Fatalf("first backup read nothing: %+v", s1)
	}

	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "-to", out, s1.Short)
	if err := testtree.Compare(src, out); err != nil {
		t.Fatal(err)
	}

	// An unchanged re-backup reads no content and reuses everything.
	s2 := e.backup(src)
	if s2.Stats.ReadBytes != 0 || s2.Stats.NewBlobs != 0 || s2.Stats.Unchanged != s1.Stats.Files {
		t.Fatalf("unchanged re-backup: %+v (first: %+v)", s2.Stats, s1.Stats)
	}

	// ls lists both snapshots, newest last, with id, source, files.
	ls := e.ok("ls").stdout
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], s1.Short) || !strings.HasPrefix(lines[2], s2.Short) ||
		!strings.Contains(lines[2], src) {
		t.Fatalf("ls:\n%s", ls)
	}

	// ls -recursive names every entry of the source.
	var want []string
	filepath.Walk(src, func(p string, _ os.FileInfo, _ error) error {
		if rel, _ := filepath.Rel(src, p); rel != "." {
			want = append(want, "/"+rel)
		}
		return nil
	})
	var got []struct{ Path string }
	if err := json.Unmarshal([]byte(e.ok("ls", "--json", "-recursive", "latest").stdout), &got); err != nil {
		t.Fatal(err)
	}
	var gotPaths []string
	for _, g := range got {
		gotPaths = append(gotPaths, g.Path)
	}
	sort.Strings(want)
	sort.Strings(gotPaths)
	if strings.Join(want, "\n") != strings.Join(gotPaths, "\n") {
		t.Fatalf("ls -recursive:\n%v\nwant:\n%v", gotPaths, want)
	}

	// cat returns a file's bytes, by unique prefix and by latest.
	for _, p := range []string{"random.bin", "unicode/日本語のファイル", "sizes/f8388609", "empty"} {
		wantB, _ := os.ReadFile(filepath.Join(src, p))
		for _, id := range []string{"latest", s1.ID[:6]} {
			if got := e.ok("cat", id+":/"+p).stdout; got != string(wantB) {
				t.Fatalf("cat %s:/%s: %d bytes, want %d", id, p, len(got), len(wantB))
			}
		}
	}

	// Restoring one subtree and one file.
	sub := filepath.Join(t.TempDir(), "sub")
	e.ok("restore", "-to", sub, "latest:/unicode")
	if err := testtree.Compare(filepath.Join(src, "unicode"), sub); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(t.TempDir(), "one")
	e.ok("restore", "-to", one, "latest:/sizes/f1")
	if b, _ := os.ReadFile(filepath.Join(one, "f1")); len(b) != 1 {
		t.Fatalf("restore of one file: %q", b)
	}

	// check and its alias verify pass; info shows the dedup of two snapshots.
	e.ok("check")
	e.ok("verify", "latest")
	var info struct {
		Snapshots  int     `json:"snapshots"`
		DedupRatio float64 `json:"dedup_ratio"`
	}
	json.Unmarshal([]byte(e.ok("info", "--json").stdout), &info)
	if info.Snapshots != 2 || info.DedupRatio < 1.9 {
		t.Fatalf("info: %+v", info)
	}
	if v := e.ok("version").stdout; !strings.Contains(v, "sources: fs") {
		t.Fatalf("version: %s", v)
	}
}

func TestWrongPassphraseWritesNothing(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	testtree.WriteFile(filepath.Join(src, "a"), []byte("a"))
	e.backup(src)
	before := listing(t, e.store)
	e.pass = "wrong"
	for _, args := range [][]string{{"backup", src}, {"ls"}, {"check"}, {"restore", "-to", t.TempDir(), "latest"}} {
		e.fail(1, []string{"wrong passphrase", "COFFER_PASSPHRASE"}, args...)
	}
	if after := listing(t, e.store); after != before {
		t.Fatalf("a wrong passphrase changed the store:\n%s\nvs\n%s", before, after)
	}
}

func TestNoPassphraseNoTerminal(t *testing.T) {
	e := newEnv(t)
	r := e.runEnv(nil, "at", e.store, "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "no passphrase") || !strings.Contains(r.stderr, "COFFER_PASSPHRASE") {
		t.Fatalf("no passphrase: %s", r)
	}
	pf := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pf, []byte(e.pass+"\n"), 0o600)
	if r := e.runEnv(nil, "--passphrase-file", pf, "at", e.store, "ls"); r.code != 0 {
		t.Fatalf("--passphrase-file: %s", r)
	}
	if r := e.runEnv([]string{"COFFER_STORE=" + e.store, "COFFER_PASSPHRASE=" + e.pass}, "ls"); r.code != 0 {
		t.Fatalf("COFFER_STORE: %s", r)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	missing := filepath.Join(t.TempDir(), "nope")
	r := e.runEnv([]string{"COFFER_PASSPHRASE=x"}, "at", missing, "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "no coffer store") || !strings.Contains(r.stderr, "create") {
		t.Fatalf("missing store: %s", r)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("ls on a missing store created it")
	}
	e.fail(1, []string{"already exists"}, "create")
	e.fail(1, []string{"no snapshots yet"}, "ls", "latest")
	e.fail(1, []string{"no such snapshot"}, "ls", "deadbeef")
	e.fail(2, []string{"not a snapshot id"}, "cat", "xyz:/a") // a bad argument, like a missing one
	e.fail(2, []string{"backup takes one or more sources"}, "backup")
	e.fail(2, []string{"flag provided but not defined"}, "ls", "--bogus")
	e.fail(1, []string{"no such file or directory"}, "backup", missing)

	src := t.TempDir()
	testtree.WriteFile(filepath.Join(src, "dir", "f"), []byte("f"))
	e.backup(src)
	e.fail(1, []string{"/nope", "no such file or directory"}, "cat", "latest:/nope")
	e.fail(2, []string{"is a directory"}, "cat", "latest:/dir")
}

func TestNewerFormatRefused(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(e.store, store.ObjectName(store.ConfigHandle))
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// One past the version this coffer writes, whatever that is.
	m := regexp.MustCompile(`"version":\s*(\d+)`).FindSubmatchIndex(data)
	if m == nil {
		t.Fatal("config has no version field to bump")
	}
	v, _ := strconv.Atoi(string(data[m[2]:m[3]]))
	newer := append(append(append([]byte{}, data[:m[2]]...), strconv.Itoa(v+1)...), data[m[3]:]...)
	os.WriteFile(cfg, newer, 0o600)
	e.fail(1, []string{fmt.Sprintf("format version %d is newer", v+1), "upgrade coffer"}, "ls")
}

func TestUnreadableFileMakesPartialSnapshot(t *testing.T) {
	// Root reads anything, so the unreadable entry is a FIFO: an
	// unsupported type, skipped with a warning.
	e := newEnv(t)
	src := t.TempDir()
	testtree.WriteFile(filepath.Join(src, "ok"), []byte("fine"))
	if err := mkfifo(filepath.Join(src, "pipe")); err != nil {
		t.Skip("mkfifo:", err)
	}
	e.fail(3, []string{"skipped pipe", "partial"}, "backup", src)
	// The snapshot exists, is marked partial, and holds the readable file.
	if got := e.ok("cat", "latest:/ok").stdout; got != "fine" {
		t.Fatalf("partial snapshot lost a readable file: %q", got)
	}
	if !strings.Contains(e.ok("ls").stdout, "(partial)") {
		t.Fatal("ls does not mark the partial snapshot")
	}
}
