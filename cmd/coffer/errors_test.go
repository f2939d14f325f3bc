package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCoffer runs coffer's main with args and returns its exit code and
// what it wrote to stderr.
func runCoffer(t *testing.T, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	code := run(context.Background(), append([]string{"coffer"}, args...), stdout, stderr)
	msg, err := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(msg)
}

// Exit code 2 is for errors in how coffer was called, whatever their
// words, and for nothing else, whatever its words.
func TestExitCodeFollowsKindNotWords(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("COFFER_CONFIG", "")
	t.Setenv("COFFER_STORE", "")
	t.Setenv("COFFER_PASSPHRASE", "x")
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		// Usage errors worded unlike the ones urfave/cli and the flag
		// package usually return.
		{[]string{"ls", "---x"}, exitUsage, "coffer: bad flag syntax: ---x\n"},
		{[]string{"ls", "-q", "--quiet"}, exitUsage, "coffer: Cannot use two forms of the same flag: q quiet\n"},
		// Failures whose words happen to be those of usage errors.
		{[]string{"at", filepath.Join(dir, "flag needs an argument"), "ls"}, exitFailure, "no coffer store here"},
		{[]string{"at", filepath.Join(dir, "Required flag"), "ls"}, exitFailure, "no coffer store here"},
		// The usage errors of urfave/cli stay usage errors, worded as
		// before.
		{[]string{"ls", "--bogus"}, exitUsage, "coffer: flag provided but not defined: -bogus\n"},
		{[]string{"--bogus", "ls"}, exitUsage, "coffer: flag provided but not defined: -bogus\n"},
		{[]string{"config", "store", "create", "--bogus"}, exitUsage, "coffer: flag provided but not defined: -bogus\n"},
		{[]string{"config", "help", "--bogus"}, exitUsage, "coffer: flag provided but not defined: -bogus\n"},
		{[]string{"backup", "--concurrency"}, exitUsage, "coffer: flag needs an argument: -concurrency\n"},
		{[]string{"backup", "--concurrency=x"}, exitUsage, `coffer: invalid value "x" for flag -concurrency: parse error` + "\n"},
		{[]string{"restore", "latest"}, exitUsage, `coffer: Required flag "to" not set` + "\n"},
		{[]string{"bogus"}, exitUsage, `coffer: unknown command "bogus"`},
		{[]string{"bakup"}, exitUsage, `coffer: unknown command "bakup": did you mean "backup"?`},
		{[]string{"config", "bogus"}, exitUsage, `coffer: unknown command "config bogus"`},
		{[]string{"help", "bogus"}, exitUsage, `coffer: unknown command "bogus"`},
		{[]string{"at", dir}, exitUsage, "coffer: no command given"},
		{[]string{"config"}, exitUsage, "coffer: no command given"},
		{[]string{"help"}, exitOK, ""},
		{[]string{"help", "backup"}, exitOK, ""},
		{[]string{"help", "config", "store"}, exitOK, ""},
		{[]string{"config", "store", "help", "bogus"}, exitUsage, "coffer: No help topic for 'bogus'\n"},
		{[]string{"-q", "-v", "ls"}, exitUsage, "coffer: -q and -v contradict each other: give one\n"},
	} {
		code, stderr := runCoffer(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("coffer %s: exit %d, stderr %q; want exit %d, stderr with %q",
				strings.Join(c.args, " "), code, stderr, c.code, c.stderr)
		}
	}
}

func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n    int
		noun string
		want string
	}{{0, "file", "0 files"}, {1, "file", "1 file"}, {2, "entry", "2 entries"}, {1, "entry", "1 entry"}, {3, "problem", "3 problems"}} {
		if got := plural(c.n, c.noun); got != c.want {
			t.Errorf("plural(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}
