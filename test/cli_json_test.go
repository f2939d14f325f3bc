package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dustin/go-humanize"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// noProgress fails if a run off a terminal drew progress.
func noProgress(t *testing.T, r result) {
	t.Helper()
	if strings.ContainsAny(r.stderr, "\r\x1b") || strings.Contains(r.stderr, "MB/s") || strings.Contains(r.stderr, "ETA") {
		t.Fatalf("progress drawn on a pipe:\n%q", r.stderr)
	}
}

// --json parses, and carries the figures the text output shows, for
// backup, ls, restore, check and info; nothing draws progress on a pipe.
func TestCLIJSONMatchesText(t *testing.T) {
	e := newEnv(t)
	root := t.TempDir()
	src := filepath.Join(root, "src")
	testtree.WriteFile(filepath.Join(src, "d", "a"), []byte(strings.Repeat("a", 5000)))
	testtree.WriteFile(filepath.Join(src, "b"), []byte("bee"))
	twin := filepath.Join(root, "twin") // the same tree under another name
	testtree.WriteFile(filepath.Join(twin, "d", "a"), []byte(strings.Repeat("a", 5000)))
	testtree.WriteFile(filepath.Join(twin, "b"), []byte("bee"))

	// backup: the text summary of the twin has the JSON's figures.
	rj := e.ok("backup", "--json", src)
	noProgress(t, rj)
	var bj struct {
		ID, Source string
		Short      string `json:"short_id"`
		Stats      struct {
			Files, Dirs, Bytes, Unchanged uint64
			ReadBytes                     uint64 `json:"read_bytes"`
		}
	}
	if err := json.Unmarshal([]byte(rj.stdout), &bj); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, rj.stdout)
	}
	rt := e.ok("backup", twin)
	noProgress(t, rt)
	want := fmt.Sprintf("%s, %s, %s; %s reused unread, %s read",
		pl(bj.Stats.Files, "file"), pl(bj.Stats.Dirs, "dir"), humanize.IBytes(bj.Stats.Bytes), pl(bj.Stats.Unchanged, "unchanged file"), humanize.IBytes(bj.Stats.ReadBytes))
	if bj.Stats.Files != 2 || bj.Stats.Dirs != 1 || !strings.Contains(rt.stdout, want) {
		t.Fatalf("backup text vs JSON: want %q in\n%s\n(JSON %+v)", want, rt.stdout, bj)
	}

	// ls: every snapshot's id, source and file count, in order.
	var ls []struct {
		Short  string `json:"short_id"`
		Source string
		Stats  struct{ Files uint64 }
	}
	if err := json.Unmarshal([]byte(e.ok("ls", "--json").stdout), &ls); err != nil {
		t.Fatal(err)
	}
	text := strings.Split(strings.TrimSpace(e.ok("ls").stdout), "\n")[1:]
	if len(ls) != 2 || len(text) != 2 {
		t.Fatalf("ls: %d JSON, %d text rows", len(ls), len(text))
	}
	for i, s := range ls {
		f := strings.Fields(text[i])
		if f[0] != s.Short || f[3] != s.Source || f[4] != fmt.Sprint(s.Stats.Files) {
			t.Fatalf("ls row %q vs JSON %+v", text[i], s)
		}
	}
	var entries []struct{ Path, Type string }
	json.Unmarshal([]byte(e.ok("ls", "--json", "-recursive", bj.Short).stdout), &entries)
	if len(entries) != 3 {
		t.Fatalf("ls --json -recursive: %+v", entries)
	}

	// restore: the same figures either way.
	r1 := e.ok("restore", "--json", "-to", filepath.Join(root, "r1"), bj.Short)
	noProgress(t, r1)
	var rj1 struct {
		Short                      string `json:"short_id"`
		Files, Dirs, Bytes, Failed uint64
		To                         string
	}
	if err := json.Unmarshal([]byte(r1.stdout), &rj1); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, r1.stdout)
	}
	r2 := e.ok("restore", "-to", filepath.Join(root, "r2"), bj.Short)
	wantR := fmt.Sprintf("restored %s, %s, %s from snapshot %s", pl(rj1.Files, "file"), pl(rj1.Dirs, "dir"), humanize.IBytes(rj1.Bytes), rj1.Short)
	if rj1.Files != 2 || rj1.Failed != 0 || rj1.To != filepath.Join(root, "r1") || !strings.Contains(r2.stdout, wantR) {
		t.Fatalf("restore text vs JSON: want %q in %q (JSON %+v)", wantR, r2.stdout, rj1)
	}
	if err := testtree.Compare(src, filepath.Join(root, "r1")); err != nil {
		t.Fatal(err)
	}

	// check.
	cj := e.ok("check", "--json")
	noProgress(t, cj)
	var ck struct {
		OK                     bool
		Snapshots, Packs, Blob int
		Blobs                  int
		Bytes                  int64 `json:"bytes_read"`
		Problems               []any
		Warnings               []string
	}
	if err := json.Unmarshal([]byte(cj.stdout), &ck); err != nil {
		t.Fatalf("check --json: %v\n%s", err, cj.stdout)
	}
	ct := e.ok("check").stdout
	wantC := fmt.Sprintf("no problems found: %s, %s, %s, %s read", pl(ck.Snapshots, "snapshot"), pl(ck.Packs, "pack"), pl(ck.Blobs, "blob"), humanize.IBytes(uint64(ck.Bytes)))
	if !ck.OK || ck.Snapshots != 2 || ck.Problems == nil || ck.Warnings == nil || !strings.Contains(ct, wantC) {
		t.Fatalf("check text vs JSON: want %q in %q (JSON %s)", wantC, ct, cj.stdout)
	}

	// info.
	var in struct {
		Snapshots     int
		DataPacks     int     `json:"data_packs"`
		DedupRatio    float64 `json:"dedup_ratio"`
		CompressRatio float64 `json:"compress_ratio"`
		StoredBytes   uint64  `json:"stored_bytes"`
	}
	if err := json.Unmarshal([]byte(e.ok("info", "--json").stdout), &in); err != nil {
		t.Fatal(err)
	}
	it := e.ok("info").stdout
	for _, w := range []string{
		fmt.Sprintf("snapshots      %d", in.Snapshots),
		fmt.Sprintf("packs          %d data", in.DataPacks),
		fmt.Sprintf("dedup ratio    %.2fx", in.DedupRatio),
		fmt.Sprintf("compression    %.2fx", in.CompressRatio),
		fmt.Sprintf("stored size    %s", humanize.IBytes(in.StoredBytes)),
	} {
		if !strings.Contains(it, w) {
			t.Fatalf("info text lacks %q:\n%s", w, it)
		}
	}

	// -q: no summary, but --json still prints; both global and after the command.
	if r := e.ok("backup", "-q", src); r.stdout != "" {
		t.Fatalf("backup -q printed %q", r.stdout)
	}
	if r := e.runEnv([]string{"COFFER_PASSPHRASE=" + e.pass}, "-q", "at", e.store, "check"); r.code != 0 || r.stdout != "" {
		t.Fatalf("-q check: %s", r)
	}
	if r := e.ok("backup", "-q", "--json", src); !strings.HasPrefix(r.stdout, "{") {
		t.Fatalf("-q --json printed %q", r.stdout)
	}
	e.fail(2, []string{"contradict"}, "backup", "-q", "-v", src)
}

// docs/cli.md is what gen-docs prints now; every command has --help with
// examples.
func TestCLIDocsUpToDate(t *testing.T) {
	e := &env{t: t}
	r := e.runEnv(nil, "gen-docs")
	if r.code != 0 {
		t.Fatal(r)
	}
	have, err := os.ReadFile(filepath.Join("..", "docs", "cli.md"))
	if err != nil || string(have) != r.stdout {
		t.Fatalf("docs/cli.md is stale (%v): run 'go run ./cmd/coffer gen-docs > docs/cli.md' and commit it", err)
	}
	heads := regexp.MustCompile("(?m)^#+ `coffer ([^`]+)`$").FindAllStringSubmatch(r.stdout, -1)
	if len(heads) < 20 {
		t.Fatalf("docs name %d commands", len(heads))
	}
	for _, h := range heads {
		args := append(strings.Fields(h[1]), "--help")
		r := e.runEnv(nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Example") {
			t.Errorf("coffer %s: exit %d, no example:\n%s", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}

// The completion scripts parse, and completing in bash offers commands,
// flags and @names where they go.
func TestCLICompletion(t *testing.T) {
	c := newCLIEnv(t)
	c.must(nil, "config", "store", "create", "mystore", "location=/srv/s")
	c.must(nil, "config", "source", "create", "photos", "location=/srv/p")
	c.must(nil, "config", "destination", "create", "preview", "location=/srv/d")
	bash := c.must(nil, "completion", "bash").stdout
	zsh := c.must(nil, "completion", "zsh").stdout
	if !strings.HasPrefix(zsh, "#compdef coffer") {
		t.Fatalf("zsh script:\n%s", zsh)
	}
	c.mustFail(2, []string{"bash or zsh"}, nil, "completion", "fish")
	if _, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command("zsh", "-n", "-c", zsh).CombinedOutput(); err != nil {
			t.Fatalf("zsh -n: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "coffer.bash")
	os.WriteFile(script, []byte(bash), 0o644)
	var completeWith func(line, breaks string) string
	complete := func(line string) string {
		t.Helper()
		return completeWith(line, "")
	}
	// completeWith sets COMP_WORDBREAKS first, unless it is "".
	completeWith = func(line, breaks string) string {
		t.Helper()
		set := ""
		if breaks != "" {
			set = fmt.Sprintf("COMP_WORDBREAKS=%q; ", breaks)
		}
		prog := fmt.Sprintf(`source %q; %sCOMP_LINE=%q; COMP_POINT=${#COMP_LINE}; _coffer_complete; printf '%%s\n' "${COMPREPLY[@]}"`, script, set, line)
		cmd := exec.Command("bash", "-c", prog)
		cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(coffer)+":"+os.Getenv("PATH"), "XDG_CONFIG_HOME="+c.xdg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", line, err, out)
		}
		return string(out)
	}
	for _, tc := range []struct{ line, want, not string }{
		{"coffer ba", "backup", "restore"},
		{"coffer at ", "@mystore", "@photos"},
		{"coffer at @my", "mystore", "@mystore"}, // bash replaces what follows the '@'
		{"coffer at @mystore ", "backup", ""},
		{"coffer at @mystore backup ", "@photos", "@mystore"},
		{"coffer at @mystore restore -to ", "@preview", "@photos"},
		{"coffer at @mystore backup --ta", "--tag", ""},
		{"coffer config source show ", "photos", "mystore"},
		{"coffer completion ", "zsh", ""},
	} {
		got := complete(tc.line)
		if !strings.Contains(got, tc.want) || (tc.not != "" && strings.Contains(got, tc.not)) {
			t.Errorf("completing %q: %q, want %q and not %q", tc.line, got, tc.want, tc.not)
		}
	}
	// Where COMP_WORDBREAKS lacks '@' (bash-completion setups, other
	// defaults), bash replaces the whole word: the reply keeps the '@', or
	// the completed line would name a folder instead of the entry.
	if got := completeWith("coffer at @my", "\"'><=;|&(:"); strings.TrimSpace(got) != "@mystore" {
		t.Errorf("completing \"coffer at @my\" without '@' in COMP_WORDBREAKS: %q, want @mystore", got)
	}
	if got := completeWith("coffer at @mystore backup @ph", "\"'><=;|&(:"); strings.TrimSpace(got) != "@photos" {
		t.Errorf("completing a source without '@' in COMP_WORDBREAKS: %q, want @photos", got)
	}
}

// TestJSONLines: every --json output is JSON Lines: a backup of several
// sources prints one object per line, each a whole JSON value.
func TestJSONLines(t *testing.T) {
	e := newEnv(t)
	var srcs []string
	for i := range 3 {
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "f"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	out := e.ok(append([]string{"backup", "--json"}, srcs...)...).stdout
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("backup --json of 3 sources printed %d lines:\n%s", len(lines), out)
	}
	for i, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %d is not a JSON value: %v\n%s", i+1, err, l)
		}
	}
	for _, args := range [][]string{{"ls", "--json"}, {"check", "--json"}, {"info", "--json"}} {
		if out := e.ok(args...).stdout; strings.Count(out, "\n") != 1 {
			t.Errorf("%v --json printed %d lines, want one:\n%s", args, strings.Count(out, "\n"), out)
		}
	}
}
