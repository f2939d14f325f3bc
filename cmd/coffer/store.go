package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/internal/config"
)

// storageFor turns a store location (a folder, s3://BUCKET/PREFIX or
// @name) into a Storage.
func storageFor(loc string) (engine.Storage, error) {
	if loc == "" {
		return nil, usagef("no store given: use 'coffer at PATH …' (or @NAME, or s3://BUCKET/PREFIX), --store or COFFER_STORE")
	}
	loc, _, err := resolveLocation(config.Store, loc)
	if err != nil {
		return nil, err
	}
	if isS3(loc) {
		return s3Storage(loc)
	}
	if strings.Contains(loc, "://") {
		return nil, usagef("store %s: unknown scheme; a store is a folder path or s3://BUCKET/PREFIX", loc)
	}
	return engine.NewLocalStorage(loc)
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
