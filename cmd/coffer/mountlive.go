package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine/object"
	"github.com/coffer-backup/coffer/fusefs"
	"github.com/coffer-backup/coffer/internal/config"
	"github.com/coffer-backup/coffer/s3io"
)

// runLiveMount mounts a bucket as it is now: coffer mount s3://BUCKET/PREFIX DIR
// (or @SOURCE, a source of the configuration that is a bucket).
func runLiveMount(c *cli.Context) error {
	given, dir := c.Args().Get(0), c.Args().Get(1)
	for _, f := range []string{"refresh", "source", "host", "tag"} {
		if c.IsSet(f) {
			return usagef("mount: --%s is for snapshots; a live bucket mount has no store (see --metadata-ttl)", f)
		}
	}
	loc, _, err := resolveLocation(config.Source, given)
	if err != nil {
		return err
	}
	if !isS3(loc) {
		return usagef("mount: %s is the folder %s: a live mount is of a bucket (s3://BUCKET/PREFIX)", given, loc)
	}
	shown := s3io.Redact(given)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("mount: %s is not a folder (create it first)", dir)
	}
	var ttl time.Duration
	switch v := c.String("metadata-ttl"); v {
	case "forever":
		ttl = fusefs.LiveForever
	default:
		d, err := time.ParseDuration(v)
		if v == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return usagef("mount: --metadata-ttl %q: want a duration like 1m or 30s, 0 (ask every time) or forever", v)
		}
		ttl = d
	}
	if ttl == 0 && (c.Bool("list-all") || c.Bool("versions")) {
		return usagef("mount: --metadata-ttl 0 would list the whole prefix again at every lookup with --list-all or --versions: give a TTL (1s or more)")
	}
	var at time.Time
	if c.IsSet("at") {
		if c.Bool("versions") || c.Bool("list-all") {
			return usagef("mount: --at shows one time; it goes without --versions and --list-all")
		}
		if at, err = parseAt(c.String("at"), time.Now()); err != nil {
			return err
		}
	}
	if err := checkMaxInodes(c); err != nil {
		return err
	}
	diskSize, err := diskCacheSize(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	stderr := c.App.ErrWriter
	logger := log.New(stderr, "coffer: mount: ", 0)

	// The user's cache folder keeps the --list-all listing and the file
	// blocks read (fusefs/live_disk.go), unless --no-disk-cache; with
	// the blocks on disk, memory defaults to less.
	var diskDir string
	var cacheErr error
	memory := int64(0) // --cache-size's own default
	if !c.Bool("no-disk-cache") {
		var base string
		if base, cacheErr = os.UserCacheDir(); cacheErr == nil {
			diskDir, memory = filepath.Join(base, "coffer-live"), liveDiskMemory
		} else if !c.Bool("list-all") {
			logger.Printf("no cache folder (%v): file blocks are kept in memory only", cacheErr)
		}
	}
	cacheSize, readAhead, err := contentCache(c, memory)
	if err != nil {
		return err
	}

	client, err := s3Client(ctx, loc)
	if err != nil {
		return fmt.Errorf("mount of %s: %w", shown, err)
	}
	live := s3io.NewLive(client)
	live.PageSize = int32(c.Int("list-page-size"))
	var tree object.LiveTree = live
	what := "live"
	switch {
	case c.IsSet("at"):
		// A past state never changes: listed once.
		tree, what = object.NewFlatLive(live.ListAt(at), live, fusefs.LiveForever), "as of "+at.UTC().Format(time.RFC3339)
	case c.Bool("versions"):
		tree, what = object.NewFlatLive(live.ListVersions, live, ttl), "live, every version"
	case c.Bool("list-all") && c.Bool("no-disk-cache"):
		tree = object.NewFlatLive(object.PagesFunc(live.ListAllPages).All, live, ttl)
	case c.Bool("list-all"):
		// Kept on disk: a mount started again within the TTL lists
		// nothing, and memory holds 8 bytes a key.
		if cacheErr != nil {
			return fmt.Errorf("mount of %s: no cache folder for the listing (%w); --no-disk-cache keeps it in memory", shown, cacheErr)
		}
		path := filepath.Join(diskDir, live.ListingID()+".list")
		tree = object.NewFlatLiveOnDisk(live.ListAllPages, path, live, ttl, logger.Printf)
	}
	// Fail before mounting: bad credentials, a missing bucket, another
	// region, no s3:ListBucket (or s3:ListBucketVersions) all show on
	// the first page of a listing.
	if _, err := live.List(ctx, "", ""); err != nil {
		return fmt.Errorf("mount of %s: %w", shown, err)
	}
	if c.IsSet("at") || c.Bool("versions") {
		if err := live.CheckVersions(ctx); err != nil {
			return fmt.Errorf("mount of %s: %w", shown, err)
		}
	}
	if tree == object.LiveTree(live) && ttl != 0 {
		// Level by level: a folder's folders are listed ahead of a walk,
		// 8 at once, used if younger than the TTL (at most 10 s).
		ahead := 10 * time.Second
		if ttl > 0 {
			ahead = min(ttl, ahead)
		}
		live.ListAhead(8, ahead)
	}
	if flat, ok := tree.(*object.FlatLive); ok {
		// The whole listing is taken while the mount starts; the first
		// reader waits for it (an error then is the reader's, and the
		// next access lists again).
		go flat.Load(ctx)
	}
	fsys := fusefs.NewLive(tree, fusefs.LiveOptions{
		TTL: ttl, CacheSize: cacheSize, ReadAhead: readAhead, MaxInodes: c.Int("max-inodes"),
		DiskDir: diskDir, DiskSize: diskSize, Name: live.URI(), Log: logger,
	})
	defer fsys.Close()
	holdHeap(fsys.MemoryLimit())
	srv, err := fusefs.Mount(dir, fsys.Root(), fusefs.MountOptions{
		AllowOther: c.Bool("allow-other"), FsName: "coffer:" + live.URI(), Debug: c.Bool("debug"),
	})
	if err != nil {
		return fmt.Errorf("%w (is fuse3 installed and %s not already mounted?)", err, dir)
	}
	fmt.Fprintf(stderr, "coffer: mounted %s (%s, read-only) at %s; Ctrl-C or 'fusermount3 -u %s' unmounts\n", shown, what, dir, dir)

	return serveMount(ctx, srv.Wait, func() error {
		held, dropped := fsys.Inodes()
		sayInodes(c, held, dropped)
		return fusefs.Unmount(srv)
	}, dir, stderr)
}

// parseAt reads --at: RFC 3339, a date and time in the local zone, or a
// duration before now.
func parseAt(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("mount: --at %q: want RFC 3339 (2026-11-28T10:00:00Z), 2026-11-28 10:00:00 (local time) or a duration ago (2h)", v)
}
