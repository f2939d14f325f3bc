package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
)

func repairCmd() *cli.Command {
	return &cli.Command{
		Name:  "repair",
		Usage: "rebuild what can be rebuilt from the packs (index)",
		UsageText: `coffer at STORE repair index [--dry-run] [--json]

Examples:
   coffer at /backups repair index --dry-run
   coffer at @mystore repair index`,
		Subcommands: []*cli.Command{repairIndexCmd()},
	}
}

func repairIndexCmd() *cli.Command {
	return &cli.Command{
		Name:  "index",
		Usage: "rebuild the index from the pack trailers (after index files were lost or damaged)",
		UsageText: `coffer at STORE repair index [--dry-run] [--json]

Reads the trailer of every pack (each pack lists its blobs in an
encrypted trailer), writes new index files for them and only then
removes the old index files. Packs no index named (left by an
interrupted backup) become indexed; index entries for packs the store
lacks are dropped. A pack whose trailer cannot be read or decrypted is
named and left alone (if a readable old index file listed it, its
entries are kept). Nothing but index files is written or removed.
Run 'coffer check' afterwards. With --dry-run nothing is written or
removed: it says what it would do.

Examples:
   coffer at /backups repair index --dry-run
   coffer at @mystore repair index`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "write and remove nothing; say what would be done"},
			concurrencyFlag(), jsonFlag(),
		},
		Action: runRepairIndex,
	}
}

func runRepairIndex(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("repair index: takes no arguments (got %q)", c.Args().First())
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	dry := c.Bool("dry-run")
	pr := &engine.Progress{}
	view := startProgress("repair index", pr, progressGoal{})
	res, err := r.RepairIndex(c.Context, engine.RepairIndexOptions{DryRun: dry, Concurrency: concurrencyFor(c, storeLocation(c)), Progress: pr})
	view.done()
	if err != nil {
		return fmt.Errorf("repair index: %w", err)
	}
	if !dry {
		// The index kept in the cache folder covers the old index files
		// and would be dropped anyway once it finds them gone (FORMAT.md,
		// appendix); remove it now so that the next run builds it from
		// the new index files alone.
		if dir, err := storeCacheDir("coffer-index", r.Params.StoreID); err == nil {
			if err := os.RemoveAll(dir); err != nil {
				fmt.Fprintf(c.App.ErrWriter, "coffer: warning: could not remove the kept index %s: %v (it is dropped on its next use anyway)\n", dir, err)
			}
		}
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, res); err != nil {
			return err
		}
	} else {
		w := c.App.Writer
		for _, d := range res.DamagedIndexFiles {
			fmt.Fprintf(w, "damaged index file %s (unreadable; %s)\n", d, map[bool]string{true: "would be removed", false: "removed"}[dry])
		}
		for _, b := range res.BadTrailers {
			if b.FromIndex != "" {
				fmt.Fprintf(w, "bad trailer: %s pack %s: %s; left alone, its entries kept from index file %s\n", b.Kind, b.Pack, b.Error, b.FromIndex[:8])
			} else {
				fmt.Fprintf(w, "bad trailer: %s pack %s: %s; left alone and not indexed (its blobs count as missing)\n", b.Kind, b.Pack, b.Error)
			}
		}
		if !quiet || dry {
			verb := map[bool]string{true: "would index", false: "indexed"}[dry]
			fmt.Fprintf(w, "%s %d of %s (%s), %d of them in no index before; %s %s the old index named that the store lacks\n",
				verb, res.Indexed, plural(res.Packs, "pack"), plural(res.Blobs, "blob"), res.Unindexed,
				map[bool]string{true: "would drop", false: "dropped"}[dry], plural(res.Dropped, "pack"))
			if dry {
				fmt.Fprintf(w, "would write the new index, then remove %s (dry run: nothing written or removed)\n", plural(len(res.OldIndexFiles), "old index file"))
			} else {
				fmt.Fprintf(w, "wrote %s, then removed %s\n", plural(len(res.NewIndexFiles), "index file"), plural(len(res.OldIndexFiles), "old index file"))
			}
		}
	}
	if n := len(res.BadTrailers); n > 0 {
		return fmt.Errorf("repair index: %s with a trailer that could not be read %s named above and left alone; the rest was %s. Run 'coffer check' to see which files they affect",
			plural(n, "pack"), map[bool]string{true: "is", false: "are"}[n == 1], map[bool]string{true: "checked (dry run)", false: "repaired"}[dry])
	}
	return nil
}
