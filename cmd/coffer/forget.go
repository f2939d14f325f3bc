package main

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	_ "time/tzdata" // --time-zone and time_zone work on a machine without zoneinfo

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/retention"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/config"
)

// noPrune is said after snapshots were removed: forget and rm remove
// snapshot objects only; prune reclaims what they referenced.
const noPrune = "space is not reclaimed yet: the data only the removed snapshots used stays in the store until 'coffer prune' (or forget --prune)"

// keepRules are forget's count flags, each with its store entry key.
var keepRules = []struct {
	flag, key string
	set       func(*retention.Policy, int)
	usage     string
}{
	{"keep-last", "keep_last", func(p *retention.Policy, n int) { p.Last = n }, "keep the newest `N` snapshots"},
	{"keep-hourly", "keep_hourly", func(p *retention.Policy, n int) { p.Hourly = n }, "keep the newest snapshot of each of the last `N` hours that have one"},
	{"keep-daily", "keep_daily", func(p *retention.Policy, n int) { p.Daily = n }, "keep the newest snapshot of each of the last `N` days that have one"},
	{"keep-weekly", "keep_weekly", func(p *retention.Policy, n int) { p.Weekly = n }, "keep the newest snapshot of each of the last `N` weeks (Monday to Sunday) that have one"},
	{"keep-monthly", "keep_monthly", func(p *retention.Policy, n int) { p.Monthly = n }, "keep the newest snapshot of each of the last `N` months that have one"},
	{"keep-yearly", "keep_yearly", func(p *retention.Policy, n int) { p.Yearly = n }, "keep the newest snapshot of each of the last `N` years that have one"},
}

func forgetCmd() *cli.Command {
	flags := []cli.Flag{}
	for _, r := range keepRules {
		flags = append(flags, &cli.StringFlag{Name: r.flag, Usage: r.usage + " (a number or unlimited)"})
	}
	flags = append(flags,
		&cli.StringFlag{Name: "keep-within", Usage: "keep every snapshot newer than the group's newest minus `DURATION` (e.g. 1y2m3d4h, 2w)"},
		listFlag("keep-tag", "keep every snapshot that has tag `T` (T1,T2: all of them; repeatable: any of them; '' : no tag)"),
		&cli.StringFlag{Name: "group-by", Usage: "apply the policy to each group of snapshots sharing `FIELDS`: source, host, tags, or '' for one group", DefaultText: "source,host"},
		&cli.StringFlag{Name: "time-zone", Usage: "count hours, days, weeks, months and years in `ZONE` (e.g. Europe/Berlin, UTC)", DefaultText: "the local zone"},
		&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "remove nothing; say what would be kept and removed"},
		&cli.BoolFlag{Name: "prune", Usage: "then prune: delete the data no snapshot uses any more (see coffer prune)"},
		jsonFlag(),
	)
	flags = append(flags, pruneFlags()...)
	return &cli.Command{
		Name:  "forget",
		Usage: "remove snapshots by a keep policy (last, hourly, daily, weekly, monthly, yearly, within, tag)",
		UsageText: `coffer at STORE forget [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]
      [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--keep-tag T]
      [--group-by source,host,tags] [--time-zone ZONE] [--dry-run] [--prune [--max-unused P] [--grace D]]
      [--source S --host H --tag T]

Splits the snapshots the filters select into groups (by source and host
unless --group-by says otherwise), applies the policy to each group, and
removes every snapshot no rule keeps. A snapshot is kept when any rule
keeps it; the output names, per group, each snapshot kept and the rules
that keep it, and each one removed.

The calendar rules keep the newest snapshot of each of the last N hours,
days, weeks (ISO: Monday to Sunday), months or years that have one, as
a wall clock in --time-zone reads them (the hour repeated when DST ends
is one hour). While a rule has counts left at the group's oldest
snapshot, that one is kept too ("oldest daily"). At the same time, the
snapshot with the greater id is the newer, as for latest. --keep-within
keeps snapshots newer than the group's newest minus DURATION (years y,
months m, weeks w, days d, hours h); a snapshot dated in the future is
kept, and does not count as the newest.

Without keep flags, the policy of the store entry applies when the store
is @NAME (keys keep_last ... keep_yearly, keep_within, keep_tag,
group_by, time_zone); any keep flag replaces the entry's whole policy.
With no rule at all, forget refuses: it never removes every snapshot.

Forget removes snapshot objects only. The data they referenced stays in
the store until a prune: --prune runs one right after (coffer prune).

Examples:
   coffer at /backups forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
   coffer at /backups forget --keep-daily 7 --keep-weekly 5 --prune
   coffer at /backups forget --keep-last 3 --keep-within 1m --source /srv/data
   coffer at /backups forget --keep-tag release --keep-daily 30 --time-zone Europe/Berlin
   coffer config store set mystore keep_daily=7 keep_weekly=4; coffer at @mystore forget`,
		Flags:  flags,
		Action: runForget,
	}
}

func rmCmd() *cli.Command {
	return &cli.Command{
		Name:  "rm",
		Usage: "remove the snapshots named",
		UsageText: `coffer at STORE rm [--dry-run] [--source S --host H --tag T] ID …

Removes the snapshots named (ids, unique prefixes, latest). Every name is
resolved first: if one is unknown or ambiguous, nothing is removed.
Only the snapshot objects go: 'coffer prune' reclaims the space their
data holds.

Examples:
   coffer at /backups rm 3fa2b1c0
   coffer at /backups rm --dry-run 3fa2b1c0 77e01d2a
   coffer at /backups rm --source /srv/data latest`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "remove nothing; say what would be removed"},
			jsonFlag(),
		},
		Action: runRm,
	}
}

// forgetSettings are a forget's policy, groups and zone, and where the
// policy came from.
type forgetSettings struct {
	policy  retention.Policy
	groupBy retention.GroupBy
	loc     *time.Location
	from    string // "the command line", "store entry @NAME"
}

// parseZone reads a zone name; "" and "Local" are the local zone.
func parseZone(name string) (*time.Location, error) {
	if name == "" || strings.EqualFold(name, "local") {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: unknown: want a name such as Europe/Berlin, America/New_York or UTC", name)
	}
	return loc, nil
}

// zoneName names loc for people: the local zone as "local (CET)".
func zoneName(loc *time.Location) string {
	if loc == time.Local {
		abbr, _ := time.Now().In(loc).Zone()
		return "local (" + abbr + ")"
	}
	return loc.String()
}

// parseTagLists reads --keep-tag values: "a,b" is one list (all of
// them), "" the list that matches snapshots with no tag.
func parseTagLists(vals []string) [][]string {
	var out [][]string
	for _, v := range vals {
		var tl []string
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tl = append(tl, t)
			}
		}
		out = append(out, tl)
	}
	return out
}

// forgetSettingsFor reads the policy from the flags or, when none is
// given and the store is @NAME, from the entry; every error is a usage
// error, found before the passphrase is asked.
func forgetSettingsFor(c *cli.Context) (forgetSettings, error) {
	var s forgetSettings
	var e config.Entry
	name := c.String("store")
	if isName(name) {
		var err error
		if _, e, err = resolveLocation(config.Store, name); err != nil {
			return s, err
		}
	}
	flagsGiven := c.IsSet("keep-within") || len(flagList(c, "keep-tag")) > 0
	for _, r := range keepRules {
		flagsGiven = flagsGiven || c.IsSet(r.flag)
	}
	get := func(flag, key string) (string, string) {
		if flagsGiven {
			return c.String(flag), "--" + flag
		}
		return e[key], name + " " + key
	}
	for _, r := range keepRules {
		v, what := get(r.flag, r.key)
		if v == "" {
			continue
		}
		n, err := retention.ParseCount(v)
		if err != nil {
			return s, usagef("%s: %v", what, err)
		}
		r.set(&s.policy, n)
	}
	if v, what := get("keep-within", "keep_within"); v != "" {
		d, err := retention.ParseDuration(v)
		if err != nil {
			return s, usagef("%s: %v", what, err)
		}
		s.policy.Within = d
	}
	if flagsGiven {
		s.policy.Tags = parseTagLists(flagList(c, "keep-tag"))
		s.from = "the command line"
	} else {
		s.policy.Tags = parseTagLists(e.List("keep_tag"))
		s.from = "store entry " + name
	}
	for _, tl := range s.policy.Tags {
		for _, t := range tl {
			if strings.Contains(t, "\n") {
				return s, usagef("--keep-tag %q: a tag may not hold a newline", t)
			}
		}
	}

	groupBy, what := "source,host", ""
	switch {
	case c.IsSet("group-by"):
		groupBy, what = c.String("group-by"), "--group-by"
	case e["group_by"] != "":
		groupBy, what = e["group_by"], name+" group_by"
	}
	g, err := retention.ParseGroupBy(groupBy)
	if err != nil {
		return s, usagef("%s: %v", what, err)
	}
	s.groupBy = g

	zone, what := "", ""
	switch {
	case c.IsSet("time-zone"):
		zone, what = c.String("time-zone"), "--time-zone"
	case e["time_zone"] != "":
		zone, what = e["time_zone"], name+" time_zone"
	}
	if s.loc, err = parseZone(zone); err != nil {
		return s, usagef("%s: %v", what, err)
	}
	verbosef("forget: policy from %s: %s; groups by %s; time zone %s", s.from, s.policy, s.groupBy, zoneName(s.loc))
	return s, nil
}

// forgetSnapOut is one snapshot in forget's and rm's JSON.
type forgetSnapOut struct {
	ID      string    `json:"id"`
	Short   string    `json:"short_id"`
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Host    string    `json:"host,omitempty"`
	Tags    []string  `json:"tags,omitempty"`
	Reasons []string  `json:"reasons,omitempty"` // the rules that keep it
}

func forgetSnapJSON(sn *engine.Snapshot, reasons []string) forgetSnapOut {
	return forgetSnapOut{ID: sn.ID.String(), Short: sn.ID.Short(), Time: sn.Time, Source: sn.Source, Host: sn.Host, Tags: sn.Tags, Reasons: reasons}
}

// forgetGroupOut is one group: what its snapshots share (the fields
// grouped by) and the verdicts, oldest first.
type forgetGroupOut struct {
	Source string          `json:"source,omitempty"`
	Host   string          `json:"host,omitempty"`
	Tags   []string        `json:"tags,omitempty"`
	Keep   []forgetSnapOut `json:"keep"`
	Remove []forgetSnapOut `json:"remove"`
}

type forgetOut struct {
	DryRun   bool             `json:"dry_run"`
	Policy   string           `json:"policy"`
	From     string           `json:"policy_from"`
	GroupBy  string           `json:"group_by"`
	TimeZone string           `json:"time_zone"`
	Groups   []forgetGroupOut `json:"groups"`
	Kept     int              `json:"kept"`
	Removed  int              `json:"removed"` // with dry_run: would be removed
	// Prune is what --prune did.
	Prune *engine.PruneResult `json:"prune,omitempty"`
}

type rmOut struct {
	DryRun  bool            `json:"dry_run"`
	Removed []forgetSnapOut `json:"removed"` // with dry_run: would be removed
}

func runForget(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("forget takes no snapshot ids, it decides by its keep rules; to remove given snapshots use 'coffer at STORE rm ID …'")
	}
	set, err := forgetSettingsFor(c)
	if err != nil {
		return err
	}
	if set.policy.IsEmpty() {
		hint := "or store a policy in a named store (coffer config store set NAME keep_daily=7 …)"
		if isName(c.String("store")) {
			hint = fmt.Sprintf("or store a policy in the entry (coffer config store set %s keep_daily=7 …)", c.String("store")[1:])
		}
		return usagef("forget: no keep rule given, and forget never removes every snapshot: pass at least one of --keep-last N, --keep-hourly N, --keep-daily N, --keep-weekly N, --keep-monthly N, --keep-yearly N, --keep-within DURATION or --keep-tag T, %s; to remove given snapshots use 'coffer at STORE rm ID …'", hint)
	}
	f, err := snapshotFilter(c)
	if err != nil {
		return err
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	snaps, err := r.SnapshotsIn(c.Context, f)
	if err != nil {
		return err
	}
	byID := map[string]*engine.Snapshot{}
	in := make([]retention.Snapshot, len(snaps))
	for i, sn := range snaps {
		id := sn.ID.String()
		byID[id] = sn
		in[i] = retention.Snapshot{ID: id, Time: sn.Time, Source: sn.Source, Host: sn.Host, Tags: sn.Tags}
	}
	now := time.Now()
	dry := c.Bool("dry-run")
	out := forgetOut{DryRun: dry, Policy: set.policy.String(), From: set.from, GroupBy: set.groupBy.String(),
		TimeZone: zoneName(set.loc), Groups: []forgetGroupOut{}}
	type groupPlan struct {
		key string
		ds  []retention.Decision
	}
	var plans []groupPlan
	var remove []*engine.Snapshot
	for _, g := range retention.GroupSnapshots(in, set.groupBy) {
		ds := retention.Apply(g.Snapshots, set.policy, set.loc, now)
		gout := forgetGroupOut{Keep: []forgetSnapOut{}, Remove: []forgetSnapOut{}}
		if set.groupBy.Source {
			gout.Source = g.Key.Source
		}
		if set.groupBy.Host {
			gout.Host = g.Key.Host
		}
		if set.groupBy.Tags {
			gout.Tags = g.Key.Tags
		}
		for _, d := range ds {
			sn := byID[d.Snapshot.ID]
			if d.Keep {
				gout.Keep = append(gout.Keep, forgetSnapJSON(sn, d.Reasons))
			} else {
				gout.Remove = append(gout.Remove, forgetSnapJSON(sn, nil))
				remove = append(remove, sn)
			}
		}
		if len(gout.Keep) == 0 {
			// Only tag rules can keep none of a group (every other rule keeps its newest).
			return fmt.Errorf("forget: the policy (%s) would remove every snapshot of the group %s; nothing was removed. Add a rule that keeps some of them (e.g. --keep-last 1), or select fewer snapshots (--source, --host, --tag)",
				set.policy, g.Key.String(set.groupBy))
		}
		out.Kept += len(gout.Keep)
		out.Groups = append(out.Groups, gout)
		plans = append(plans, groupPlan{g.Key.String(set.groupBy), ds})
	}
	out.Removed = len(remove)
	if !dry {
		if err := removeSnapshots(c, r, remove); err != nil {
			return err
		}
		if c.Bool("prune") {
			if out.Prune, err = pruneRepo(c, r, false); err != nil {
				return fmt.Errorf("forget removed %s (kept %d), then %w", plural(out.Removed, "snapshot"), out.Kept, err)
			}
		}
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, out); err != nil {
			return err
		}
		if out.Prune != nil {
			return pruneFailed(out.Prune)
		}
		return nil
	}
	if quiet {
		if out.Prune != nil {
			printPrune(c.App.Writer, out.Prune) // problems only
			return pruneFailed(out.Prune)
		}
		return nil
	}
	w := c.App.Writer
	fmt.Fprintf(w, "policy (from %s): %s; groups by %s; time zone %s\n", set.from, set.policy, set.groupBy, zoneName(set.loc))
	if len(snaps) == 0 {
		fmt.Fprintln(w, "no snapshot to consider")
		return nil
	}
	for _, p := range plans {
		kept := 0
		for _, d := range p.ds {
			if d.Keep {
				kept++
			}
		}
		verb := "removing"
		if dry {
			verb = "would remove"
		}
		fmt.Fprintf(w, "\n%s: keeping %d, %s %d\n", p.key, kept, verb, len(p.ds)-kept)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, d := range p.ds {
			sn := byID[d.Snapshot.ID]
			what := "remove"
			if d.Keep {
				what = "keep"
			}
			line := fmt.Sprintf("  %s\t%s\t%s", what, sn.ID.Short(), sn.Time.In(set.loc).Format("2006-01-02 15:04:05 MST"))
			if d.Keep {
				line += "\t" + strings.Join(d.Reasons, ", ")
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	switch {
	case dry:
		fmt.Fprintf(w, "would remove %s, keep %d (--dry-run: nothing was removed)\n", plural(out.Removed, "snapshot"), out.Kept)
	case out.Removed == 0:
		fmt.Fprintf(w, "nothing to remove: the policy keeps all %s\n", plural(out.Kept, "snapshot"))
	case out.Prune != nil:
		fmt.Fprintf(w, "removed %s, kept %d\n", plural(out.Removed, "snapshot"), out.Kept)
	default:
		fmt.Fprintf(w, "removed %s, kept %d\n%s\n", plural(out.Removed, "snapshot"), out.Kept, noPrune)
	}
	if out.Prune != nil {
		printPrune(w, out.Prune)
		return pruneFailed(out.Prune)
	}
	if dry && c.Bool("prune") {
		fmt.Fprintln(w, "(--prune does not run with --dry-run: run coffer prune --dry-run after the forget to see what it would reclaim)")
	}
	return nil
}

// removeParallel is how many snapshot objects are removed at once: a
// first forget of a long history removes thousands, one request each.
const removeParallel = 8

// removeSnapshots removes the snapshots' objects; on a failure it stops
// and says how far it got.
func removeSnapshots(c *cli.Context, r *engine.Repo, snaps []*engine.Snapshot) error {
	var removed atomic.Int64
	g, ctx := errgroup.WithContext(c.Context)
	g.SetLimit(removeParallel)
	for _, sn := range snaps {
		g.Go(func() error {
			if err := r.DeleteSnapshot(ctx, sn.ID); err != nil {
				return err
			}
			removed.Add(1)
			verbosef("removed snapshot %s", sn.ID.Short())
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, store.ErrLocked) {
			// Running it again fails the same way until the lock ends.
			return fmt.Errorf("removed %d of %s, then: %w", removed.Load(), plural(len(snaps), "snapshot"), err)
		}
		return fmt.Errorf("removed %d of %s, then: %w (the others are still there; run the command again to finish)", removed.Load(), plural(len(snaps), "snapshot"), err)
	}
	return nil
}

func runRm(c *cli.Context) error {
	if c.NArg() == 0 {
		return usagef("rm: name the snapshots to remove (ids, unique prefixes or latest); to remove by a policy use forget")
	}
	f, err := snapshotFilter(c)
	if err != nil {
		return err
	}
	r, _, err := openRepo(c, repoOptions{})
	if err != nil {
		return err
	}
	// Resolve every name before removing anything: a typo in the last
	// must not leave the others half done.
	var snaps []*engine.Snapshot
	seen := map[crypto.ID]bool{}
	for _, ref := range c.Args().Slice() {
		sn, err := r.FindSnapshotIn(c.Context, ref, f)
		if err != nil {
			return fmt.Errorf("rm: %w; nothing was removed", err)
		}
		if !seen[sn.ID] {
			seen[sn.ID] = true
			snaps = append(snaps, sn)
		}
	}
	dry := c.Bool("dry-run")
	if !dry {
		if err := removeSnapshots(c, r, snaps); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		out := rmOut{DryRun: dry, Removed: []forgetSnapOut{}}
		for _, sn := range snaps {
			out.Removed = append(out.Removed, forgetSnapJSON(sn, nil))
		}
		return printJSON(c.App.Writer, out)
	}
	if quiet {
		return nil
	}
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	for _, sn := range snaps {
		fmt.Fprintf(c.App.Writer, "%s snapshot %s of %s, %s\n", verb, sn.ID.Short(), sn.Source, sn.Time.Local().Format("2006-01-02 15:04:05"))
	}
	if dry {
		fmt.Fprintln(c.App.Writer, "--dry-run: nothing was removed")
	} else {
		fmt.Fprintln(c.App.Writer, noPrune)
	}
	return nil
}
