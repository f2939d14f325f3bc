package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/repair"
)

func repairCmd() *cli.Command {
	return &cli.Command{
		Name:  "repair",
		Usage: "repair a damaged store: the index, damaged packs, snapshots that reference damaged data",
		UsageText: `coffer at STORE repair index [--dry-run] [--json]
coffer at STORE repair packs [--dry-run] [--json] [PACK …]
coffer at STORE repair snapshots [--dry-run] [--forget] [--read-data] [--json] [ID …]

When 'coffer check' finds damage:
  1. repair index      if index files are lost or damaged (check says so)
  2. repair packs      reads the packs (or those check named), copies the
                       blobs that still read into new packs and drops the
                       damaged ones from the index, so that the next
                       backup stores that data again
  3. repair snapshots  writes, for each snapshot that references damaged
                       or missing data, a repaired copy without it (files
                       dropped, unreadable folders emptied, each named);
                       --forget removes the damaged originals
  4. backup            the sources again: what was lost is stored again
  5. check --read-data

Examples:
   coffer at /backups repair packs --dry-run
   coffer at @mystore repair snapshots --forget`,
		Subcommands: []*cli.Command{repairIndexCmd(), repairPacksCmd(), repairSnapshotsCmd()},
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

It holds the prune lock (locks/prune) while it runs, so it never runs
beside a prune or another repair index (each replaces index files and
would delete the other's new ones): if one runs, it fails at once and
names it; if that one is dead, 'coffer unlock' removes its lock. Backups
go on meanwhile. A dry run takes no lock.

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
	res, err := repair.Index(c.Context, r, repair.IndexOptions{DryRun: dry, Concurrency: concurrencyFor(c, storeLocation(c)), Progress: pr})
	view.done()
	if err != nil {
		return fmt.Errorf("repair index: %w", err)
	}
	if !dry {
		dropKeptIndex(c, r)
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
				fmt.Fprintf(w, "wrote %s, then removed %s\n", plural(len(res.NewIndexFiles), "index file"), plural(len(res.OldIndexFiles)-len(res.LockedIndexFiles), "old index file"))
				if n := len(res.LockedIndexFiles); n > 0 {
					fmt.Fprintf(w, "kept %s under S3 Object Lock until its retention ends (harmless: they name the same packs as the new ones)\n", plural(n, "old index file"))
				}
			}
		}
	}
	if n := len(res.BadTrailers); n > 0 {
		return fmt.Errorf("repair index: %s with a trailer that could not be read %s named above and left alone; the rest was %s. Run 'coffer check' to see which files they affect",
			plural(n, "pack"), map[bool]string{true: "is", false: "are"}[n == 1], map[bool]string{true: "checked (dry run)", false: "repaired"}[dry])
	}
	return nil
}

func repairPacksCmd() *cli.Command {
	return &cli.Command{
		Name:  "packs",
		Usage: "drop damaged blobs from the index (salvaging what still reads), so the next backup stores them again",
		UsageText: `coffer at STORE repair packs [--dry-run] [--json] [PACK …]

Reads and verifies the packs given (ids or unique prefixes, as 'coffer
check' names them), or with none every pack the index names (as
'check --read-data' does). For each damaged pack it copies the blobs
that still read into new packs, then writes new index files without
the damaged pack and only then removes the index files they replace.
Packs the index names but the store lacks are dropped from the index
too. The damaged blobs are then in no index: the next backup of their
data uploads them again instead of reusing them, and 'coffer repair
snapshots' repairs the snapshots that use them. The damaged pack itself
is left in the store, unindexed (prune reclaims it); nothing else is
removed. It holds the prune lock (locks/prune) while it runs, as repair
index does ('coffer unlock' if a killed one left it). With --dry-run it
reads and says what it would do, and takes no lock.

Examples:
   coffer at /backups repair packs --dry-run
   coffer at @mystore repair packs 3fa2b1c0 77d0e9aa`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "write and remove nothing; say what would be done"},
			concurrencyFlag(), jsonFlag(),
		},
		Action: runRepairPacks,
	}
}

func runRepairPacks(c *cli.Context) error {
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	dry := c.Bool("dry-run")
	pr := &engine.Progress{}
	view := startProgress("repair packs", pr, progressGoal{})
	res, err := repair.Packs(c.Context, r, repair.PacksOptions{DryRun: dry, Packs: c.Args().Slice(), Concurrency: concurrencyFor(c, storeLocation(c)), Progress: pr})
	view.done()
	if err != nil {
		return fmt.Errorf("repair packs: %w", err)
	}
	if !dry && len(res.Damaged) > 0 {
		dropKeptIndex(c, r)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	would := func(did, will string) string { return map[bool]string{true: will, false: did}[dry] }
	for _, d := range res.Damaged {
		what := d.Error
		if what == "" {
			what = fmt.Sprintf("%s damaged", plural(len(d.Lost), "blob"))
		}
		fmt.Fprintf(w, "damaged %s pack %s: %s; %d of its %s %s from the index, %d %s\n", d.Kind, d.Pack, what,
			len(d.Lost), plural(d.Blobs, "blob"), would("dropped", "would be dropped"), d.Salvaged, would("salvaged", "would be salvaged"))
		const show = 10
		for i, b := range d.Lost {
			if i == show {
				fmt.Fprintf(w, "  … and %d more lost blobs (--json lists them all)\n", len(d.Lost)-show)
				break
			}
			fmt.Fprintf(w, "  lost blob %s: %s\n", b.Blob, b.Error)
		}
	}
	if len(res.Damaged) == 0 {
		if !quiet {
			fmt.Fprintf(w, "no damaged or missing pack: %s read and verified (%s); nothing to do\n", plural(res.Read, "pack"), humanize.IBytes(uint64(res.Bytes)))
		}
		return nil
	}
	if dry {
		fmt.Fprintf(w, "would copy the readable blobs into new packs, write new index files and then remove %s (dry run: nothing written or removed)\n",
			plural(len(res.OldIndexFiles), "index file"))
	} else {
		fmt.Fprintf(w, "salvaged %s into %s; wrote %s, then removed the %s they replace; %s dropped from the index\n",
			plural(res.SalvagedBlobs, "blob"), plural(res.SalvagePacks, "new pack"), plural(len(res.NewIndexFiles), "index file"),
			plural(len(res.OldIndexFiles), "old index file"), plural(res.LostBlobs, "damaged blob"))
		for _, d := range res.Damaged {
			if !d.Missing {
				fmt.Fprintf(w, "the damaged packs are left in the store, unindexed (prune reclaims them; 'repair index' would index them again: run repair packs after it)\n")
				break
			}
		}
	}
	if res.LostBlobs > 0 {
		fmt.Fprintf(w, "next: 'coffer repair snapshots%s' to repair the snapshots that use the lost blobs, then back the sources up again (the lost data is stored again), then 'coffer check --read-data'\n",
			map[bool]string{true: " --dry-run", false: ""}[dry])
	}
	return nil
}

// dropKeptIndex removes the index kept in the cache folder after a
// repair replaced index files. It would be dropped anyway once it finds
// them gone (FORMAT.md, appendix); removing it now makes the next run
// build it from the new index files alone.
func dropKeptIndex(c *cli.Context, r *engine.Repo) {
	if dir, err := storeCacheDir("coffer-index", r.Params.StoreID); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "coffer: warning: could not remove the kept index %s: %v (it is dropped on its next use anyway)\n", dir, err)
		}
	}
}

func repairSnapshotsCmd() *cli.Command {
	return &cli.Command{
		Name:  "snapshots",
		Usage: "write repaired copies of the snapshots that reference damaged or missing data",
		UsageText: `coffer at STORE repair snapshots [--dry-run] [--forget] [--read-data] [--json] [ID …]

Walks the trees of the snapshots given (default: all, or those the
filters select), reading every folder, and finds the files whose
content is in no index or in a pack the store lacks (after 'coffer
repair packs', the damaged ones), and the folders that cannot be read.
For each damaged snapshot it writes a new one in which each such file
is dropped and each unreadable folder is an empty folder (its name and
metadata kept), and prints every path and what was done. The new
snapshot keeps the original's time (plus 1 ns, so that it is the newer
of the two for 'latest' and forget), source and tags, gets the tag
'repaired', names its original ('original' in ls --json) and lists the
changed paths as skipped entries. The originals are kept unless
--forget: then each is removed once its repaired snapshot is durable.
A snapshot an earlier repair already replaced is not repaired twice.
With --read-data it also reads the data packs the snapshots use, and a
blob that fails to verify counts as damaged. Packs that hold a damaged
blob the index still names are repaired first, as 'repair packs' does
(their readable blobs copied, the damaged ones dropped from the index),
so that the next backup stores that data again instead of reusing it.

Examples:
   coffer at /backups repair snapshots --dry-run
   coffer at @mystore repair snapshots --forget
   coffer at @mystore repair snapshots --source /home latest`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "write and remove nothing; say what would be done"},
			&cli.BoolFlag{Name: "forget", Usage: "remove each damaged original once its repaired snapshot is written"},
			&cli.BoolFlag{Name: "read-data", Usage: "also read the data the snapshots use; blobs that fail to verify count as damaged"},
			concurrencyFlag(), jsonFlag(),
		}, selectFlags()...),
		BashComplete: completeRefs,
		Action:       runRepairSnapshots,
	}
}

func runRepairSnapshots(c *cli.Context) error {
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	snaps, err := chosenSnapshots(c, r, "repair snapshots")
	if err != nil {
		return err
	}
	dry, forget := c.Bool("dry-run"), c.Bool("forget")
	pr := &engine.Progress{}
	view := startProgress("repair snapshots", pr, progressGoal{})
	res, err := repair.Snapshots(c.Context, r, repair.SnapshotsOptions{
		Snapshots: snaps, DryRun: dry, Forget: forget, ReadData: c.Bool("read-data"),
		Concurrency: concurrencyFor(c, storeLocation(c)), Progress: pr,
	})
	view.done()
	if err != nil {
		return fmt.Errorf("repair snapshots: %w", err)
	}
	if res.Packs != nil && len(res.Packs.Damaged) > 0 {
		dropKeptIndex(c, r)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	short := func(id string) string { return id[:min(8, len(id))] }
	repaired := 0
	for _, d := range res.Damaged {
		if d.AlreadyRepairedAs != "" {
			line := fmt.Sprintf("snapshot %s (%s): already repaired as %s", short(d.Snapshot), d.Source, short(d.AlreadyRepairedAs))
			if d.Forgotten {
				line += "; original removed"
			} else if forget && dry {
				line += "; the original would be removed"
			}
			fmt.Fprintln(w, line)
			continue
		}
		repaired++
		fmt.Fprintf(w, "snapshot %s (%s): %s damaged\n", short(d.Snapshot), d.Source, plural(len(d.Paths), "path"))
		for _, p := range d.Paths {
			switch p.Action {
			case "dropped":
				fmt.Fprintf(w, "  %s %s: %s\n", map[bool]string{true: "would drop file", false: "dropped file"}[dry], p.Path, p.Reason)
			case "emptied":
				fmt.Fprintf(w, "  %s %s: %s\n", map[bool]string{true: "would empty folder", false: "emptied folder"}[dry], p.Path, p.Reason)
			default:
				fmt.Fprintf(w, "  %s %s: %s\n", map[bool]string{true: "would lose entries from", false: "lost entries from"}[dry], p.Path, p.Reason)
			}
		}
		switch {
		case dry:
			fmt.Fprintf(w, "  would write a repaired snapshot (tagged %q)%s\n", repair.RepairedTag, map[bool]string{true: " and remove the original", false: ""}[forget])
		case d.Forgotten:
			fmt.Fprintf(w, "  wrote repaired snapshot %s, then removed the original\n", short(d.New))
		default:
			fmt.Fprintf(w, "  wrote repaired snapshot %s; the original is kept\n", short(d.New))
		}
	}
	if res.DataPacksRead > 0 {
		fmt.Fprintf(w, "read %s of data (%s)\n", plural(res.DataPacksRead, "pack"), humanize.IBytes(uint64(res.BytesRead)))
	}
	if repaired == 0 && len(res.Damaged) == 0 && !quiet {
		fmt.Fprintf(w, "no damaged snapshot: %s checked (every folder read, every file's data in the index and its pack in the store)%s; nothing to do\n",
			plural(res.Checked, "snapshot"), map[bool]string{true: "", false: ". Data was not read: run 'coffer check --read-data' to verify it"}[res.DataPacksRead > 0])
	}
	var next []string
	if p := res.Packs; p != nil {
		fmt.Fprintf(w, "dropped %s from the index (%s, %s salvaged into new packs), so that the next backup stores that data again: %s\n",
			plural(p.LostBlobs, "damaged blob"), plural(len(p.Damaged), "pack"), plural(p.SalvagedBlobs, "readable blob"), strings.Join(shortAll(res.StillIndexed), " "))
	} else if len(res.StillIndexed) > 0 {
		fmt.Fprintf(w, "%s holding damaged blobs %s still in the index: %s; the repair would drop those blobs from it (as 'coffer repair packs' does), so that the next backup stores that data again\n",
			plural(len(res.StillIndexed), "pack"), map[bool]string{true: "is", false: "are"}[len(res.StillIndexed) == 1], strings.Join(shortAll(res.StillIndexed), " "))
	}
	if repaired > 0 && !dry {
		if !forget {
			next = append(next, "the damaged originals are kept and still fail 'coffer check': remove them with 'repair snapshots --forget' (or 'coffer rm') once you have what you need from them")
		}
		next = append(next, "back the sources up again (what was lost is stored again if the source still has it), then run 'coffer check --read-data'")
	}
	for _, n := range next {
		fmt.Fprintf(w, "next: %s\n", n)
	}
	return nil
}

// shortAll shortens ids to 8 digits.
func shortAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(8, len(id))]
	}
	return out
}
