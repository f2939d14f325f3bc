package test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Without a terminal and without any passphrase source, coffer says what
// to do at once instead of waiting for input.
func TestCLIPassphraseNoTerminalNoSource(t *testing.T) {
	c := newCLIEnv(t)
	c.must([]string{"COFFER_PASSPHRASE=" + c.pass}, "at", c.store, "create", "--kdf-memory", "1024", "--kdf-time", "1")
	c.must(nil, "config", "store", "create", "st", "location="+c.store)
	for _, args := range [][]string{{"at", c.store, "ls"}, {"at", "@st", "ls"}, {"at", filepath.Join(t.TempDir(), "new"), "create"}} {
		start := time.Now()
		r := c.mustFail(1, []string{"no passphrase", "COFFER_PASSPHRASE", "--passphrase-file", "passphrase_cmd", "not a terminal"}, nil, args...)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%v took %v: it waited for input", args, d)
		}
		_ = r
	}
}

func TestCLIPassphraseCmd(t *testing.T) {
	c := newCLIEnv(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(c.pass+"\nsecond line ignored\n"), 0o600)
	c.must(nil, "config", "store", "create", "st", "location", c.store, "passphrase_cmd", "cat '"+good+"'")
	// create takes it without asking twice; ls opens with it.
	c.must(nil, "at", "@st", "create", "--kdf-memory", "1024", "--kdf-time", "1")
	c.must(nil, "at", "@st", "ls")
	c.must([]string{"COFFER_PASSPHRASE=" + c.pass}, "at", c.store, "ls") // the same passphrase

	// A failing command: its exit status is reported, its output is not.
	c.must(nil, "config", "store", "set", "st", "passphrase_cmd", "echo leaked-"+c.pass[:7]+"; echo 'no vault' >&2; exit 3")
	r := c.mustFail(1, []string{"passphrase_cmd of store @st failed", "exit status 3", "no vault"}, nil, "at", "@st", "ls")
	if strings.Contains(r.stdout+r.stderr, "leaked") {
		t.Fatalf("the passphrase_cmd's output was shown:\n%s", r)
	}
	// Empty output.
	c.must(nil, "config", "store", "set", "st", "passphrase_cmd=true")
	c.mustFail(1, []string{"passphrase_cmd of store @st printed no passphrase"}, nil, "at", "@st", "ls")
	// A wrong passphrase from the command names the store and is not shown.
	c.must(nil, "config", "store", "set", "st", "passphrase_cmd=echo not-it")
	r = c.mustFail(1, []string{"wrong passphrase"}, nil, "at", "@st", "ls")
	if strings.Contains(r.stdout+r.stderr, "not-it") {
		t.Fatalf("a wrong passphrase was shown:\n%s", r)
	}

	// passphrase_file instead.
	c.must(nil, "config", "store", "unset", "st", "passphrase_cmd")
	c.must(nil, "config", "store", "set", "st", "passphrase_file", good)
	c.must(nil, "at", "@st", "ls")
	c.mustFail(2, []string{"not both"}, nil, "config", "store", "set", "st", "passphrase_cmd=true")
}

func TestCLIPassphraseSlots(t *testing.T) {
	c := newCLIEnv(t)
	old := []string{"COFFER_PASSPHRASE=" + c.pass}
	c.must(old, "at", c.store, "create", "--kdf-memory", "1024", "--kdf-time", "1")
	type slot struct {
		ID      string `json:"id"`
		Current bool   `json:"current"`
	}
	slots := func(envs []string) []slot {
		var s []slot
		if err := json.Unmarshal([]byte(c.must(envs, "at", c.store, "passphrase", "ls", "--json").stdout), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := slots(old)
	if len(first) != 1 || !first[0].Current {
		t.Fatalf("slots: %+v", first)
	}
	c.mustFail(1, []string{"no new passphrase", "COFFER_NEW_PASSPHRASE"}, old, "at", c.store, "passphrase", "add")
	c.must(append(old, "COFFER_NEW_PASSPHRASE=second one"), "at", c.store, "passphrase", "add", "--kdf-memory", "1024", "--kdf-time", "1")
	second := []string{"COFFER_PASSPHRASE=second one"}
	both := slots(second)
	if len(both) != 2 || both[0].Current || !both[1].Current {
		t.Fatalf("slots after add: %+v", both)
	}
	c.must(second, "at", c.store, "passphrase", "rm", first[0].ID)
	c.mustFail(1, []string{"wrong passphrase"}, old, "at", c.store, "ls")
	c.mustFail(1, []string{"only one"}, second, "at", c.store, "passphrase", "rm", both[1].ID)
	c.mustFail(1, []string{"no such slot"}, second, "at", c.store, "passphrase", "rm", "deadbeef")
	if r := c.must(second, "at", c.store, "passphrase", "ls"); !strings.Contains(r.stdout, "1 MiB × 1 pass ") || r.stderr != "" {
		t.Fatalf("passphrase ls of a 1 MiB × 1 pass slot:\n%s", r)
	}
}

// TestCLIPassphraseOldKDF: passphrase ls names a slot made with an older
// default, which takes more memory to open than a new slot for no more
// work, and says how to move it; once moved, it says nothing.
func TestCLIPassphraseOldKDF(t *testing.T) {
	c := newCLIEnv(t)
	old := []string{"COFFER_PASSPHRASE=" + c.pass}
	c.must(old, "at", c.store, "create", "--kdf-memory", "32768", "--kdf-time", "8") // the default until 2026-11
	var s []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(c.must(old, "at", c.store, "passphrase", "ls", "--json").stdout), &s); err != nil || len(s) != 1 {
		t.Fatalf("slots: %v %+v", err, s)
	}
	r := c.must(old, "at", c.store, "passphrase", "ls")
	for _, w := range []string{"key slot " + s[0].ID + " uses 32 MiB × 8 passes", "new slots use 16 MiB × 16 passes", "'passphrase rm " + s[0].ID + "'"} {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("passphrase ls lacks %q:\n%s", w, r)
		}
	}
	if !strings.Contains(r.stdout, "32 MiB × 8 passes") {
		t.Fatalf("passphrase ls does not show the slot's cost:\n%s", r)
	}
	c.must(append(old, "COFFER_NEW_PASSPHRASE="+c.pass), "at", c.store, "passphrase", "add")
	c.must(old, "at", c.store, "passphrase", "rm", s[0].ID)
	if r := c.must(old, "at", c.store, "passphrase", "ls"); r.stderr != "" || !strings.Contains(r.stdout, "16 MiB × 16 passes") {
		t.Fatalf("passphrase ls after the move:\n%s", r)
	}
}

// ptyRun runs coffer with stdin, stdout and stderr on a terminal, typing
// each answer after its prompt appears; it returns everything the
// terminal showed and the exit code.
func ptyRun(t *testing.T, envs []string, answers [][2]string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(coffer, args...)
	cmd.Env = append(cleanEnv(), envs...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Skip("no pty:", err)
	}
	defer f.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				close(done)
				return
			}
		}
	}()
	seen := 0
	for _, a := range answers {
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			s := out.String()
			mu.Unlock()
			if i := strings.Index(s[seen:], a[0]); i >= 0 {
				seen += i + len(a[0])
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("no prompt %q; the terminal shows:\n%s", a[0], s)
			}
			time.Sleep(10 * time.Millisecond)
		}
		io.WriteString(f, a[1]+"\r")
	}
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	mu.Lock()
	defer mu.Unlock()
	return out.String(), code
}

// On a terminal coffer asks, without echo, and twice on create.
func TestCLIPassphrasePrompt(t *testing.T) {
	c := newCLIEnv(t)
	xdg := []string{"XDG_CONFIG_HOME=" + c.xdg}
	out, code := ptyRun(t, xdg, [][2]string{{"passphrase: ", c.pass}, {"again: ", c.pass}},
		"at", c.store, "create", "--kdf-memory", "1024", "--kdf-time", "1")
	if code != 0 || strings.Contains(out, c.pass) || !strings.Contains(out, "created store") {
		t.Fatalf("create on a terminal: exit %d:\n%s", code, out)
	}
	out, code = ptyRun(t, xdg, [][2]string{{"passphrase: ", c.pass}, {"again: ", "something else"}},
		"at", filepath.Join(t.TempDir(), "s2"), "create", "--kdf-memory", "1024", "--kdf-time", "1")
	if code != 1 || !strings.Contains(out, "differ") {
		t.Fatalf("create with different passphrases: exit %d:\n%s", code, out)
	}
	out, code = ptyRun(t, xdg, [][2]string{{"passphrase: ", c.pass}}, "at", c.store, "ls")
	if code != 0 || strings.Contains(out, c.pass) || !strings.Contains(out, "ID") {
		t.Fatalf("ls on a terminal: exit %d:\n%s", code, out)
	}
}
