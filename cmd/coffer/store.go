package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/coffer-backup/coffer/engine"
)

// storageFor turns a store location into a Storage.
func storageFor(loc string) (engine.Storage, error) {
	if loc == "" {
		return nil, usagef("no store given: use 'coffer at PATH …', --store PATH or COFFER_STORE")
	}
	if isS3(loc) {
		return s3Storage(loc)
	}
	if strings.Contains(loc, "://") {
		return nil, usagef("store %s: unknown scheme; a store is a folder path or s3://BUCKET/PREFIX", loc)
	}
	return engine.NewLocalStorage(loc)
}

// passphrase finds the passphrase: --passphrase-file, COFFER_PASSPHRASE,
// then a no-echo prompt when stdin is a terminal (twice when confirm).
func passphrase(c *cli.Context, confirm bool) ([]byte, error) {
	if f := c.String("passphrase-file"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return nil, fmt.Errorf("passphrase file %s: the first line is empty", f)
		}
		return line, nil
	}
	if p, ok := os.LookupEnv("COFFER_PASSPHRASE"); ok {
		if p == "" {
			return nil, fmt.Errorf("COFFER_PASSPHRASE is set but empty")
		}
		return []byte(p), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("no passphrase: set COFFER_PASSPHRASE or use --passphrase-file (stdin is not a terminal, so coffer cannot ask)")
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(os.Stderr, prompt)
		p, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return p, err
	}
	p, err := ask("passphrase: ")
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("empty passphrase")
	}
	if confirm {
		q, err := ask("passphrase (again): ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, q) {
			return nil, fmt.Errorf("the passphrases differ; nothing was created")
		}
	}
	return p, nil
}

// openRepo opens the store named by the global flags.
func openRepo(c *cli.Context) (*engine.Repo, error) {
	loc := c.String("store")
	st, err := storageFor(loc)
	if err != nil {
		return nil, err
	}
	// Check for a store before asking for a passphrase.
	if _, err := st.Stat(c.Context, "config"); engine.IsNotFound(err) {
		return nil, fmt.Errorf("store %s: %w (create one with 'coffer at %s create')", loc, engine.ErrNoStore, loc)
	} else if err != nil {
		return nil, fmt.Errorf("store %s: %w", loc, err)
	}
	pass, err := passphrase(c, false)
	if err != nil {
		return nil, err
	}
	r, err := engine.Open(c.Context, st, pass)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", loc, err)
	}
	// The KDF's buffer is garbage now; collect it before it sets the
	// GC's goal for the rest of the run (it would double peak memory).
	debug.FreeOSMemory()
	return r, nil
}
