package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"
)

func unlockCmd() *cli.Command {
	return &cli.Command{
		Name:  "unlock",
		Usage: "remove stale locks: a dead prune's lock, dead backups' markers",
		UsageText: `coffer at STORE unlock [--force] [--dry-run]

Lists locks/: the prune lock and the markers running backups keep, each
with its owner (host, pid, user, command, when it started). A lock or
marker is stale when it expired (its owner stopped refreshing it: killed,
or its host is down) or its process is gone from this host; unlock
removes the stale ones and says whose each was. With --force it removes
every one, live or not: do that only when you know their owners are
dead (a backup whose marker is removed fails before writing its
snapshot; a prune whose lock is removed stops).

Examples:
   coffer at /backups unlock
   coffer at @mystore unlock --force`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "remove live locks and markers too"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "remove nothing; say what would be removed"},
		},
		Action: runUnlock,
	}
}

func runUnlock(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unlock: takes no arguments (got %q)", c.Args().First())
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	infos, err := lease.List(c.Context, r.Storage(), r.Keys())
	if err != nil {
		return fmt.Errorf("unlock: listing locks: %w", err)
	}
	w := c.App.Writer
	now := time.Now()
	force, dry := c.Bool("force"), c.Bool("dry-run")
	removed, live := 0, 0
	for _, in := range infos {
		who := "unreadable (" + fmt.Sprint(in.Err) + ")"
		if in.Err == nil {
			who = in.Record.Owner()
			if in.Record.Command != "" {
				who += ": " + in.Record.Command
			}
		}
		stale := in.Stale(now)
		if !stale && !force {
			live++
			fmt.Fprintf(w, "kept locks/%s: %s, live until %s (--force removes it)\n", in.Name, who, in.Record.Expires.Local().Format(time.RFC3339))
			continue
		}
		verb := "removed"
		if dry {
			verb = "would remove"
		} else if err := r.Storage().Delete(c.Context, store.Handle{Kind: store.KindLock, Name: in.Name}); err != nil {
			return fmt.Errorf("unlock: removing locks/%s: %w", in.Name, err)
		}
		if !stale {
			fmt.Fprintf(c.App.ErrWriter, "coffer: warning: locks/%s was live: if its owner still runs, it fails (a backup before its snapshot, a prune before its next step)\n", in.Name)
		}
		removed++
		fmt.Fprintf(w, "%s locks/%s: %s\n", verb, in.Name, who)
	}
	if !quiet && removed == 0 && live == 0 {
		fmt.Fprintln(w, "no locks")
	}
	return nil
}
