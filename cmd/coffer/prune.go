package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
)

func pruneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "max-unused", Value: "5%", Usage: "repack the packs with the most unused bytes until at most `LIMIT` of the live bytes are unused (a percentage, or 'unlimited': never repack)"},
		&cli.BoolFlag{Name: "extend-retention", Usage: "on a store with an object lock (create --object-lock-days N), lock every object the store still needs (the config, the packs snapshots use, the index, the snapshots) until at least N days from now; the packs prune stops indexing are left to expire (--extend-retention=false: don't)", DefaultText: "on for a store with an object lock"},
		&cli.DurationFlag{Name: "grace", Usage: "delete a pack only `DURATION` after the index stopped naming it (for hosts running a coffer that leaves no backup marker)", DefaultText: "0: as soon as no backup that was running then is left"},
	}
}

func pruneCmd() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "delete the packs no snapshot uses (after forget or rm), and merge the index",
		UsageText: `coffer at STORE prune [--dry-run] [--max-unused 5%] [--grace DURATION] [--json]

Marks every blob the snapshots use, writes a new, merged index without
the packs none of them uses (and with the packs an interrupted backup
left unindexed, when a snapshot uses them), and only then removes the
old index files. The unused packs (also leftovers of killed backups)
become deletion candidates, recorded in the store with the time. Packs
that hold both used and unused blobs are repacked, most unused first,
until the unused bytes left are at most --max-unused of the live ones:
their used blobs are copied into new packs (indexed before the old
ones stop being), and the old ones become candidates too.

Backups never wait for a prune: each one keeps a marker under locks/
while it runs. A candidate is deleted only when every backup that was
running when the index stopped naming it has finished (or its marker
expired), and the snapshots written since do not use it; else it waits
and the next prune deletes it (the report says for whom). With nothing
else running, forget --prune reclaims the space at once. Only one prune
runs at a time (locks/prune; coffer unlock removes a stale one).

A pack whose deletion is refused (a retention lock, a permission) is
reported and kept; the next prune tries again.

On a store with an object lock (create --object-lock-days N), prune
also extends the locks of everything the store still needs (the config,
every pack a snapshot uses, the index files, the snapshots) to at least
N days from now, so a snapshot kept for years stays protected, while
the packs of forgotten snapshots are left to expire and be deleted by a
later prune. It needs s3:GetObjectRetention and s3:PutObjectRetention
(docs/S3.md); --extend-retention=false skips it.

Examples:
   coffer at /backups forget --keep-daily 7 --prune
   coffer at /backups prune --dry-run
   coffer at @mystore prune --json`,
		Flags: append(pruneFlags(),
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "write and delete nothing; say what would be done"},
			concurrencyFlag(), jsonFlag()),
		Action: runPrune,
	}
}

func runPrune(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("prune: takes no arguments (got %q)", c.Args().First())
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	res, err := pruneRepo(c, r, c.Bool("dry-run"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, res); err != nil {
			return err
		}
	} else {
		printPrune(c.App.Writer, res)
	}
	return pruneFailed(res) // exit 1 with --json too: cron reads the status
}

// pruneRepo runs a prune for prune and forget --prune.
func pruneRepo(c *cli.Context, r *engine.Repo, dry bool) (*engine.PruneResult, error) {
	maxUnused, err := parseMaxUnused(c.String("max-unused"))
	if err != nil {
		return nil, err
	}
	_, canLock := store.RetainerOf(r.Storage())
	extend := r.Params.ObjectLock != nil && canLock
	if c.IsSet("extend-retention") {
		extend = c.Bool("extend-retention")
	}
	res, err := r.Prune(c.Context, engine.PruneOptions{
		DryRun: dry, Grace: c.Duration("grace"), Concurrency: c.Int("concurrency"), MaxUnused: maxUnused,
		ExtendRetention: extend,
		Log:             func(s string) { verbosef("prune: %s", s) },
	})
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if !dry && (res.IndexFilesWritten > 0 || res.Rescued > 0) {
		// The kept index covers the old index files; it would be dropped
		// on its next use anyway (FORMAT.md, appendix).
		if dir, err := storeCacheDir("coffer-index", r.Params.StoreID); err == nil {
			os.RemoveAll(dir)
		}
	}
	return res, nil
}

// parseMaxUnused reads --max-unused: "5%", "0%", "unlimited".
func parseMaxUnused(v string) (float64, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "unlimited") {
		return 1, nil
	}
	n, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || !strings.HasSuffix(v, "%") || n < 0 || n > 100 {
		return 0, usagef("--max-unused %q: want a percentage such as 5%% (0%% repacks every pack with an unused blob), or unlimited", v)
	}
	if n == 0 {
		return 1e-12, nil // the engine reads 0 as its default
	}
	if n >= 100 {
		return 1, nil
	}
	return n / 100, nil
}

func pruneFailed(res *engine.PruneResult) error {
	if n := len(res.Failed); n > 0 {
		return fmt.Errorf("prune: %s could not be deleted (named above) and %s kept; the next prune tries again", plural(n, "object"), map[bool]string{true: "is", false: "are"}[n == 1])
	}
	return nil
}

func printPrune(w io.Writer, res *engine.PruneResult) {
	ib := func(n int64) string { return humanize.IBytes(uint64(n)) }
	for _, b := range res.BadTrailers {
		fmt.Fprintf(w, "bad trailer: %s pack %s (%s): %s; left alone\n", b.Kind, b.Pack, ib(b.Size), b.Error)
	}
	for _, f := range res.Failed {
		fmt.Fprintf(w, "could not delete %s %s: %s\n", f.Kind, f.Pack, f.Error)
	}
	if quiet && !res.DryRun {
		return
	}
	fmt.Fprintf(w, "the store holds %s (%s); %s %s %d of them (%s, of which %s in blobs no snapshot uses)\n",
		plural(res.Packs, "pack"), ib(res.Bytes), plural(res.Snapshots, "snapshot"), map[bool]string{true: "uses", false: "use"}[res.Snapshots == 1],
		res.Kept, ib(res.KeptBytes), ib(res.UnusedInKept))
	if res.DryRun {
		fmt.Fprintf(w, "would stop indexing %s (%s) no snapshot uses, repack %s (%s, copying %s), index again %s, and delete %s (%s) now",
			plural(res.Unused, "pack"), ib(res.UnusedBytes), plural(res.Repacked, "pack"), ib(res.RepackedBytes), ib(res.RepackedLive),
			plural(res.Rescued, "pack"), plural(res.Deleted, "pack"), ib(res.DeletedBytes))
		if res.Waiting > 0 {
			fmt.Fprintf(w, "; %s (%s) would wait", plural(res.Waiting, "pack"), ib(res.WaitingBytes))
		}
		fmt.Fprintln(w, " (dry run: nothing written or deleted)")
	} else {
		fmt.Fprintf(w, "found %s (%s) no snapshot uses; deleted %s (%s)", plural(res.Unused, "pack"), ib(res.UnusedBytes), plural(res.Deleted, "pack"), ib(res.DeletedBytes))
		if res.Rescued > 0 {
			fmt.Fprintf(w, "; indexed %s again (a snapshot uses them)", plural(res.Rescued, "pack"))
		}
		if res.Repacked > 0 {
			fmt.Fprintf(w, "; repacked %s (%s, copying %s of live blobs)", plural(res.Repacked, "pack"), ib(res.RepackedBytes), ib(res.RepackedLive))
		}
		fmt.Fprintln(w)
		if res.Temps > 0 {
			fmt.Fprintf(w, "removed %s (%s) that killed writers left\n", plural(res.Temps, "temp file"), ib(res.TempsBytes))
		}
		if res.IndexFilesWritten > 0 {
			fmt.Fprintf(w, "merged %s into %d\n", plural(res.IndexFilesRead, "index file"), res.IndexFilesWritten)
		}
	}
	if res.Waiting > 0 {
		fmt.Fprintf(w, "%s (%s) wait to be deleted by a later prune, for:\n", plural(res.Waiting, "pack"), ib(res.WaitingBytes))
		for _, who := range res.WaitingFor {
			fmt.Fprintf(w, "  %s\n", who)
		}
	}
	if rr := res.Retention; rr != nil {
		until := rr.Until.Local().Format("2006-01-02 15:04 MST")
		if res.DryRun {
			fmt.Fprintf(w, "would lock the config, %s, %s and the index files it keeps until at least %s (%s, %s); the packs it stops indexing would not be extended\n",
				plural(rr.Packs, "pack"), plural(rr.Snapshots, "snapshot"), until, rr.Mode, plural(rr.Days, "day"))
		} else {
			fmt.Fprintf(w, "retention: the config, %s, %s and %s are locked until at least %s (%s, %s): %d extended, the others were locked as long already",
				plural(rr.Packs, "pack"), plural(rr.IndexFiles, "index file"), plural(rr.Snapshots, "snapshot"), until, rr.Mode, plural(rr.Days, "day"), rr.Extended)
			if rr.Gone > 0 {
				fmt.Fprintf(w, ", %d removed meanwhile", rr.Gone)
			}
			fmt.Fprintln(w)
		}
	}
}
