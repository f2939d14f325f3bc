package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshotSelection: --source, --host and --tag select snapshots in
// ls, cat, restore and check, and "latest" is the newest that matches;
// tag changes tags after the fact.
func TestSnapshotSelection(t *testing.T) {
	e := newEnv(t)
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "docs"), []byte("from a"), 0o644)
	os.MkdirAll(filepath.Join(b, "other"), 0o755)
	os.WriteFile(filepath.Join(b, "other", "x"), []byte("from b"), 0o644)
	snA := e.backup(a)
	e.backup(b) // the newest snapshot of any source

	// Without a filter latest is b's; with one, a's.
	e.fail(1, []string{"no such file or directory"}, "cat", "latest:/docs")
	if got := e.ok("cat", "--source", a, "latest:/docs").stdout; got != "from a" {
		t.Fatalf("cat --source A latest:/docs = %q", got)
	}
	var ls []struct {
		ID     string `json:"id"`
		Source string `json:"source"`
		Tags   []string
	}
	if err := json.Unmarshal([]byte(e.ok("ls", "--json", "--source", a).stdout), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Source != a {
		t.Fatalf("ls --source A: %+v", ls)
	}
	host, _ := os.Hostname()
	e.ok("ls", "--host", host, "latest:/")
	e.fail(1, []string{"no snapshot matches --host elsewhere"}, "ls", "--host", "elsewhere", "latest:/")
	// An id that the filter does not select is refused, not used.
	e.fail(1, []string{"does not match --source"}, "cat", "--source", b, snA.Short+":/docs")

	// tag: a's snapshot gets "keep" (a new id), then --tag selects it.
	out := e.ok("tag", "--add", "keep", "--source", a).stdout
	if !strings.Contains(out, "tags: keep") {
		t.Fatalf("tag --add: %s", out)
	}
	if got := e.ok("cat", "--tag", "keep", "latest:/docs").stdout; got != "from a" {
		t.Fatalf("cat --tag keep latest:/docs = %q", got)
	}
	restored := filepath.Join(t.TempDir(), "r")
	e.ok("restore", "--tag", "keep", "-to", restored, "latest")
	if got, _ := os.ReadFile(filepath.Join(restored, "docs")); string(got) != "from a" {
		t.Fatalf("restore --tag keep: %q", got)
	}
	var chk struct{ Snapshots int }
	if err := json.Unmarshal([]byte(e.ok("check", "--json", "--tag", "keep").stdout), &chk); err != nil || chk.Snapshots != 1 {
		t.Fatalf("check --tag keep checked %d snapshots (%v)", chk.Snapshots, err)
	}
	if n := strings.Count(e.ok("ls").stdout, "\n"); n != 3 { // header and two snapshots: the old one is gone
		t.Fatalf("after tag, ls has %d lines:\n%s", n, e.ok("ls").stdout)
	}
	// latest and its own id name one snapshot: it is changed once.
	var newest []struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(e.ok("ls", "--json").stdout), &newest)
	e.ok("tag", "--add", "twice", "latest", newest[len(newest)-1].ID[:8])
	if n := strings.Count(e.ok("ls").stdout, "\n"); n != 3 {
		t.Fatalf("tagging one snapshot named twice left %d ls lines:\n%s", n, e.ok("ls").stdout)
	}
	e.ok("tag", "--remove", "keep", "--tag", "keep")
	e.fail(1, []string{"no snapshot matches --tag keep"}, "ls", "--tag", "keep", "latest:/")
	e.fail(2, []string{"say what to change"}, "tag", "latest")
	e.fail(2, []string{"name the snapshots"}, "tag", "--add", "x")
}

// TestCompleteSnapshotRefs: bash completes snapshot ids, latest, and
// paths inside a snapshot (latest:/d<TAB>) when the passphrase needs no
// one; it never asks for one.
func TestCompleteSnapshotRefs(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	e := newEnv(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "docs", "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "docs", "a.txt"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(src, "data"), []byte("b"), 0o644)
	sn := e.backup(src)
	script := filepath.Join(t.TempDir(), "coffer.bash")
	os.WriteFile(script, []byte(e.ok("completion", "bash").stdout), 0o644)
	complete := func(line string, pass bool) string {
		t.Helper()
		prog := fmt.Sprintf(`source %q; COMP_LINE=%q; COMP_POINT=${#COMP_LINE}; _coffer_complete; printf '%%s\n' "${COMPREPLY[@]}"`, script, line)
		cmd := exec.Command("bash", "-c", prog)
		cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(coffer)+":"+os.Getenv("PATH"), "XDG_CACHE_HOME="+t.TempDir())
		if pass {
			cmd.Env = append(cmd.Env, "COFFER_PASSPHRASE="+e.pass)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", line, err, out)
		}
		return string(out)
	}
	at := "coffer at " + e.store + " "
	for _, tc := range []struct {
		line      string
		pass      bool
		want, not string
	}{
		{at + "ls ", true, sn.Short, ""},
		{at + "cat la", true, "latest", sn.Short},
		{at + "cat latest:/do", true, "/docs/", "/data"}, // bash replaces what follows the ":"
		{at + "cat latest:/docs/", true, "/docs/a.txt", "/data"},
		{at + "restore " + sn.Short + ":/docs/s", true, "/docs/sub/", "a.txt"},
		{at + "ls ", false, "latest", sn.Short}, // no passphrase: only latest, and no prompt
	} {
		got := complete(tc.line, tc.pass)
		if !strings.Contains(got, tc.want) || (tc.not != "" && strings.Contains(got, tc.not)) {
			t.Errorf("completing %q: %q, want %q and not %q", tc.line, got, tc.want, tc.not)
		}
	}
}
