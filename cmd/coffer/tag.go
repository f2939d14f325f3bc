package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
)

func tagCmd() *cli.Command {
	return &cli.Command{
		Name:  "tag",
		Usage: "add, remove or set the tags of snapshots",
		UsageText: `coffer at STORE tag [--add T] [--remove T] [--set T] [--source S --host H --tag T] [ID …]

Changes the tags of the snapshots named (ids, unique prefixes, latest)
or, with none named, of every snapshot the filters select. A snapshot is
named by its bytes, so a changed snapshot gets a new id: the new object
is written first, then the old one removed. Snapshots whose tags do not
change are left as they are.

Examples:
   coffer at /backups tag --add keep latest
   coffer at /backups tag --remove nightly --source /srv/data
   coffer at /backups tag --set monthly 3fa2b1c0`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "add", Usage: "add tag `T` (repeatable)"},
			&cli.StringSliceFlag{Name: "remove", Usage: "remove tag `T` (repeatable)"},
			&cli.StringSliceFlag{Name: "set", Usage: "replace all tags with these (repeatable; --set '' clears them)"},
			jsonFlag(),
		},
		Action: runTag,
	}
}

type tagOut struct {
	Old  string   `json:"old_id"`
	New  string   `json:"new_id"`
	Tags []string `json:"tags"`
}

func runTag(c *cli.Context) error {
	add, remove, set := c.StringSlice("add"), c.StringSlice("remove"), c.StringSlice("set")
	if len(add)+len(remove)+len(set) == 0 && !c.IsSet("set") {
		return usagef("tag: say what to change: --add, --remove or --set")
	}
	if c.IsSet("set") && len(add)+len(remove) > 0 {
		return usagef("tag: --set replaces every tag: give it alone, or use --add and --remove")
	}
	for _, t := range append(append(slices.Clone(add), remove...), set...) {
		if strings.ContainsAny(t, ",\n") {
			return usagef("tag %q: a tag may not hold a comma or a newline", t)
		}
	}
	f, err := snapshotFilter(c)
	if err != nil {
		return err
	}
	if c.NArg() == 0 && f.IsZero() {
		return usagef("tag: name the snapshots (ids or latest) or select them with --source, --host or --tag")
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	var snaps []*engine.Snapshot
	if c.NArg() == 0 {
		if snaps, err = r.SnapshotsIn(c.Context, f); err != nil {
			return err
		}
		if len(snaps) == 0 {
			return fmt.Errorf("tag: %w %s", engine.ErrNoMatch, f)
		}
	}
	seen := map[crypto.ID]bool{}
	for _, ref := range c.Args().Slice() {
		sn, err := r.FindSnapshotIn(c.Context, ref, f)
		if err != nil {
			return err
		}
		// Two references to one snapshot (latest and its id) change it once.
		if !seen[sn.ID] {
			seen[sn.ID] = true
			snaps = append(snaps, sn)
		}
	}
	var outs []tagOut
	for _, sn := range snaps {
		tags := newTags(sn.Tags, add, remove, set, c.IsSet("set"))
		if slices.Equal(tags, sn.Tags) {
			continue
		}
		old := sn.ID
		sn.Tags = tags
		id, err := r.ReplaceSnapshot(c.Context, old, sn)
		if err != nil {
			return err
		}
		outs = append(outs, tagOut{Old: old.String(), New: id.String(), Tags: tags})
		if !quiet && !c.Bool("json") {
			fmt.Fprintf(c.App.Writer, "snapshot %s is now %s, tags: %s\n", old.Short(), id.Short(), strings.Join(tags, ","))
		}
	}
	if c.Bool("json") {
		if outs == nil {
			outs = []tagOut{}
		}
		return printJSON(c.App.Writer, outs)
	}
	if len(outs) == 0 && !quiet {
		fmt.Fprintln(c.App.Writer, "no snapshot's tags changed")
	}
	return nil
}

// newTags applies a tag change; the result is sorted and without
// duplicates, nil when empty (as a snapshot without tags stores it).
func newTags(cur, add, remove, set []string, isSet bool) []string {
	var out []string
	if isSet {
		for _, t := range set {
			if t != "" {
				out = append(out, t)
			}
		}
	} else {
		out = slices.Clone(cur)
		out = append(out, add...)
		out = slices.DeleteFunc(out, func(t string) bool { return slices.Contains(remove, t) || t == "" })
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil
	}
	return out
}
