package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"runtime/debug"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/fusefs"
)

func mountCmd() *cli.Command {
	return &cli.Command{
		Name:  "mount",
		Usage: "mount every snapshot, or one snapshot or folder in it, read-only",
		UsageText: `coffer at STORE mount [options] DIR [ID[:/PATH]]
coffer mount [options] s3://BUCKET/PREFIX|@SOURCE DIR

Runs in the foreground until Ctrl-C, SIGTERM or 'fusermount3 -u DIR'.
Without ID, DIR holds one folder per snapshot, named by its UTC time and
short id (2026-11-25T01-02-03Z_3fa2b1c0), a 'latest' link to the newest,
and by-source/SOURCE/ with the snapshots of each source and their own
'latest' (SOURCE is the source's URI with '/' written as %2F and '%' as
%25). Snapshots made since show within --refresh, without a remount.
Nothing is read from a snapshot until it is opened. S3 metadata shows as
extended attributes: getfattr -d -m user.s3 FILE.

The second form mounts a bucket (or a source named with 'coffer config
source') as it is now, without a store: keys are named
as in a snapshot of it, folders are listed when read and kept for
--metadata-ttl, and files are read in ranged GETs pinned to the ETag
they were listed with (a read of an object rewritten since fails with
ESTALE; after the TTL the new object shows).

Examples:
   coffer at /backups mount /mnt/backups
   coffer at /backups mount /mnt/photos latest:/photos
   grep -r invoice /mnt/backups/*/docs/
   coffer mount s3://my-bucket/docs /mnt/live
   diff -r /mnt/live /mnt/backups/latest`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users read the mount (the snapshot's modes and owners still apply)"},
			&cli.StringFlag{Name: "cache-size", Value: "256MiB", Usage: "memory for file content shared by all open files; the whole mount stays within about this plus 64MiB (a live mount that keeps blocks on disk: 64MiB unless given)"},
			&cli.StringFlag{Name: "read-ahead", Value: "32MiB", Usage: "how far ahead of a sequential reader to fetch, per open file"},
			&cli.DurationFlag{Name: "refresh", Value: fusefs.DefaultRefresh, Usage: "list the snapshots again, when looked at, once the list is this old (0: never)"},
			&cli.IntFlag{Name: "max-inodes", Value: fusefs.DefaultMaxInodes, Usage: "entries (of snapshots, or of the bucket) the kernel may keep looked up (about 1KiB of memory each); past it the least recently used are dropped, and looked up again when needed"},
			&cli.BoolFlag{Name: "no-disk-cache", Usage: "do not keep the store's metadata (sealed), or a live mount's --list-all listing and file blocks, in the user's cache folder"},
			&cli.StringFlag{Name: "disk-cache-size", Value: "1GiB", Usage: "bound the metadata (snapshots) or file blocks (live mount) kept on disk; the least recently used goes first"},
			&cli.StringFlag{Name: "metadata-ttl", Value: "1m", Usage: "live bucket mount: keep listings and lookups this long (0: ask every time, forever: until unmount)"},
			&cli.BoolFlag{Name: "list-all", Usage: "live bucket mount: list the whole prefix at once (one paginated LIST, no delimiter), kept in the user's cache folder for --metadata-ttl, also for the next mount: fast find and ls -R"},
			&cli.StringFlag{Name: "at", Usage: "live bucket mount of a versioned bucket: show it as it was at `TIME` (RFC 3339, '2026-11-28 10:00' local time, or a duration ago such as 2h)"},
			&cli.BoolFlag{Name: "versions", Usage: "live bucket mount of a versioned bucket: show every version of an object NAME as files in the hidden folder .NAME%25%versions (delete markers as empty files TIME_ID.deleted)"},
			&cli.IntFlag{Name: "list-page-size", Hidden: true, Usage: "live bucket mount: keys a LIST page asks for (tests)"},
			&cli.BoolFlag{Name: "debug", Hidden: true, Usage: "log every FUSE request"},
		},
		Action: runMount,
	}
}

func runMount(c *cli.Context) error {
	if a := c.Args().Get(0); c.NArg() == 2 && (isS3(a) || isName(a) && c.String("store") == "") {
		return runLiveMount(c) // coffer mount s3://BUCKET/PREFIX DIR, or @SOURCE DIR
	}
	for _, f := range []string{"metadata-ttl", "list-all", "at", "versions"} {
		if c.IsSet(f) {
			return usagef("mount: --%s is for a live bucket (coffer mount s3://BUCKET/PREFIX DIR); snapshots use --refresh", f)
		}
	}
	if c.NArg() < 1 || c.NArg() > 2 {
		return usagef("mount takes a folder and optionally ID[:/PATH] (flags go before them: mount --allow-other DIR)")
	}
	if c.NArg() == 1 && (c.IsSet("source") || c.IsSet("host") || c.IsSet("tag")) {
		return usagef("mount: --source, --host and --tag select the snapshot of ID[:/PATH] (latest:/ for the newest that matches); a mount of the whole store shows every snapshot")
	}
	dir := c.Args().Get(0)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("mount: %s is not a folder (create it first)", dir)
	}
	cacheSize, readAhead, err := contentCache(c, 0)
	if err != nil {
		return err
	}
	if err := checkMaxInodes(c); err != nil {
		return err
	}
	diskSize, err := diskCacheSize(c)
	if err != nil {
		return err
	}
	refresh := c.Duration("refresh")
	if refresh < 0 {
		return usagef("mount: --refresh %v: want a duration like 1m or 30s (0 never lists again)", refresh)
	}
	if refresh == 0 {
		refresh = -1
	}
	f, err := snapshotFilter(c)
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter

	// Everything that can fail is done before mounting: the store, the
	// passphrase, the snapshot list, the index, the path.
	r, layers, err := openRepo(c, repoOptions{diskCache: true})
	if err != nil {
		return err
	}
	if layers.disk != nil {
		layers.disk.SetLimit(int64(diskSize))
	}
	ctx := c.Context
	var snaps []*engine.Snapshot
	if c.NArg() == 1 {
		// Only the whole-store mount needs them all; listed before the
		// index is read, since a snapshot is written after its index.
		if snaps, err = r.Snapshots(ctx); err != nil {
			return err
		}
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	fsys := fusefs.New(r, fusefs.Options{
		CacheSize: cacheSize, ReadAhead: readAhead, MaxInodes: c.Int("max-inodes"),
		Refresh: refresh, Log: log.New(stderr, "coffer: mount: ", 0),
	})
	defer fsys.Close()
	holdHeap(fsys.MemoryLimit())
	var root fusefs.Root
	var what string
	if c.NArg() == 2 {
		id, p := splitRef(c.Args().Get(1))
		sn, err := r.FindSnapshotIn(ctx, id, f)
		if err != nil {
			return err
		}
		n, err := r.ResolvePath(ctx, sn, p, false)
		if err != nil {
			return err
		}
		if root, err = fsys.SubtreeRoot(sn, n); err != nil {
			return usagef("mount: %s:%s: %v", sn.ID.Short(), p, err)
		}
		what = fmt.Sprintf("snapshot %s:%s", sn.ID.Short(), p)
	} else {
		root = fsys.SnapshotsRoot(snaps)
		what = fmt.Sprintf("%d snapshots", len(snaps))
	}

	srv, err := fusefs.Mount(dir, root, fusefs.MountOptions{
		AllowOther: c.Bool("allow-other"), FsName: "coffer:" + r.Storage().Location(), Debug: c.Bool("debug"),
	})
	if err != nil {
		return fmt.Errorf("%w (is fuse3 installed and %s not already mounted?)", err, dir)
	}
	fmt.Fprintf(stderr, "coffer: mounted %s of %s at %s; Ctrl-C or 'fusermount3 -u %s' unmounts\n",
		what, r.Storage().Location(), dir, dir)
	if disk := layers.disk; disk != nil {
		defer func() {
			if st := disk.Stats(); st.WriteErrors > 0 {
				fmt.Fprintf(stderr, "coffer: mount: %d metadata objects could not be cached on disk\n", st.WriteErrors)
			}
		}()
	}

	return serveMount(ctx, srv.Wait, func() error {
		st := fsys.Stats()
		sayInodes(c, st.Inodes, st.Invalidated)
		return fusefs.Unmount(srv)
	}, dir, stderr)
}

// checkMaxInodes checks --max-inodes, which both mounts take.
func checkMaxInodes(c *cli.Context) error {
	if n := c.Int("max-inodes"); n < 1000 {
		return usagef("mount: --max-inodes %d: want at least 1000 (a folder being listed keeps its entries)", n)
	}
	return nil
}

// sayInodes says under -v, at unmount, how many entries the mount held
// for the kernel and how many it dropped to keep to --max-inodes.
func sayInodes(c *cli.Context, held, dropped int64) {
	verbosef("mount: %d entries held for the kernel at unmount (--max-inodes %d), %d dropped to keep to it", held, c.Int("max-inodes"), dropped)
}

// serveMount serves a mount in the foreground (wait returns once it is
// unmounted) until it is unmounted from outside (fusermount3 -u) or ctx
// ends (Ctrl-C, SIGTERM); then it unmounts it, lazily if it is busy.
func serveMount(ctx context.Context, wait func(), unmount func() error, dir string, stderr io.Writer) error {
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done: // unmounted from outside
		return nil
	case <-ctx.Done():
	}
	if err := unmount(); err != nil {
		// Busy (a shell inside it, an open file): detach it now; the
		// kernel finishes the unmount when the last user leaves.
		fmt.Fprintf(stderr, "coffer: %s is busy; detaching it (lazy unmount)\n", dir)
		if out, lerr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); lerr != nil {
			return fmt.Errorf("unmount %s: %v; lazy unmount: %v %s", dir, err, lerr, out)
		}
	}
	<-done
	return nil
}

// liveDiskMemory is a live mount's --cache-size when not given and its
// blocks are also kept on disk. The disk tier and the kernel's page
// cache then hold what was read; memory needs little more than the
// read-ahead, and a smaller heap is faster: a cold cat of a 512 MiB
// object took 1.4-1.7 s of CPU instead of 2.4-2.8 s with 256 MiB, most
// of the difference the page faults of a heap that grows to the cache
// (docs/PERFORMANCE.md, "the live mount's memory tier").
const liveDiskMemory = 64 << 20

// contentCache reads --cache-size (def when not given; 0: the flag's
// own default) and --read-ahead, which both mounts take: the cache's
// size and the read-ahead per open file for fusefs (at most a quarter
// of the cache; negative: none).
func contentCache(c *cli.Context, def int64) (size, ahead int64, err error) {
	cs := uint64(def)
	if c.IsSet("cache-size") || def == 0 {
		cs, err = humanize.ParseBytes(c.String("cache-size"))
		if err != nil || cs < 1<<20 {
			return 0, 0, usagef("mount: --cache-size %q: want a size of at least 1MiB, like 256MiB or 2GiB", c.String("cache-size"))
		}
	}
	ra, err := humanize.ParseBytes(c.String("read-ahead"))
	if err != nil {
		return 0, 0, usagef("mount: --read-ahead %q: want a size like 32MiB (0 turns it off)", c.String("read-ahead"))
	}
	ahead = int64(ra)
	if ahead == 0 {
		ahead = -1
	}
	return int64(cs), min(ahead, int64(cs)/4), nil
}

// diskCacheSize reads --disk-cache-size.
func diskCacheSize(c *cli.Context) (int64, error) {
	n, err := humanize.ParseBytes(c.String("disk-cache-size"))
	if err != nil || n < 1<<20 {
		return 0, usagef("mount: --disk-cache-size %q: want a size of at least 1MiB, like 1GiB (--no-disk-cache turns it off)", c.String("disk-cache-size"))
	}
	return int64(n), nil
}

// holdHeap sets the runtime's soft memory limit to a mount's budget,
// unless GOMEMLIMIT says otherwise: the mount is this process's only
// job, and the collector then frees the buffers loads leave behind
// before the heap grows past the caches' budgets.
func holdHeap(limit int64) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
}
