package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coffer-backup/coffer/engine/backup"

	"github.com/coffer-backup/coffer/engine/check"

	"github.com/coffer-backup/coffer/engine/restore"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/coffer-backup/coffer/engine/crypto"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/config"
	"github.com/coffer-backup/coffer/s3io"
)

func concurrencyFlag() cli.Flag {
	return &cli.IntFlag{Name: "concurrency", Value: runtime.NumCPU(), DefaultText: "the CPU count", Usage: "how many files to work on at once"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}
}

// plural is "1 snapshot", "2 snapshots": n and noun, in the plural
// unless n is 1.
func plural[N int | int64 | uint64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") && !strings.ContainsAny(noun[len(noun)-2:len(noun)-1], "aeiou") { // entry, not day
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// printJSON writes v as one line of JSON: every --json output is JSON
// Lines, so a backup of several sources, one object each, streams and
// parses line by line (jq, a loop over lines).
func printJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

func createCmd() *cli.Command {
	return &cli.Command{
		Name:  "create",
		Usage: "create a new store",
		UsageText: `coffer at STORE create [--object-lock-days N [--object-lock-mode governance|compliance]]

STORE is a folder, s3://BUCKET/PREFIX or @NAME (coffer config store). The
passphrase comes from --passphrase-file, COFFER_PASSPHRASE, the store's
passphrase_cmd or passphrase_file, or is asked twice on the terminal.

--object-lock-days N makes an immutable store (S3 only): every pack,
index file and snapshot is written with S3 Object Lock, so nobody can
delete or overwrite it for N days after it was written, and rm or forget
of a snapshot still locked fails and says until when. The bucket must
have Object Lock enabled (a missing bucket is created with it). The
setting is kept in the store's config. See docs/S3.md, "Immutable stores".
On a named store (@NAME), the entry's object_lock_days and
object_lock_mode are used when the flags are not given.

Examples:
   coffer at /backups create
   COFFER_PASSPHRASE=… coffer at s3://my-kloset/prod create
   coffer at @mystore create
   coffer at s3://my-locked-bucket/prod create --object-lock-days 30`,
		Flags: []cli.Flag{
			&cli.UintFlag{Name: "kdf-time", Value: uint(crypto.DefaultKDF.Time), Hidden: true},
			&cli.UintFlag{Name: "kdf-memory", Value: uint(crypto.DefaultKDF.Memory), Hidden: true, Usage: "KiB"},
			&cli.IntFlag{Name: "object-lock-days", Usage: "lock every object the store writes for `N` days (S3 Object Lock; the bucket must have it enabled)"},
			&cli.StringFlag{Name: "object-lock-mode", Value: "governance", Usage: "`MODE` of the lock: governance (users allowed s3:BypassGovernanceRetention can still delete) or compliance (nobody can, not even the root user)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("create takes no arguments")
			}
			lock, err := objectLockFlags(c)
			if err != nil {
				return err
			}
			loc := c.String("store")
			st, _, err := composeStorage(c, repoOptions{})
			if err != nil {
				return err
			}
			if _, err := st.Stat(c.Context, store.ConfigHandle); err == nil {
				return fmt.Errorf("store %s: %w; nothing was changed", shownStore(c), engine.ErrStoreExists)
			}
			pass, err := passphrase(c, true)
			if err != nil {
				return err
			}
			resolved, _, err := resolveLocation(config.Store, loc)
			if err != nil {
				return err
			}
			if err := prepareS3Store(c.Context, resolved, lock.Days > 0); err != nil {
				return err
			}
			kdf := crypto.DefaultKDF
			kdf.Time, kdf.Memory = uint32(c.Uint("kdf-time")), uint32(c.Uint("kdf-memory"))
			r, err := engine.Create(c.Context, st, pass, engine.CreateOptions{KDF: kdf, ObjectLock: lock})
			if err != nil {
				return fmt.Errorf("store %s: %w", shownStore(c), err)
			}
			if !quiet {
				fmt.Fprintf(c.App.Writer, "created store %s at %s\n", r.Params.StoreID[:8], st.Location())
				if l := r.Params.ObjectLock; l != nil {
					fmt.Fprintf(c.App.Writer, "every object is locked for %s after it is written (object lock, %s)\n", plural(l.Days, "day"), l.Mode)
				}
			}
			return nil
		},
	}
}

// objectLockFlags reads create's --object-lock-days and --object-lock-mode,
// or, for a flag not given on a store @NAME, the entry's object_lock_days
// and object_lock_mode.
func objectLockFlags(c *cli.Context) (store.RetentionPolicy, error) {
	var e config.Entry
	if name := c.String("store"); isName(name) {
		var err error
		if _, e, err = resolveLocation(config.Store, name); err != nil {
			return store.RetentionPolicy{}, err
		}
	}
	days, daysFrom := c.Int("object-lock-days"), "--object-lock-days"
	if !c.IsSet("object-lock-days") && e["object_lock_days"] != "" {
		daysFrom = c.String("store") + " object_lock_days"
		n, err := strconv.Atoi(e["object_lock_days"])
		if err != nil {
			return store.RetentionPolicy{}, usagef("%s %q: want a number of days", daysFrom, e["object_lock_days"])
		}
		days = n
	}
	modeName, modeFrom := c.String("object-lock-mode"), "--object-lock-mode"
	if !c.IsSet("object-lock-mode") && e["object_lock_mode"] != "" {
		modeName, modeFrom = e["object_lock_mode"], c.String("store")+" object_lock_mode"
	}
	if days == 0 {
		if c.IsSet("object-lock-mode") || e["object_lock_mode"] != "" {
			return store.RetentionPolicy{}, usagef("%s needs --object-lock-days N (or object_lock_days in the store entry)", modeFrom)
		}
		return store.RetentionPolicy{}, nil
	}
	if days < 1 || days > engine.MaxObjectLockDays {
		return store.RetentionPolicy{}, usagef("%s %d: want 1 to %d", daysFrom, days, engine.MaxObjectLockDays)
	}
	mode, err := store.ParseRetentionMode(modeName)
	if err != nil {
		return store.RetentionPolicy{}, usagef("%s: %v", modeFrom, err)
	}
	return store.RetentionPolicy{Mode: mode, Days: days}, nil
}

func sourceFor(loc string) (backup.Source, error) {
	if isS3(loc) {
		return s3Source(loc)
	}
	return backup.NewFolder(loc)
}

func backupCmd() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "back up folders, buckets or named sources, one snapshot each",
		UsageText: `coffer at STORE backup [options] SOURCE …

A SOURCE is a folder, s3://BUCKET/PREFIX, or @NAME (coffer config source).
Each source becomes its own snapshot, one after the other; the exit code
is the worst of them (1 if any failed, else 3 if any skipped entries).
With --json, one JSON object per source is printed, in order.

Examples:
   coffer at /backups backup ~/photos
   coffer at /backups backup -tag nightly /srv/data
   coffer at @mystore backup @photos @docs s3://logs-bucket/2026/
   coffer at /backups backup --exclude '*.tmp' --exclude /build/ --exclude-if-present .nobackup ~/src
   coffer at /backups backup --one-file-system --exclude-larger-than 1GiB /
   coffer at /backups backup --include prefix:photos/2024/ --exclude '*.raw' s3://photos-bucket/

Exclusions: a PATTERN is gitignore-style: '*' and '?' within a name,
'**' across folders, a leading '/' (or a '/' inside) anchors it at the
source's root, else it matches a name at any depth; a trailing '/'
matches folders only; '!PATTERN' keeps what an earlier pattern excluded.
An excluded folder is not read. For buckets, a key is excluded when it or
one of its prefixes up to a '/' matches; --include keeps only the keys
that match, and prefix:P is a plain key prefix. Keys are filtered on the
LIST, before any request for their content. A named source's settings
(exclude, iexclude, exclude_file, include, exclude_if_present,
exclude_larger_than, one_file_system) apply too: list flags add to its
lists, --exclude-larger-than and --one-file-system replace its value.
Excluded entries are counted in the summary, not listed.`,
		Flags: append([]cli.Flag{
			concurrencyFlag(), jsonFlag(),
			&cli.StringSliceFlag{Name: "tag", Usage: "tag the snapshot (repeatable)"},
			&cli.BoolFlag{Name: "force", Usage: "read every file, ignoring the parent snapshot"},
			// For tests of retention policies (and importing old backups):
			// the snapshot's time instead of now.
			&cli.StringFlag{Name: "time", Hidden: true, Usage: "date the snapshot `TIME` (RFC 3339, or 2006-01-02 15:04:05 in the local zone)"},
		}, excludeFlags()...),
		Action:       runBackup,
		BashComplete: completeNames(config.Source),
	}
}

// backupOut is the JSON of one source's backup: the snapshot, or the
// error that kept it from being written.
type backupOut struct {
	*snapshotOut
	Given string `json:"given"` // the source as given (a path, a URI or @name), secrets masked
	Error string `json:"error,omitempty"`
}

func runBackup(c *cli.Context) error {
	if c.NArg() < 1 {
		return usagef("backup takes one or more sources: folders, s3://BUCKET/PREFIX or @NAME")
	}
	snapTime, err := parseSnapshotTime(c.String("time"))
	if err != nil {
		return err
	}
	// Resolve every name before anything is read or written, so a typo
	// in the last of them does not leave the others half done.
	locs := make([]string, c.NArg())
	filters := make([]*backup.Filter, c.NArg())
	for i, a := range c.Args().Slice() {
		loc, entry, err := resolveLocation(config.Source, a)
		if err != nil {
			return err
		}
		locs[i] = loc
		if filters[i], err = filterFor(c, a, loc, entry); err != nil {
			return err
		}
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter
	var failed, partial int
	var firstErr error
	for i, given := range c.Args().Slice() {
		sn, err := backupOne(c, r, given, locs[i], filters[i], snapTime)
		if c.Bool("json") {
			out := backupOut{Given: s3io.Redact(given)}
			if sn != nil {
				o := snapshotJSON(sn)
				out.snapshotOut = &o
			}
			if err != nil {
				out.Error = explain(err)
			}
			if jerr := printJSON(c.App.Writer, out); jerr != nil {
				return jerr
			}
		}
		switch {
		case err != nil:
			failed++
			if firstErr == nil {
				firstErr = err
			}
			if c.NArg() > 1 {
				fmt.Fprintf(stderr, "coffer: %s\n", explain(err))
			}
		case sn.Partial:
			partial++
		}
		if err == nil && !c.Bool("json") && !quiet {
			st := sn.Stats
			fmt.Fprintf(c.App.Writer, "snapshot %s of %s saved\n", sn.ID.Short(), sn.Source)
			fmt.Fprintf(c.App.Writer, "  %s, %s, %s; %s reused unread, %s read\n",
				plural(st.Files, "file"), plural(st.Dirs, "dir"), humanize.IBytes(st.Bytes), plural(st.Unchanged, "unchanged file"), humanize.IBytes(st.ReadBytes))
			fmt.Fprintf(c.App.Writer, "  added %s, %s of new data, %s stored, in %.1fs\n",
				plural(st.NewBlobs, "blob"), humanize.IBytes(st.NewBytes), humanize.IBytes(st.StoredBytes), sn.Duration)
			if st.ExcludedFiles+st.ExcludedDirs > 0 {
				fmt.Fprintf(c.App.Writer, "  excluded %s, %s\n", plural(st.ExcludedFiles, "file"), plural(st.ExcludedDirs, "dir"))
			}
			if sn.Partial {
				were := "were"
				if st.Skipped == 1 {
					were = "was"
				}
				fmt.Fprintf(c.App.Writer, "  partial: %s %s skipped (listed above)\n", plural(st.Skipped, "entry"), were)
			}
		}
	}
	n := c.NArg()
	if n > 1 && !c.Bool("json") && !quiet {
		fmt.Fprintf(c.App.Writer, "%d of %d sources saved", n-failed, n)
		if partial > 0 {
			fmt.Fprintf(c.App.Writer, ", %d partially", partial)
		}
		fmt.Fprintln(c.App.Writer)
	}
	switch {
	case failed > 0 && n == 1:
		return firstErr
	case failed > 0:
		return fmt.Errorf("%d of %d backups failed (see above); the others were saved", failed, n)
	case partial > 0 && n == 1:
		return &partialError{fmt.Sprintf("the snapshot is partial: some entries were skipped (listed above)")}
	case partial > 0:
		return &partialError{fmt.Sprintf("%d of %d snapshots are partial: some entries were skipped (listed above)", partial, n)}
	}
	return nil
}

// parseSnapshotTime reads backup's hidden --time: RFC 3339, or a date
// and time in the local zone; "" is the zero time (now).
func parseSnapshotTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("--time %q: want RFC 3339 (2026-11-28T10:00:00Z) or 2026-11-28 10:00:00 (local time)", v)
}

// backupOne backs up one source into a snapshot.
// scanLimit bounds the entries the scan ahead of a first backup counts.
const scanLimit = 20_000_000

// scanAhead walks a folder source as the backup will (same filter),
// counting entries and bytes, and gives the total to the progress view
// once the walk is done; it gives up quietly on an error or past
// scanLimit entries.
func scanAhead(ctx context.Context, loc string, filter *backup.Filter, view *progressView) {
	src, err := sourceFor(loc)
	if err != nil {
		return
	}
	if filter != nil {
		// The same choices, but counters of its own: the backup's walk
		// counts what it excludes in filter.
		setFilter(src, filter.Clone())
	}
	var g progressGoal
	errStop := errors.New("stop")
	err = src.Walk(ctx, func(it *backup.Item) error {
		g.Objects++
		if it.Node.Type == tree.TypeFile {
			g.Bytes += int64(it.Node.Size)
		}
		if g.Objects > scanLimit {
			return errStop
		}
		return nil
	}, func(string, error) {})
	if err == nil && ctx.Err() == nil {
		view.setGoal(g)
	}
}

func backupOne(c *cli.Context, r *engine.Repo, given, loc string, filter *backup.Filter, snapTime time.Time) (*engine.Snapshot, error) {
	src, err := sourceFor(loc)
	if err != nil {
		return nil, fmt.Errorf("backup of %s: %w", s3io.Redact(given), err)
	}
	setFilter(src, filter)
	pr := &engine.Progress{}
	var goal progressGoal
	if progressWanted() {
		// The newest snapshot of the same source is the best guess of
		// how many entries there are.
		if snaps, err := r.Snapshots(c.Context); err == nil {
			for _, sn := range snaps {
				if sn.Source == src.URI() {
					goal.Objects = int64(sn.Stats.Files + sn.Stats.Dirs)
				}
			}
		}
	}
	view := startProgress("backup", pr, goal)
	if view.p != nil && goal.Objects == 0 && !isS3(loc) {
		// No earlier snapshot to estimate from: count ahead, as restic's
		// scanner does, so the line gets a total and a time left.
		scanCtx, stopScan := context.WithCancel(c.Context)
		defer stopScan()
		go scanAhead(scanCtx, loc, filter, view)
	}
	warnTo := view.Writer(c.App.ErrWriter)
	// Under --memory, the chunker windows and the pack buffers are taken
	// from the budget for the whole backup; a bucket source's parts
	// share the rest.
	windows, uploaders, held := backupShare(s3Budget(loc, storeLocation(c)), r.Params.Chunker.Max, r.Params.PackSize)
	if held > 0 {
		if err := s3Memory.Acquire(c.Context, held); err != nil {
			return nil, err
		}
		defer s3Memory.Release(held)
	}
	res, err := backup.Run(c.Context, r, src, backup.Options{
		Concurrency: concurrencyFor(c, loc), Windows: windows, Uploaders: uploaders, Tags: c.StringSlice("tag"), NoParent: c.Bool("force"), Progress: pr, Time: snapTime,
		Warn: func(p string, err error) {
			fmt.Fprintf(warnTo, "coffer: skipped %s: %v\n", p, err)
		},
	})
	view.done()
	if err != nil {
		return nil, fmt.Errorf("backup of %s: %w (no snapshot was written; the next backup reuses what was uploaded)", src.URI(), err)
	}
	return res.Snapshot, nil
}

type snapshotOut struct {
	ID       string                `json:"id"`
	Short    string                `json:"short_id"`
	Time     time.Time             `json:"time"`
	Source   string                `json:"source"`
	Host     string                `json:"host,omitempty"`
	Tags     []string              `json:"tags,omitempty"`
	Parent   string                `json:"parent,omitempty"`
	Original string                `json:"original,omitempty"` // the snapshot 'repair snapshots' repaired this one from
	Partial  bool                  `json:"partial"`
	Stats    engine.SnapshotStats  `json:"stats"`
	Duration float64               `json:"duration_seconds"`
	Skipped  []engine.SkippedEntry `json:"skipped_entries,omitempty"`
}

func snapshotJSON(sn *engine.Snapshot) snapshotOut {
	o := snapshotOut{ID: sn.ID.String(), Short: sn.ID.Short(), Time: sn.Time, Source: sn.Source, Host: sn.Host,
		Tags: sn.Tags, Partial: sn.Partial, Stats: sn.Stats, Duration: sn.Duration, Skipped: sn.SkippedEntries}
	if sn.Parent != nil {
		o.Parent = sn.Parent.String()
	}
	if sn.Original != nil {
		o.Original = sn.Original.String()
	}
	return o
}

// splitRef splits "id:/path" into the snapshot reference and the path.
func splitRef(ref string) (string, string) {
	id, p, ok := strings.Cut(ref, ":")
	if !ok || p == "" {
		p = "/"
	}
	return id, p
}

// resolveRef finds the snapshot and the node that "ID[:/PATH]" names,
// loading the index the node's content needs.
func resolveRef(c *cli.Context, r *engine.Repo, ref string, preferFile bool) (*engine.Snapshot, *tree.Node, string, error) {
	id, p := splitRef(ref)
	f, err := snapshotFilter(c)
	if err != nil {
		return nil, nil, p, err
	}
	sn, err := r.FindSnapshotIn(c.Context, id, f)
	if err != nil {
		return nil, nil, p, err
	}
	if err := r.LoadIndex(c.Context); err != nil {
		return nil, nil, p, err
	}
	n, err := r.ResolvePath(c.Context, sn, p, preferFile)
	return sn, n, p, err
}

func lsCmd() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list snapshots, or the entries of a path in a snapshot",
		UsageText: `coffer at STORE ls                       (snapshots, newest last)
   coffer at STORE ls [-recursive] ID[:/PATH]

Examples:
   coffer at /backups ls
   coffer at /backups ls latest:/photos/2024
   coffer at /backups ls -recursive 3fa2b1c0`,
		Flags: []cli.Flag{jsonFlag(), &cli.BoolFlag{Name: "recursive", Aliases: []string{"R"}, Usage: "list the whole subtree"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usagef("ls takes at most one ID[:/PATH]")
			}
			r, _, err := openRepo(c, repoOptions{})
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				return lsSnapshots(c, r)
			}
			return lsPath(c, r, c.Args().First())
		},
	}
}

func lsSnapshots(c *cli.Context, r *engine.Repo) error {
	f, err := snapshotFilter(c)
	if err != nil {
		return err
	}
	snaps, err := r.SnapshotsIn(c.Context, f)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		out := make([]snapshotOut, 0, len(snaps))
		for _, sn := range snaps {
			out = append(out, snapshotJSON(sn))
		}
		return printJSON(c.App.Writer, out)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSOURCE\tFILES\tSIZE\tTAGS")
	for _, sn := range snaps {
		mark := ""
		if sn.Partial {
			mark = " (partial)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s%s\n", sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05"),
			sn.Source, sn.Stats.Files, humanize.IBytes(sn.Stats.Bytes), strings.Join(sn.Tags, ","), mark)
	}
	return tw.Flush()
}

type entryOut struct {
	Path   string    `json:"path"`
	Type   string    `json:"type"`
	Mode   string    `json:"mode"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"`
}

func modeString(n *tree.Node) string {
	m := fs.FileMode(n.Mode & 0o777)
	switch n.Type {
	case tree.TypeDir:
		m |= fs.ModeDir
	case tree.TypeSymlink:
		m |= fs.ModeSymlink
	}
	if n.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m.String()
}

func lsPath(c *cli.Context, r *engine.Repo, ref string) error {
	_, node, p, err := resolveRef(c, r, ref, false)
	if err != nil {
		return err
	}
	jsonOut := c.Bool("json")
	var list []entryOut
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 1, ' ', 0)
	recursive := c.Bool("recursive")
	print := func(path string, n *tree.Node) {
		e := entryOut{Path: path, Type: n.Type.String(), Mode: modeString(n), Size: n.Size, MTime: time.Unix(0, n.MTime).UTC(), Target: n.Target}
		if jsonOut {
			list = append(list, e)
			return
		}
		name := path
		if !recursive && node.Type == tree.TypeDir {
			name = n.Name
		}
		if n.Type == tree.TypeSymlink {
			name += " -> " + n.Target
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.Mode, e.Size, time.Unix(0, n.MTime).Local().Format("2006-01-02 15:04:05"), name)
	}
	base := strings.TrimSuffix(p, "/")
	if node.Type != tree.TypeDir {
		print(base, node)
	} else {
		var walk func(dir *tree.Node, prefix string) error
		walk = func(dir *tree.Node, prefix string) error {
			d, err := r.LoadDir(c.Context, dir.Subtree)
			if err != nil {
				return err
			}
			it := r.Iter(d)
			for {
				n, ok, err := it.Next(c.Context)
				if err != nil {
					return err
				}
				if !ok {
					return nil
				}
				cp := *n
				path := prefix + "/" + n.Name
				print(path, &cp)
				if recursive && n.Type == tree.TypeDir {
					if err := walk(&cp, path); err != nil {
						return err
					}
				}
			}
		}
		if err := walk(node, base); err != nil {
			return err
		}
	}
	if jsonOut {
		if list == nil {
			list = []entryOut{}
		}
		return printJSON(c.App.Writer, list)
	}
	return tw.Flush()
}

func catCmd() *cli.Command {
	return &cli.Command{
		Name:      "cat",
		Usage:     "write a file from a snapshot to standard output",
		UsageText: "coffer at STORE cat ID:/PATH\n\nExample:\n   coffer at /backups cat latest:/photos/a.jpg > a.jpg",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("cat takes one ID:/PATH")
			}
			r, _, err := openRepo(c, repoOptions{})
			if err != nil {
				return err
			}
			_, n, p, err := resolveRef(c, r, c.Args().First(), true)
			if err != nil {
				return err
			}
			switch n.Type {
			case tree.TypeDir:
				return usagef("%s is a directory (use ls)", p)
			case tree.TypeSymlink:
				fmt.Fprintln(c.App.Writer, n.Target)
				return nil
			}
			return r.WriteFileTo(c.Context, n, c.App.Writer, 2*runtime.NumCPU())
		},
	}
}

func restoreCmd() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "restore a snapshot, or a path in it, into a folder or a bucket",
		UsageText: `coffer at STORE restore -to DEST [--overwrite MODE] [--delete] [--dry-run] ID[:/PATH]

DEST is a folder, s3://BUCKET/PREFIX or @NAME (coffer config destination).
A directory's contents are written into DEST; a file or symlink is
written as DEST/NAME.

Into a folder, restore never destroys what it was not asked to. An
existing file or symlink is handled as --overwrite says:
   never       keep it (the default): nothing local is ever replaced
   if-changed  replace it unless size, mtime and mode (a symlink: its
               target) already match the snapshot
   if-newer    replace it only if the snapshot's mtime is newer
   always      replace it, even if it matches
A file that already matches the snapshot is left alone in every mode
but always. Existing entries that differ and are kept are counted in
a note (-v names them); they are what was asked, so the exit code stays
0. To finish an interrupted restore, run it again with --overwrite
if-changed (a half-written file has neither the size nor the mtime of
the snapshot's). A replacement is written beside the old file and renamed
over it when complete: a failed one leaves the old file.

A type conflict — a file or symlink where the snapshot has a directory,
or a directory where it has a file — fails that entry with a message
naming it, and nothing is changed there (exit 1; the rest is restored).
--overwrite always replaces a file, symlink or special file by the
snapshot's directory; a directory in the way of a file is removed only
with --overwrite always --delete.

--delete removes, from each directory the restore writes, the entries
the snapshot does not have there (a directory with all it holds). It
never touches anything outside DEST or in a directory the snapshot does
not have.

--dry-run writes nothing and says what would be created, replaced,
kept and deleted: counts always, one line each with -v, and lists with
--json. Its exit code is the one the restore would have.

Keys of a bucket's snapshot that no folder can hold are renamed as
docs/S3.md says; a folder snapshot's names are restored as they are.

Into a bucket, objects are always replaced: --overwrite (other than
always), --delete and --dry-run apply to folders only.

Examples:
   coffer at /backups restore -to ./restored latest
   coffer at /backups restore -to /tmp/x 3fa2b1c0:/photos/2024
   coffer at /backups restore -v --dry-run --delete -to ~/docs latest:/docs
   coffer at /backups restore --overwrite if-changed -to ~/docs latest:/docs
   coffer at @mystore restore -to @preview latest`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Required: true, Usage: "restore into `DEST`: a folder, s3://BUCKET/PREFIX or @NAME"},
			&cli.StringFlag{Name: "overwrite", Value: "never", Usage: "what to do with an existing file: `MODE` never, if-changed, if-newer or always (folders only)"},
			&cli.BoolFlag{Name: "delete", Usage: "remove entries the snapshot does not have from the directories restored (folders only)"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "write nothing; say what would be created, replaced, kept and deleted (folders only)"},
			concurrencyFlag(), jsonFlag(),
		},
		Action:       runRestore,
		BashComplete: completeNames(""),
	}
}

// restoreOut is the JSON summary of a restore.
type restoreOut struct {
	Snapshot  string          `json:"snapshot"`
	Short     string          `json:"short_id"`
	Path      string          `json:"path"`
	To        string          `json:"to"`
	DryRun    bool            `json:"dry_run,omitempty"`
	Overwrite string          `json:"overwrite"`
	Files     uint64          `json:"files"`
	Dirs      uint64          `json:"dirs"`
	Bytes     uint64          `json:"bytes"`
	Failed    uint64          `json:"failed"`
	Created   uint64          `json:"created"`
	Replaced  uint64          `json:"replaced"`
	Unchanged uint64          `json:"unchanged"`
	Kept      uint64          `json:"kept"`
	Deleted   uint64          `json:"deleted"`
	Entries   []restoreAction `json:"entries,omitempty"` // dry run: what would be done
	Duration  float64         `json:"duration_seconds"`
	Error     string          `json:"error,omitempty"`
}

type restoreAction struct {
	Action string `json:"action"`
	Path   string `json:"path"`
	Why    string `json:"why,omitempty"`
}

func runRestore(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("restore takes one ID[:/PATH] (flags go before it: restore -to DEST ID)")
	}
	to, _, err := resolveLocation(config.Destination, c.String("to"))
	if err != nil {
		return err
	}
	mode, err := restore.ParseOverwrite(c.String("overwrite"))
	if err != nil {
		return usagef("--overwrite: %v", err)
	}
	dry, del := c.Bool("dry-run"), c.Bool("delete")
	if isS3(to) {
		if (c.IsSet("overwrite") && mode != restore.OverwriteAlways) || del || dry {
			return usagef("--overwrite %s, --delete and --dry-run apply to folders: a restore into a bucket replaces the objects it writes", mode)
		}
		mode = restore.OverwriteAlways
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	sn, n, p, err := resolveRef(c, r, c.Args().First(), false)
	if err != nil {
		return err
	}
	pr := &engine.Progress{}
	var goal progressGoal
	switch {
	case dry:
	case n.Type == tree.TypeFile:
		goal = progressGoal{Objects: 1, Bytes: int64(n.Size)}
	case strings.Trim(p, "/") == "":
		goal = progressGoal{Objects: int64(sn.Stats.Files + sn.Stats.Dirs), Bytes: int64(sn.Stats.Bytes)}
	}
	view := startProgress("restore", pr, goal)
	warnTo := view.Writer(c.App.ErrWriter)
	dst, err := destinationFor(c.Context, to, warnTo)
	if err != nil {
		view.done()
		return err
	}
	if f, ok := dst.(*restore.Folder); ok {
		// The key mapping gives S3 keys a place in a folder; a folder
		// snapshot's names are folder names already.
		f.KeyMapping = isS3(sn.Source)
		if dry {
			f.Mapped = nil
		}
	}
	asJSON := c.Bool("json")
	var entries []restoreAction
	lineTo := view.Writer(c.App.Writer)
	start := time.Now()
	opt := restore.Options{
		Concurrency: 2 * concurrencyFor(c, to, storeLocation(c)), Progress: pr,
		Overwrite: mode, Delete: del, DryRun: dry,
		Warn: func(p string, err error) {
			fmt.Fprintf(warnTo, "coffer: cannot restore %s: %v\n", p, err)
		},
		Report: func(a restore.Action, p, why string) {
			if a == restore.Unchanged {
				return
			}
			if asJSON && dry {
				entries = append(entries, restoreAction{a.String(), p, why})
			} else if verbose && !asJSON {
				if why != "" {
					why = " (" + why + ")"
				}
				fmt.Fprintf(lineTo, "%s %s%s\n", a, p, why)
			}
		},
	}
	if m := s3Budget(to, storeLocation(c)); m != nil {
		opt.Memory = m // a nil *s3io.Memory must stay a nil Budget
	}
	st, err := restore.Restore(c.Context, r, n, dst, opt)
	view.done()
	secs := time.Since(start).Seconds()
	if asJSON {
		out := restoreOut{Snapshot: sn.ID.String(), Short: sn.ID.Short(), Path: p, To: dst.URI(), DryRun: dry,
			Overwrite: mode.String(), Files: st.Files, Dirs: st.Dirs, Bytes: st.Bytes, Failed: st.Failed,
			Created: st.Created, Replaced: st.Replaced, Unchanged: st.Unchanged, Kept: st.Kept, Deleted: st.Deleted,
			Entries: entries, Duration: secs}
		if dry && out.Entries == nil {
			out.Entries = []restoreAction{}
		}
		if err != nil {
			out.Error = explain(err)
		}
		if jerr := printJSON(c.App.Writer, out); jerr != nil {
			return jerr
		}
		return err
	}
	counts := fmt.Sprintf("created %d, replaced %d, unchanged %d, kept %d, deleted %d",
		st.Created, st.Replaced, st.Unchanged, st.Kept, st.Deleted)
	switch {
	case dry && !quiet:
		fmt.Fprintf(c.App.Writer, "dry run, nothing written: would restore %s, %s, %s from snapshot %s to %s (%s)\n",
			plural(st.Files, "file"), plural(st.Dirs, "dir"), humanize.IBytes(st.Bytes), sn.ID.Short(), dst.URI(),
			strings.NewReplacer("created", "create", "replaced", "replace", "kept", "keep", "deleted", "delete").Replace(counts))
	case err == nil && !quiet:
		fmt.Fprintf(c.App.Writer, "restored %s, %s, %s from snapshot %s to %s in %.1fs (%s)\n",
			plural(st.Files, "file"), plural(st.Dirs, "dir"), humanize.IBytes(st.Bytes), sn.ID.Short(), dst.URI(), secs, counts)
	}
	if st.Kept > 0 {
		verb := "were"
		if dry {
			verb = "would be"
		}
		differ := "differ"
		if st.Kept == 1 {
			differ = "differs"
			verb = strings.Replace(verb, "were", "was", 1)
		}
		fmt.Fprintf(c.App.ErrWriter, "coffer: note: %s %s from the snapshot and %s kept (--overwrite %s); -v names them, --overwrite if-changed or always replaces them\n",
			plural(st.Kept, "existing entry"), differ, verb, mode)
	}
	return err
}

func checkCmd() *cli.Command {
	return &cli.Command{
		Name:    "check",
		Aliases: []string{"verify"},
		Usage:   "read every blob, verify its MAC and id, and name the files a bad blob belongs to",
		UsageText: `coffer at STORE check [ID …] [--read-data | --read-data-subset N/M | --read-data-subset P% | --structure-only]

With no ID the whole store is checked, including packs no snapshot uses.
The exit code is 1 when anything is damaged; --json prints the figures
and every problem either way.

What is read:
   every mode    the index files, the snapshots, and every tree blob
                 of their trees (directories, pages, chunk lists),
                 verified; the pack listing (except --read-data with ID)
   --read-data   (the default) every pack: its hash, its trailer
                 against the index, every blob's MAC and id
   --read-data-subset N/M
                 only the packs of slice N of M, read as --read-data
                 does. A pack's slice is fixed by its id, so running
                 1/M, 2/M, … M/M (say one a night) reads every pack
                 exactly once, also as packs are added
   --read-data-subset P%
                 a random P percent of the packs, by count
   --structure-only
                 no pack (fast); an indexed pack missing from the
                 listing is still reported

Examples:
   coffer at /backups check
   coffer at /backups verify latest
   coffer at @mystore check --read-data-subset "$(date +%u)/7"   # Monday 1/7 … Sunday 7/7
   coffer at @mystore check --read-data-subset 5%
   coffer at @mystore check --json | jq .problems`,
		Flags: []cli.Flag{concurrencyFlag(), jsonFlag(),
			&cli.BoolFlag{Name: "read-data", Usage: "read and verify every pack (the default)"},
			&cli.StringFlag{Name: "read-data-subset", Usage: "read only slice `N/M` of the packs (by pack id), or a random `P%` of them"},
			&cli.BoolFlag{Name: "structure-only", Usage: "read no pack: index, snapshots and trees only"},
		},
		Action: runCheck,
	}
}

// checkOut is the JSON of a check: whether it passed, then the result.
type checkOut struct {
	OK bool `json:"ok"`
	check.Result
}

// checkSubset reads check's choice of packs from its flags.
func checkSubset(c *cli.Context) (check.Subset, error) {
	set := 0
	for _, f := range []string{"read-data", "read-data-subset", "structure-only"} {
		if c.IsSet(f) {
			set++
		}
	}
	if set > 1 {
		return check.Subset{}, usagef("check: give at most one of --read-data, --read-data-subset and --structure-only")
	}
	switch {
	case c.IsSet("read-data-subset"):
		sub, err := check.ParseSubset(c.String("read-data-subset"))
		if err != nil {
			return check.Subset{}, usagef("check: %w", err)
		}
		return sub, nil
	case c.Bool("structure-only"):
		return check.Subset{Mode: check.ReadNone}, nil
	}
	return check.Subset{}, nil
}

func runCheck(c *cli.Context) error {
	sub, err := checkSubset(c)
	if err != nil {
		return err
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	snaps, err := chosenSnapshots(c, r, "check")
	if err != nil {
		return err
	}
	pr := &engine.Progress{}
	var goal progressGoal
	if progressWanted() && len(snaps) == 0 && sub.Mode == check.ReadAll {
		// A whole-store check reads every pack: their listing is the goal.
		for _, k := range []store.Kind{store.KindDataPack, store.KindTreePack} {
			r.Storage().List(c.Context, k, func(o store.ObjectInfo) error {
				goal.Objects++
				goal.Bytes += o.Size
				return nil
			})
		}
	}
	view := startProgress("check", pr, goal)
	res, err := check.Run(c.Context, r, check.Options{Snapshots: snaps, Concurrency: concurrencyFor(c, storeLocation(c)), Progress: pr, Subset: sub})
	view.done()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		out := checkOut{OK: res.OK(), Result: *res}
		if out.Problems == nil {
			out.Problems = []check.Problem{}
		}
		if out.Warnings == nil {
			out.Warnings = []string{}
		}
		if err := printJSON(c.App.Writer, out); err != nil {
			return err
		}
	} else {
		for _, w := range res.Warnings {
			fmt.Fprintf(c.App.ErrWriter, "coffer: warning: %s\n", w)
		}
		for _, p := range res.Problems {
			fmt.Fprintf(c.App.Writer, "damaged: %s\n", p)
		}
	}
	if !res.OK() {
		// Say what helps: damaged blobs stay in the index (and new
		// backups reuse them) until repair packs drops them.
		what := "the damage is listed above (no file is affected: a damaged pack's blobs are unused, or an index file is damaged); " +
			"'coffer repair packs' drops damaged packs from the index"
		for _, p := range res.Problems {
			if p.Path != "" {
				what = "the damaged files are listed above; their data cannot be read from this store. Restore what you need from snapshots not listed as damaged, then: " +
					"'coffer repair packs' (drops the damaged blobs from the index, so the next backup stores them again), " +
					"'coffer repair snapshots' (writes copies of the damaged snapshots without the damaged files; --forget removes the originals), " +
					"and back the sources up again"
				break
			}
		}
		for _, p := range res.Problems {
			if strings.HasPrefix(p.Message, "index file ") || strings.Contains(p.Message, engine.ErrMissingBlob.Error()) {
				what = "an index file is damaged or blobs are in no index: first run 'coffer repair index' (it rebuilds the index from the packs) and check again. " + what
				break
			}
		}
		return fmt.Errorf("check found %s in %s, %s (%s read)%s; %s",
			plural(len(res.Problems), "problem"), plural(res.Snapshots, "snapshot"), plural(res.Packs, "pack"),
			humanize.IBytes(uint64(res.Bytes)), subsetNote(res), what)
	}
	if !c.Bool("json") && !quiet {
		fmt.Fprintf(c.App.Writer, "no problems found: %s, %s, %s, %s read and verified%s\n",
			plural(res.Snapshots, "snapshot"), plural(res.Packs, "pack"), plural(res.Blobs, "blob"), humanize.IBytes(uint64(res.Bytes)), subsetNote(res))
	}
	return nil
}

// subsetNote says, after a check that read only some packs, of how many.
func subsetNote(res *check.Result) string {
	switch res.Subset {
	case "all", "":
		return ""
	case "none":
		return fmt.Sprintf(" (structure only: none of the %s read)", plural(res.PacksTotal, "pack"))
	}
	return fmt.Sprintf(" (subset %s: %d of %s, %s of %s)", res.Subset, res.Packs, plural(res.PacksTotal, "pack"),
		humanize.IBytes(uint64(res.Bytes)), humanize.IBytes(uint64(res.BytesTotal)))
}

func infoCmd() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "show a store's snapshots, packs, blobs, sizes and ratios",
		UsageText: `coffer at STORE info [--json]

Examples:
   coffer at /backups info
   coffer at @mystore info --json | jq .dedup_ratio`,
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			r, _, err := openRepo(c, repoOptions{})
			if err != nil {
				return err
			}
			in, err := r.Info(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, in)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "store          %s (id %s, format %d)\n", in.Location, in.StoreID[:8], in.Version)
			if l := r.Params.ObjectLock; l != nil {
				fmt.Fprintf(w, "object lock    every object locked for %s after it is written (%s)\n", plural(l.Days, "day"), l.Mode)
			}
			fmt.Fprintf(w, "snapshots      %d\n", in.Snapshots)
			fmt.Fprintf(w, "packs          %d data, %d tree; %d index files\n", in.DataPacks, in.TreePacks, in.IndexFiles)
			fmt.Fprintf(w, "blobs          %d data, %d tree\n", in.DataBlobs, in.TreeBlobs)
			fmt.Fprintf(w, "logical size   %s (all snapshots' file content)\n", humanize.IBytes(in.LogicalBytes))
			fmt.Fprintf(w, "unique data    %s\n", humanize.IBytes(in.UniqueBytes))
			fmt.Fprintf(w, "stored size    %s\n", humanize.IBytes(in.StoredBytes))
			fmt.Fprintf(w, "dedup ratio    %.2fx\n", in.DedupRatio)
			fmt.Fprintf(w, "compression    %.2fx\n", in.CompressRatio)
			fmt.Fprintf(w, "overall        %.2fx\n", in.TotalRatio)
			return nil
		},
	}
}

func versionCmd() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version and what is built in",
		UsageText: "coffer version\n\nExample:\n   coffer version",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			fmt.Fprintf(w, "coffer %s (store format %d, %s)\n", version, engine.FormatVersion, runtime.Version())
			fmt.Fprintln(w, "sources: fs, s3")
			fmt.Fprintln(w, "destinations: fs, s3")
			fmt.Fprintln(w, "stores: fs, s3")
			return nil
		},
	}
}
