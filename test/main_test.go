// Package test drives the built coffer binary end to end, the way a
// user or a cron job does: real folders, real processes, real signals.
package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var coffer string // path of the binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coffer-e2e-")
	if err != nil {
		panic(err)
	}
	coffer = filepath.Join(dir, "coffer")
	args := []string{"build", "-o", coffer}
	if os.Getenv("COFFER_RACE") != "" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/coffer")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building coffer:", err)
		os.Exit(1)
	}
	// Every store's index is kept in the cache folder between runs: keep
	// the tests' in this temporary folder, not the user's.
	os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	code := m.Run()
	stopS3() // the MinIO the S3 tests started, if any
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one coffer run did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// env is a store and passphrase for a test.
type env struct {
	t     testing.TB
	store string
	pass  string
	extra []string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, store: filepath.Join(t.TempDir(), "store"), pass: "correct horse battery staple"}
	e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")
	return e
}

// run runs coffer at the env's store with args and no stdin.
func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runEnv(append([]string{"COFFER_PASSPHRASE=" + e.pass}, e.extra...), append([]string{"at", e.store}, args...)...)
}

func (e *env) runEnv(envs []string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(coffer, args...)
	cmd.Env = append(cleanEnv(), envs...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("running coffer %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// ok runs coffer and fails the test unless it exits 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("coffer %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// fail runs coffer and fails the test unless it exits with code and
// stderr holds every one of want.
func (e *env) fail(code int, want []string, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code {
		e.t.Fatalf("coffer %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr+r.stdout, w) {
			e.t.Fatalf("coffer %s: output lacks %q:\n%s", strings.Join(args, " "), w, r)
		}
	}
	return r
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COFFER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// listing returns every file under dir with its size and mtime, to show
// that a failed command wrote nothing.
func listing(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	return b.String()
}

// pl is how coffer counts in its messages: "1 file", "2 files",
// "3 entries".
func pl[N int | int64 | uint64](n N, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y"):
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
