package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/diskcache"
	"github.com/coffer-backup/coffer/internal/config"
	"github.com/coffer-backup/coffer/s3io"
)

// storageFor turns a store location (a folder, s3://BUCKET/PREFIX or
// @name) into the Storage it names, with no decorator.
func storageFor(loc string) (store.Storage, error) {
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
		return nil, usagef("store %s: unknown scheme; a store is a folder path or s3://BUCKET/PREFIX", s3io.Redact(loc))
	}
	return store.NewFolder(loc)
}

// shownStore is the store as the user named it, fit for messages: a
// location's secrets masked (s3io.Redact).
func shownStore(c *cli.Context) string { return s3io.Redact(c.String("store")) }

// repoOptions say which decorators a command wants around its storage.
type repoOptions struct {
	// diskCache keeps the store's sealed metadata in the user's cache
	// folder (the mount), unless --no-disk-cache.
	diskCache bool
}

// layers are the decorators composeStorage put around a storage, for the
// commands that report on them.
type layers struct {
	disk *diskcache.Storage // nil when not used
}

// composeStorage is the one place where decorators are put around the
// storage of a store: every command gets its storage from here.
func composeStorage(c *cli.Context, opt repoOptions) (store.Storage, *layers, error) {
	st, err := storageFor(c.String("store"))
	if err != nil {
		return nil, nil, err
	}
	l := &layers{}
	if opt.diskCache && !c.Bool("no-disk-cache") {
		l.disk = diskcache.New(st) // enabled once the store's id is known
		st = l.disk
	}
	return st, l, nil
}

// openRepo opens the store named by the global flags, through the
// decorators opt asks for.
func openRepo(c *cli.Context, opt repoOptions) (*engine.Repo, *layers, error) {
	loc := shownStore(c)
	// A bad compression in the entry fails before the passphrase.
	level, err := storeCompression(c)
	if err != nil {
		return nil, nil, err
	}
	st, l, err := composeStorage(c, opt)
	if err != nil {
		return nil, nil, err
	}
	// Check for a store before asking for a passphrase.
	if _, err := st.Stat(c.Context, store.ConfigHandle); store.IsNotFound(err) {
		return nil, nil, fmt.Errorf("store %s: %w (create one with 'coffer at %s create')", loc, engine.ErrNoStore, loc)
	} else if err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", loc, err)
	}
	pass, err := passphrase(c, false)
	if err != nil {
		return nil, nil, err
	}
	r, err := engine.Open(c.Context, st, pass)
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", loc, err)
	}
	r.Compression = level
	// The KDF's buffer is garbage now; collect it before it sets the
	// GC's goal for the rest of the run (it would double peak memory).
	debug.FreeOSMemory()
	// The index is kept between runs in the user's cache folder (sealed),
	// unless the command has --no-disk-cache.
	if !c.Bool("no-disk-cache") {
		if dir, err := storeCacheDir("coffer-index", r.Params.StoreID); err == nil {
			r.UseIndexCache(dir)
			cachedIndexRepo = r
		}
	}
	if l.disk != nil {
		dir, err := storeCacheDir("coffer", r.Params.StoreID)
		if err == nil {
			err = l.disk.Enable(dir)
		}
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "coffer: no disk cache: %v\n", err)
			l.disk = nil
		}
	}
	return r, l, nil
}

// cachedIndexRepo is the store the command keeps its index for between
// runs, for reportIndexCache.
var cachedIndexRepo *engine.Repo

// reportIndexCache says, unless -q, why the index kept between runs was
// not used (damaged, another store's, a folder that cannot be used): a
// command that reads every index file again is slower, and should say
// why.
func reportIndexCache(w io.Writer) {
	r := cachedIndexRepo
	cachedIndexRepo = nil
	if r == nil || quiet {
		return
	}
	if note := r.IndexCacheNote(); note != "" {
		fmt.Fprintf(w, "coffer: the index kept between runs was not used: %s\n", note)
	}
}

// storeCacheDir is the folder sub/<store id> of the user's cache folder
// (XDG_CACHE_HOME, else ~/.cache): sub "coffer" holds the store's disk
// cache, "coffer-index" its index. They are kept apart because the disk
// cache counts and evicts every file of its folder.
func storeCacheDir(sub, storeID string) (string, error) {
	if storeID == "" || strings.ContainsAny(storeID, `/\.`) {
		return "", fmt.Errorf("invalid store id %q", storeID)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, sub, storeID), nil
}

// storeCompression is the compression of the store entry, when the
// store is @name with a compression key (format.LevelDefault otherwise).
// It is a writer's setting: any level reads any store.
func storeCompression(c *cli.Context) (format.Level, error) {
	name := c.String("store")
	if !isName(name) {
		return format.LevelDefault, nil
	}
	_, e, err := resolveLocation(config.Store, name)
	if err != nil || e["compression"] == "" {
		return format.LevelDefault, err
	}
	l, err := format.ParseLevel(e["compression"])
	if err != nil {
		return 0, usagef("store %s: %v (fix it with 'coffer config store set %s compression=default')", name, err, name[1:])
	}
	verbosef("compression %s", l)
	return l, nil
}
