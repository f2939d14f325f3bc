package retention

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has installed
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// snap is "ID TIME [TAG,TAG]", TIME in RFC 3339.
func snaps(t testing.TB, lines ...string) []Snapshot {
	t.Helper()
	var out []Snapshot
	for _, l := range lines {
		f := strings.Fields(l)
		tm, err := time.Parse(time.RFC3339, f[1])
		if err != nil {
			t.Fatal(err)
		}
		s := Snapshot{ID: f[0], Time: tm, Source: "/src", Host: "h"}
		if len(f) > 2 {
			s.Tags = strings.Split(f[2], ",")
		}
		out = append(out, s)
	}
	return out
}

// verdicts writes decisions as "ID reason,reason" (kept) or "ID -"
// (removed), in the order Apply gives them.
func verdicts(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		r := "-"
		if d.Keep {
			r = strings.Join(d.Reasons, ",")
		}
		out = append(out, d.Snapshot.ID+" "+r)
	}
	return out
}

var now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// TestApplyGolden: each case is a history, a policy, a zone and the
// verdict on every snapshot, oldest first, with the rules that keep it.
func TestApplyGolden(t *testing.T) {
	within := func(s string) Duration {
		d, err := ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A snapshot every day at 10:00 UTC for 20 days of March 2026, and
	// one more at 18:00 on days 5, 10 and 15.
	var march []string
	for d := 1; d <= 20; d++ {
		march = append(march, fmt.Sprintf("d%02d 2026-03-%02dT10:00:00Z", d, d))
		if d%5 == 0 {
			march = append(march, fmt.Sprintf("e%02d 2026-03-%02dT18:00:00Z", d, d))
		}
	}
	for _, tc := range []struct {
		name  string
		snaps []string
		p     Policy
		zone  string
		want  []string
	}{
		{"last", []string{"a 2026-01-01T00:00:00Z", "b 2026-01-02T00:00:00Z", "c 2026-01-03T00:00:00Z", "d 2026-01-04T00:00:00Z"},
			Policy{Last: 2}, "UTC", []string{"a -", "b -", "c last", "d last"}},
		{"given out of order, decided in the store's order", []string{"d 2026-01-04T00:00:00Z", "b 2026-01-02T00:00:00Z", "a 2026-01-01T00:00:00Z", "c 2026-01-03T00:00:00Z"},
			Policy{Last: 2}, "UTC", []string{"a -", "b -", "c last", "d last"}},
		{"tie: the greater id is the newer", []string{"b1 2026-01-01T00:00:00Z", "a2 2026-01-01T00:00:00Z", "c3 2026-01-01T00:00:00Z"},
			Policy{Last: 1}, "UTC", []string{"a2 -", "b1 -", "c3 last"}},
		{"tie in a day: the greater id is the day's newest", []string{"b 2026-01-01T08:00:00Z", "a 2026-01-01T08:00:00Z", "z 2025-12-31T08:00:00Z"},
			Policy{Daily: 2}, "UTC", []string{"z daily", "a -", "b daily"}},
		{"daily keeps each day's newest", []string{"a 2026-01-01T08:00:00Z", "b 2026-01-01T20:00:00Z", "c 2026-01-02T01:00:00Z", "d 2026-01-02T03:00:00Z", "e 2026-01-03T12:00:00Z"},
			Policy{Daily: 2}, "UTC", []string{"a -", "b -", "c -", "d daily", "e daily"}},
		{"count left at the oldest keeps it too", []string{"a 2026-01-01T08:00:00Z", "b 2026-01-01T20:00:00Z", "c 2026-01-02T01:00:00Z", "d 2026-01-02T03:00:00Z"},
			Policy{Daily: 7}, "UTC", []string{"a oldest daily", "b daily", "c -", "d daily"}},
		{"days in UTC", []string{"a 2026-03-01T22:00:00Z", "b 2026-03-01T23:30:00Z", "c 2026-03-02T10:00:00Z"},
			Policy{Daily: 2}, "UTC", []string{"a -", "b daily", "c daily"}},
		{"days in Berlin (UTC+1): 23:30Z is the next day", []string{"a 2026-03-01T22:00:00Z", "b 2026-03-01T23:30:00Z", "c 2026-03-02T10:00:00Z"},
			Policy{Daily: 2}, "Europe/Berlin", []string{"a daily", "b -", "c daily"}},
		{"days in Los Angeles (UTC-8): 07:00Z is the day before", []string{"a 2026-03-01T09:00:00Z", "b 2026-03-02T07:00:00Z", "c 2026-03-02T09:00:00Z"},
			Policy{Daily: 2}, "America/Los_Angeles", []string{"a -", "b daily", "c daily"}},
		{"DST fall-back: the repeated 01:00 hour is one wall-clock bucket",
			// 00:30 EDT, 01:10 EDT, 01:50 EST, 02:10 EST on 1 November 2026.
			[]string{"a 2026-11-01T04:30:00Z", "b 2026-11-01T05:10:00Z", "c 2026-11-01T06:50:00Z", "d 2026-11-01T07:10:00Z"},
			Policy{Hourly: 3}, "America/New_York", []string{"a hourly", "b -", "c hourly", "d hourly"}},
		{"DST fall-back in UTC: four hours", []string{"a 2026-11-01T04:30:00Z", "b 2026-11-01T05:10:00Z", "c 2026-11-01T06:50:00Z", "d 2026-11-01T07:10:00Z"},
			Policy{Hourly: 3}, "UTC", []string{"a -", "b hourly", "c hourly", "d hourly"}},
		{"DST spring-forward: 01:50 EST and 03:05 EDT, 15 minutes apart, are two hours",
			[]string{"a 2026-03-08T06:40:00Z", "b 2026-03-08T06:50:00Z", "c 2026-03-08T07:05:00Z"},
			Policy{Hourly: 2}, "America/New_York", []string{"a -", "b hourly", "c hourly"}},
		{"within 1d across spring-forward is a calendar day of 23 hours",
			// Newest at 12:00 EDT on 8 March; 11:30 EST on the 7th is 23.5h before, a day and a half-hour on the calendar.
			[]string{"a 2026-03-07T16:30:00Z", "b 2026-03-07T17:30:00Z", "c 2026-03-08T16:00:00Z"},
			Policy{Within: within("1d")}, "America/New_York", []string{"a -", "b within 1d", "c within 1d"}},
		{"within 1d in UTC is 24 hours", []string{"a 2026-03-07T16:30:00Z", "b 2026-03-07T17:30:00Z", "c 2026-03-08T16:00:00Z"},
			Policy{Within: within("1d")}, "UTC", []string{"a within 1d", "b within 1d", "c within 1d"}},
		{"within 1y2m3d4h: the boundary itself is not within",
			// newest 2026-06-10T12:00Z: minus 1y2m3d4h is 2025-04-07T08:00Z.
			[]string{"a 2025-04-07T07:59:59Z", "b 2025-04-07T08:00:00Z", "c 2025-04-07T08:00:01Z", "d 2026-06-10T12:00:00Z"},
			Policy{Within: within("1y2m3d4h")}, "UTC", []string{"a -", "b -", "c within 1y2m3d4h", "d within 1y2m3d4h"}},
		{"within counts from the group's newest, not from now", []string{"a 2020-01-01T00:00:00Z", "b 2020-01-05T00:00:00Z", "c 2020-01-10T00:00:00Z"},
			Policy{Within: within("1w")}, "UTC", []string{"a -", "b within 7d", "c within 7d"}},
		{"a snapshot dated after now is kept and is not the newest", []string{"a 2029-12-20T00:00:00Z", "b 2029-12-29T00:00:00Z", "f 2031-01-01T00:00:00Z"},
			Policy{Within: within("2d")}, "UTC", []string{"a -", "b within 2d", "f within 2d (dated in the future)"}},
		{"weekly: ISO weeks run Monday to Sunday, across the new year",
			// 2025-12-29 (Mon) and 2026-01-03 (Sat) are both 2026-W01; 2025-12-28 is a Sunday of W52.
			[]string{"a 2025-12-28T12:00:00Z", "b 2025-12-29T12:00:00Z", "c 2026-01-03T12:00:00Z", "d 2026-01-05T12:00:00Z"},
			Policy{Weekly: 3}, "UTC", []string{"a weekly", "b -", "c weekly", "d weekly"}},
		{"yearly is the calendar year, not the ISO one", []string{"a 2025-12-28T12:00:00Z", "b 2025-12-29T12:00:00Z", "c 2026-01-03T12:00:00Z"},
			Policy{Yearly: 2}, "UTC", []string{"a -", "b yearly", "c yearly"}},
		{"several rules keep one snapshot, and each is named", []string{"a 2025-06-01T12:00:00Z", "b 2026-01-31T12:00:00Z", "c 2026-02-01T10:00:00Z", "d 2026-02-01T11:00:00Z"},
			Policy{Last: 1, Hourly: 1, Daily: 2, Weekly: 1, Monthly: 2, Yearly: 2}, "UTC",
			[]string{"a yearly", "b daily,monthly", "c -", "d last,hourly,daily,weekly,monthly,yearly"}},
		{"unlimited keeps every bucket's newest", []string{"a 2024-05-01T00:00:00Z", "b 2024-05-02T00:00:00Z", "c 2025-05-01T00:00:00Z", "d 2026-05-01T00:00:00Z"},
			Policy{Yearly: Unlimited}, "UTC", []string{"a oldest yearly", "b yearly", "c yearly", "d yearly"}},
		{"keep-tag: all tags of one list, any list", []string{"a 2026-01-01T00:00:00Z x", "b 2026-01-02T00:00:00Z x,y", "c 2026-01-03T00:00:00Z z", "d 2026-01-04T00:00:00Z"},
			Policy{Tags: [][]string{{"x", "y"}, {"z"}}}, "UTC", []string{"a -", "b tag x,y", "c tag z", "d -"}},
		{"keep-tag '' keeps the untagged", []string{"a 2026-01-01T00:00:00Z x", "b 2026-01-02T00:00:00Z"},
			Policy{Tags: [][]string{{}}}, "UTC", []string{"a -", "b tag (no tag)"}},
		{"tag and calendar rules together", []string{"a 2026-01-01T00:00:00Z keep", "b 2026-01-02T00:00:00Z", "c 2026-01-03T00:00:00Z"},
			Policy{Last: 1, Tags: [][]string{{"keep"}}}, "UTC", []string{"a tag keep", "b -", "c last"}},
		{"a month of dailies: 7 daily, 2 weekly, 1 monthly", march, Policy{Daily: 7, Weekly: 2, Monthly: 1}, "UTC", []string{
			"d01 -", "d02 -", "d03 -", "d04 -", "d05 -", "e05 -", "d06 -", "d07 -", "d08 -", "d09 -", "d10 -", "e10 -", "d11 -",
			"d12 -", "d13 -", "d14 daily", "d15 -", "e15 daily,weekly", "d16 daily", "d17 daily", "d18 daily", "d19 daily",
			"d20 -", "e20 daily,weekly,monthly"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := verdicts(Apply(snaps(t, tc.snaps...), tc.p, zone(t, tc.zone), now))
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s in %s:\n got %q\nwant %q", tc.p, tc.zone, got, tc.want)
			}
		})
	}
}

// TestApplyProperties: on random histories, the verdict does not depend
// on the order snapshots are given in; a rule of count N keeps at most N
// snapshots (plus the oldest); the newest is kept by any calendar, last
// or within rule; and no snapshot is kept without a reason.
func TestApplyProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	zones := []*time.Location{time.UTC, zone(t, "America/New_York"), zone(t, "Asia/Kolkata"), zone(t, "Australia/Lord_Howe")}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for trial := range 300 {
		var in []Snapshot
		for i := range 1 + rng.IntN(60) {
			// Coarse times so that ties happen.
			tm := base.Add(time.Duration(rng.IntN(2000)) * 37 * time.Minute)
			in = append(in, Snapshot{ID: fmt.Sprintf("%04x", rng.IntN(1<<16)) + fmt.Sprint(i), Time: tm})
		}
		p := Policy{Last: rng.IntN(4), Hourly: rng.IntN(4), Daily: rng.IntN(4), Weekly: rng.IntN(3), Monthly: rng.IntN(3)}
		if p.IsEmpty() {
			p.Daily = 1
		}
		loc := zones[trial%len(zones)]
		ds := Apply(in, p, loc, now)
		shuffled := slices.Clone(in)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if a, b := verdicts(ds), verdicts(Apply(shuffled, p, loc, now)); !slices.Equal(a, b) {
			t.Fatalf("trial %d: order changed the verdict:\n%q\n%q", trial, a, b)
		}
		for i := 1; i < len(ds); i++ {
			if newer(ds[i-1].Snapshot, ds[i].Snapshot) {
				t.Fatalf("trial %d: decisions not oldest first", trial)
			}
		}
		if !ds[len(ds)-1].Keep {
			t.Fatalf("trial %d: the newest snapshot was not kept by %s", trial, p)
		}
		for _, r := range []struct {
			name string
			n    int
		}{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}} {
			kept, oldest := 0, 0
			for _, d := range ds {
				kept += count(d.Reasons, r.name)
				oldest += count(d.Reasons, "oldest "+r.name)
			}
			if kept > r.n || oldest > 1 || (oldest == 1 && kept >= r.n) {
				t.Fatalf("trial %d: %s %d kept %d (+%d oldest)", trial, r.name, r.n, kept, oldest)
			}
		}
		for _, d := range ds {
			if d.Keep != (len(d.Reasons) > 0) {
				t.Fatalf("trial %d: %s keep=%v reasons %q", trial, d.Snapshot.ID, d.Keep, d.Reasons)
			}
		}
	}
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"1y2m3d4h", "1y2m3d4h", false},
		{"7d", "7d", false},
		{"2w", "14d", false},
		{"1w2d", "9d", false},
		{"36h", "36h", false},
		{"4h3d", "3d4h", false},
		{"", "", true},
		{"0d", "", true},
		{"5", "", true},
		{"d", "", true},
		{"1x", "", true},
		{"1d1d", "", true},
		{"30min", "", true},
		{"90s", "", true},
		{"-1d", "", true},
	} {
		d, err := ParseDuration(tc.in)
		if (err != nil) != tc.err || (err == nil && d.String() != tc.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %q (error %v)", tc.in, d, err, tc.want, tc.err)
		}
	}
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "7": 7, "unlimited": Unlimited, "Unlimited": Unlimited} {
		if n, err := ParseCount(in); err != nil || n != want {
			t.Errorf("ParseCount(%q) = %d, %v", in, n, err)
		}
	}
	for _, in := range []string{"", "-1", "x", "1.5"} {
		if _, err := ParseCount(in); err == nil {
			t.Errorf("ParseCount(%q) accepted", in)
		}
	}
}

func TestGroupSnapshots(t *testing.T) {
	in := []Snapshot{
		{ID: "1", Source: "/b", Host: "h1", Tags: []string{"y", "x"}},
		{ID: "2", Source: "/a", Host: "h2"},
		{ID: "3", Source: "/b", Host: "h1", Tags: []string{"x", "y"}},
		{ID: "4", Source: "/a", Host: "h1"},
		{ID: "5", Source: "/b", Host: "h1"},
	}
	show := func(gs []Group, g GroupBy) []string {
		var out []string
		for _, gr := range gs {
			var ids []string
			for _, s := range gr.Snapshots {
				ids = append(ids, s.ID)
			}
			out = append(out, gr.Key.String(g)+": "+strings.Join(ids, " "))
		}
		return out
	}
	for _, tc := range []struct {
		by   string
		want []string
	}{
		{"source,host", []string{"source /a, host h1: 4", "source /a, host h2: 2", "source /b, host h1: 1 3 5"}},
		{"host", []string{"host h1: 1 3 4 5", "host h2: 2"}},
		{"source,tags", []string{"source /a, tags (no tag): 2 4", "source /b, tags (no tag): 5", "source /b, tags x,y: 1 3"}},
		{"", []string{"all snapshots: 1 2 3 4 5"}},
	} {
		g, err := ParseGroupBy(tc.by)
		if err != nil {
			t.Fatal(err)
		}
		if got := show(GroupSnapshots(in, g), g); !slices.Equal(got, tc.want) {
			t.Errorf("group by %q:\n got %q\nwant %q", tc.by, got, tc.want)
		}
	}
	if _, err := ParseGroupBy("paths"); err == nil {
		t.Error("group by paths accepted")
	}
}

func TestPolicyString(t *testing.T) {
	p := Policy{Last: 3, Daily: 7, Yearly: Unlimited, Within: Duration{Years: 1}, Tags: [][]string{{"a", "b"}}}
	want := "keep the last 3, 7 daily, all yearly, those within 1y of the newest, those tagged a,b"
	if got := p.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
