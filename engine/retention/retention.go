// Package retention decides which snapshots a forget policy keeps. It is
// pure: it sees snapshot times, ids, sources, hosts and tags, never a
// store, so every decision is a function of its inputs and the time zone
// and "now" it is given.
//
// A policy is a set of rules; a snapshot is kept when any rule keeps it,
// and every rule that keeps it is named. The calendar rules (hourly,
// daily, weekly, monthly, yearly) cut time into buckets in the policy's
// time zone, as a wall clock there reads it, and keep the newest
// snapshot of each of the newest N buckets that hold one:
//
//   - hourly: the hour on the wall clock; at a fall-back DST change the
//     repeated hour (01:00-01:59 twice) is one bucket, at a spring-forward
//     change the skipped hour has none.
//   - daily: the calendar day; weekly: the ISO week (Monday to Sunday,
//     the week of 1 January may belong to the year before); monthly:
//     the calendar month; yearly: the calendar year.
//
// "last" keeps the newest N snapshots. When a calendar or last rule
// still has counts left at the group's oldest snapshot, that snapshot is
// kept too ("oldest daily"), so a short history is kept whole, as
// restic does. Snapshots are ordered by time, and at the same time by
// id: the greater id is the newer, as "latest" picks it, so ties always
// resolve the same way.
//
// "within D" keeps every snapshot newer than the group's newest snapshot
// minus D (strictly newer: one exactly D older is not kept). Snapshots
// dated after "now" (a wrong clock) are kept by it and do not count as
// the newest, so one bad clock cannot move the window past every other
// snapshot. "tag" keeps every snapshot that has all the tags of one of
// the policy's tag lists (an empty list: a snapshot with no tag).
package retention

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Unlimited as a rule's count keeps the newest snapshot of every bucket.
const Unlimited = -1

// Policy is a set of keep rules; a zero count turns a rule off.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       Duration
	Tags                                         [][]string
}

// IsEmpty reports whether p has no rule: it would keep nothing.
func (p Policy) IsEmpty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within.IsZero() && len(p.Tags) == 0
}

// String describes p: "keep the last 3, 7 daily, 4 weekly, those within
// 1y of the newest, those tagged keep".
func (p Policy) String() string {
	if p.IsEmpty() {
		return "keep nothing"
	}
	count := func(n int) string {
		if n == Unlimited {
			return "all"
		}
		return strconv.Itoa(n)
	}
	var parts []string
	if p.Last != 0 {
		parts = append(parts, "the last "+count(p.Last))
	}
	for _, r := range calendarRules {
		if n := r.count(p); n != 0 {
			parts = append(parts, count(n)+" "+r.name)
		}
	}
	if !p.Within.IsZero() {
		parts = append(parts, "those within "+p.Within.String()+" of the newest")
	}
	for _, tl := range p.Tags {
		parts = append(parts, "those tagged "+tagList(tl))
	}
	return "keep " + strings.Join(parts, ", ")
}

func tagList(tl []string) string {
	if len(tl) == 0 {
		return "(no tag)"
	}
	return strings.Join(tl, ",")
}

// ParseCount reads a rule's count: a number of at least 0, or
// "unlimited".
func ParseCount(s string) (int, error) {
	if strings.EqualFold(s, "unlimited") {
		return Unlimited, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("count %q: want a number of at least 0, or unlimited", s)
	}
	return n, nil
}

// FormatCount writes a count as ParseCount reads it.
func FormatCount(n int) string {
	if n == Unlimited {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// Snapshot is what a policy sees of a snapshot.
type Snapshot struct {
	ID     string // hex; breaks ties of Time: the greater is the newer
	Time   time.Time
	Source string
	Host   string
	Tags   []string
}

// newer reports whether a comes after b in the order of the store.
func newer(a, b Snapshot) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID > b.ID
}

// Decision is a policy's verdict on one snapshot.
type Decision struct {
	Snapshot Snapshot
	Keep     bool
	// Reasons names every rule that keeps it, in the policy's order:
	// "last", "hourly", ..., "oldest daily", "within 1y", "tag keep".
	Reasons []string
}

// calendarRule is one bucketed rule.
type calendarRule struct {
	name   string
	count  func(Policy) int
	bucket func(t time.Time) int // t already in the policy's zone
}

var calendarRules = []calendarRule{
	{"hourly", func(p Policy) int { return p.Hourly }, func(t time.Time) int {
		return ((t.Year()*100+int(t.Month()))*100+t.Day())*100 + t.Hour()
	}},
	{"daily", func(p Policy) int { return p.Daily }, func(t time.Time) int {
		return (t.Year()*100+int(t.Month()))*100 + t.Day()
	}},
	{"weekly", func(p Policy) int { return p.Weekly }, func(t time.Time) int {
		y, w := t.ISOWeek()
		return y*100 + w
	}},
	{"monthly", func(p Policy) int { return p.Monthly }, func(t time.Time) int { return t.Year()*100 + int(t.Month()) }},
	{"yearly", func(p Policy) int { return p.Yearly }, func(t time.Time) int { return t.Year() }},
}

// Apply decides, for one group of snapshots, which p keeps. Calendar
// buckets are taken in loc; now bounds "within" (snapshots after it are
// kept by it and are not the newest). The decisions come oldest first,
// in the store's order (time, then id).
func Apply(snaps []Snapshot, p Policy, loc *time.Location, now time.Time) []Decision {
	if loc == nil {
		loc = time.UTC
	}
	ds := make([]Decision, len(snaps))
	for i, s := range snaps {
		ds[i].Snapshot = s
	}
	// Newest first while deciding.
	slices.SortFunc(ds, func(a, b Decision) int {
		switch {
		case newer(a.Snapshot, b.Snapshot):
			return -1
		case newer(b.Snapshot, a.Snapshot):
			return 1
		}
		return 0
	})

	type ruleState struct {
		name   string
		left   int // Unlimited: no end
		bucket func(time.Time) int
		last   int
		seen   bool
	}
	var rules []*ruleState
	if p.Last != 0 {
		n := 0
		rules = append(rules, &ruleState{name: "last", left: p.Last, bucket: func(time.Time) int { n++; return n }})
	}
	for _, r := range calendarRules {
		if c := r.count(p); c != 0 {
			rules = append(rules, &ruleState{name: r.name, left: c, bucket: r.bucket})
		}
	}

	var limit time.Time
	haveLimit := false
	if !p.Within.IsZero() {
		for _, d := range ds {
			if !d.Snapshot.Time.After(now) {
				limit, haveLimit = p.Within.Before(d.Snapshot.Time, loc), true
				break
			}
		}
	}

	for i := range ds {
		d := &ds[i]
		t := d.Snapshot.Time.In(loc)
		oldest := i == len(ds)-1
		for _, r := range rules {
			if r.left == 0 {
				continue
			}
			b := r.bucket(t)
			switch {
			case !r.seen || b != r.last:
				r.seen, r.last = true, b
				if r.left > 0 {
					r.left--
				}
				d.Reasons = append(d.Reasons, r.name)
			case oldest:
				d.Reasons = append(d.Reasons, "oldest "+r.name)
			}
		}
		if !p.Within.IsZero() {
			switch {
			case d.Snapshot.Time.After(now):
				d.Reasons = append(d.Reasons, "within "+p.Within.String()+" (dated in the future)")
			case haveLimit && d.Snapshot.Time.After(limit):
				d.Reasons = append(d.Reasons, "within "+p.Within.String())
			}
		}
		for _, tl := range p.Tags {
			if hasTags(d.Snapshot.Tags, tl) {
				d.Reasons = append(d.Reasons, "tag "+tagList(tl))
			}
		}
		d.Keep = len(d.Reasons) > 0
	}
	slices.Reverse(ds)
	return ds
}

// hasTags reports whether have holds every tag of want; an empty want
// matches only a snapshot with no tag.
func hasTags(have, want []string) bool {
	if len(want) == 0 {
		return len(have) == 0
	}
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// GroupBy says which of a snapshot's fields put it in a group of its own.
type GroupBy struct{ Source, Host, Tags bool }

// ParseGroupBy reads "source,host,tags" (any subset, in any order); ""
// or "none" makes one group of every snapshot.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	if s == "" || s == "none" {
		return g, nil
	}
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "source":
			g.Source = true
		case "host":
			g.Host = true
		case "tags":
			g.Tags = true
		default:
			return GroupBy{}, fmt.Errorf("group by %q: want a list of source, host and tags (or none)", s)
		}
	}
	return g, nil
}

func (g GroupBy) String() string {
	var f []string
	if g.Source {
		f = append(f, "source")
	}
	if g.Host {
		f = append(f, "host")
	}
	if g.Tags {
		f = append(f, "tags")
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ",")
}

// Key is what the snapshots of one group share; the fields not grouped
// by are empty.
type Key struct {
	Source string
	Host   string
	Tags   []string // sorted
}

func (k Key) String(g GroupBy) string {
	var f []string
	if g.Source {
		f = append(f, "source "+k.Source)
	}
	if g.Host {
		h := k.Host
		if h == "" {
			h = "(none)"
		}
		f = append(f, "host "+h)
	}
	if g.Tags {
		f = append(f, "tags "+tagList(k.Tags))
	}
	if len(f) == 0 {
		return "all snapshots"
	}
	return strings.Join(f, ", ")
}

// Group is the snapshots of one key, in the order given.
type Group struct {
	Key       Key
	Snapshots []Snapshot
}

// GroupSnapshots splits snaps by g; groups come sorted by key (source,
// host, then tags), so output is the same from run to run.
func GroupSnapshots(snaps []Snapshot, g GroupBy) []Group {
	idx := map[string]int{}
	var out []Group
	for _, s := range snaps {
		var k Key
		if g.Source {
			k.Source = s.Source
		}
		if g.Host {
			k.Host = s.Host
		}
		if g.Tags {
			k.Tags = slices.Clone(s.Tags)
			slices.Sort(k.Tags)
			k.Tags = slices.Compact(k.Tags)
		}
		id := k.Source + "\x00" + k.Host + "\x00" + strings.Join(k.Tags, "\x00")
		i, ok := idx[id]
		if !ok {
			i = len(out)
			idx[id] = i
			out = append(out, Group{Key: k})
		}
		out[i].Snapshots = append(out[i].Snapshots, s)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(a.Key.Source, b.Key.Source), cmp.Compare(a.Key.Host, b.Key.Host),
			slices.Compare(a.Key.Tags, b.Key.Tags))
	})
	return out
}
