package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/internal/config"
)

// selectingCommands take the snapshot filters; "latest" is then the
// newest snapshot that matches them.
var selectingCommands = map[string]bool{"ls": true, "cat": true, "restore": true, "check": true, "mount": true, "tag": true, "forget": true, "rm": true}

func selectFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "source", Usage: "only snapshots of `SOURCE` (a folder, s3://BUCKET/PREFIX or @NAME)"},
		&cli.StringFlag{Name: "host", Usage: "only snapshots made on `HOST`"},
		&cli.StringSliceFlag{Name: "tag", Usage: "only snapshots with tag `T` (repeatable: all of them)"},
	}
}

// addSelectFlags gives the selecting commands the filter flags, and
// those that take references their completion.
func addSelectFlags(cmds []*cli.Command) {
	for _, cmd := range cmds {
		if selectingCommands[cmd.Name] {
			cmd.Flags = append(cmd.Flags, selectFlags()...)
			if cmd.Name != "mount" && cmd.Name != "forget" { // a folder; no argument
				cmd.BashComplete = completeRefs
			}
		}
	}
}

// snapshotFilter reads the filter flags; a source is resolved as backup
// records it (a named source's location, a folder made absolute).
func snapshotFilter(c *cli.Context) (engine.Filter, error) {
	f := engine.Filter{Host: c.String("host"), Tags: c.StringSlice("tag")}
	if src := c.String("source"); src != "" {
		loc, _, err := resolveLocation(config.Source, src)
		if err != nil {
			return f, err
		}
		if isS3(loc) {
			// As the S3 source records itself: options left out, the
			// prefix unescaped and ending in "/".
			o, err := s3Options(loc, nil)
			if err != nil {
				return f, err
			}
			loc = o.URI()
		} else if loc, err = filepath.Abs(loc); err != nil {
			return f, err
		}
		f.Source = loc
	}
	return f, nil
}

// chosenSnapshots returns the snapshots a command that acts on some or
// all of a store's snapshots was given: those named by the arguments
// (each within the filters), else those the filters select (an error
// naming cmd if none), else nil for "all of them".
func chosenSnapshots(c *cli.Context, r *engine.Repo, cmd string) ([]*engine.Snapshot, error) {
	f, err := snapshotFilter(c)
	if err != nil {
		return nil, err
	}
	var snaps []*engine.Snapshot
	for _, ref := range c.Args().Slice() {
		sn, err := r.FindSnapshotIn(c.Context, ref, f)
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, sn)
	}
	if len(snaps) == 0 && !f.IsZero() {
		if snaps, err = r.SnapshotsIn(c.Context, f); err != nil {
			return nil, err
		}
		if len(snaps) == 0 {
			return nil, fmt.Errorf("%s: %w %s", cmd, engine.ErrNoMatch, f)
		}
	}
	return snaps, nil
}
