package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
)

// dated is one snapshot a forget test makes: its time, tags, and the
// bytes of its one changing file.
type dated struct {
	name, time, tags string
	id               string
	content          []byte
}

// backupDated backs up src once per snapshot, at the snapshot's time
// (backup's hidden --time), with a file that differs each time, and
// records each id and content.
func backupDated(t *testing.T, e *env, src string, snaps []*dated) {
	t.Helper()
	for i, s := range snaps {
		s.content = []byte(fmt.Sprintf("snapshot %s made at %s\n%s", s.name, s.time, strings.Repeat(s.name, 1000+i)))
		if err := os.WriteFile(filepath.Join(src, "changing"), s.content, 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"--time", s.time}
		if s.tags != "" {
			args = append(args, "--tag", s.tags)
		}
		s.id = e.backup(src, args...).ID
	}
}

type forgetJSON struct {
	DryRun  bool   `json:"dry_run"`
	Policy  string `json:"policy"`
	From    string `json:"policy_from"`
	Kept    int    `json:"kept"`
	Removed int    `json:"removed"`
	Groups  []struct {
		Source string `json:"source"`
		Keep   []struct {
			ID      string   `json:"id"`
			Reasons []string `json:"reasons"`
		} `json:"keep"`
		Remove []struct {
			ID string `json:"id"`
		} `json:"remove"`
	} `json:"groups"`
}

func parseForget(t *testing.T, r result) forgetJSON {
	t.Helper()
	var f forgetJSON
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
		t.Fatalf("forget --json: %v\n%s", err, r)
	}
	return f
}

// verdict is the forget's plan as "name reasons" lines (kept) and
// "name -" (removed), oldest first.
func (f forgetJSON) verdict(snaps []*dated) []string {
	name := map[string]string{}
	for _, s := range snaps {
		name[s.id] = s.name
	}
	var out []string
	for _, g := range f.Groups {
		for _, k := range g.Keep {
			out = append(out, name[k.ID]+" "+strings.Join(k.Reasons, ","))
		}
		for _, r := range g.Remove {
			out = append(out, name[r.ID]+" -")
		}
	}
	slices.Sort(out)
	return out
}

// remaining says which snapshots the store lists, by name.
func remaining(e *env, snaps []*dated) []string {
	e.t.Helper()
	name := map[string]string{}
	for _, s := range snaps {
		name[s.id] = s.name
	}
	var out []string
	for _, s := range e.snapshots() {
		n, ok := name[s.ID]
		if !ok {
			e.t.Fatalf("ls lists %s, which no backup made", s.ID)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// restoresExact restores every snapshot named and compares its files.
func restoresExact(t *testing.T, e *env, snaps []*dated, names []string, fixed []byte) {
	t.Helper()
	for _, s := range snaps {
		if !slices.Contains(names, s.name) {
			continue
		}
		out := filepath.Join(t.TempDir(), "r")
		e.ok("restore", "-to", out, s.id)
		if got, err := os.ReadFile(filepath.Join(out, "changing")); err != nil || string(got) != string(s.content) {
			t.Fatalf("snapshot %s restored a different file (%v)", s.name, err)
		}
		if got, err := os.ReadFile(filepath.Join(out, "fixed")); err != nil || string(got) != string(fixed) {
			t.Fatalf("snapshot %s restored a different shared file (%v)", s.name, err)
		}
	}
}

// The history both forget tests use: the times are chosen so that UTC
// and Berlin days differ (s6 is 23:30 UTC, 00:30 in Berlin).
func forgetHistory() []*dated {
	return []*dated{
		{name: "s0", time: "2026-01-05T12:00:00Z", tags: "keep"},
		{name: "s1", time: "2026-03-02T09:00:00Z"}, // Monday of ISO week 10
		{name: "s2", time: "2026-03-04T09:00:00Z"},
		{name: "s3", time: "2026-03-09T09:00:00Z"}, // Monday of ISO week 11
		{name: "s4", time: "2026-03-10T08:00:00Z"},
		{name: "s5", time: "2026-03-10T20:00:00Z"},
		{name: "s6", time: "2026-03-11T23:30:00Z"},
		{name: "s7", time: "2026-03-12T06:00:00Z"},
	}
}

// TestForgetLocal: forget with a policy removes exactly the snapshots the
// policy does not keep (a dry run removes none), names the rules that
// keep each, and every remaining snapshot restores byte-exact; a policy
// stored in the store's entry applies without flags; rm of an unknown
// id removes nothing.
func TestForgetLocal(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	fixed := []byte(strings.Repeat("shared by every snapshot ", 4000))
	os.WriteFile(filepath.Join(src, "fixed"), fixed, 0o644)
	snaps := forgetHistory()
	backupDated(t, e, src, snaps)
	all := []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"}

	e.fail(2, []string{"no keep rule given", "--keep-daily N", "rm ID"}, "forget")
	e.fail(2, []string{"--keep-daily", "unlimited"}, "forget", "--keep-daily", "-3")
	e.fail(2, []string{"time zone", "Europe/Berlin"}, "forget", "--keep-daily", "1", "--time-zone", "Mars/Olympus")
	e.fail(1, []string{"would remove every snapshot", "nothing was removed"}, "forget", "--keep-tag", "absent")

	policy := []string{"forget", "--keep-daily", "2", "--keep-weekly", "2", "--keep-tag", "keep"}
	utc := []string{"s0 tag keep", "s1 -", "s2 weekly", "s3 -", "s4 -", "s5 -", "s6 daily", "s7 daily,weekly"}
	// In Berlin s6 (00:30 on the 12th) shares s7's day: s5 is the
	// second day's newest instead.
	berlin := []string{"s0 tag keep", "s1 -", "s2 weekly", "s3 -", "s4 -", "s5 daily", "s6 -", "s7 daily,weekly"}
	before := listing(t, e.store)
	dry := parseForget(t, e.ok(append(policy, "--dry-run", "--json", "--time-zone", "UTC")...))
	if got := dry.verdict(snaps); !dry.DryRun || !slices.Equal(got, utc) {
		t.Fatalf("forget --dry-run in UTC: %q, want %q", got, utc)
	}
	if got := parseForget(t, e.ok(append(policy, "--dry-run", "--json", "--time-zone", "Europe/Berlin")...)).verdict(snaps); !slices.Equal(got, berlin) {
		t.Fatalf("forget --dry-run in Berlin: %q, want %q", got, berlin)
	}
	text := e.ok(append(policy, "--dry-run", "--time-zone", "UTC")...).stdout
	for _, want := range []string{"would remove 4 snapshots, keep 4", "nothing was removed", "daily, weekly"} {
		if !strings.Contains(text, want) {
			t.Fatalf("forget --dry-run lacks %q:\n%s", want, text)
		}
	}
	if after := listing(t, e.store); after != before {
		t.Fatalf("forget --dry-run changed the store:\n%s\nthen\n%s", before, after)
	}
	if got := remaining(e, snaps); !slices.Equal(got, all) {
		t.Fatalf("after --dry-run: %q", got)
	}

	out := e.ok(append(policy, "--time-zone", "UTC")...).stdout
	if !strings.Contains(out, "removed 4 snapshots, kept 4") || !strings.Contains(out, "space is not reclaimed yet") {
		t.Fatalf("forget says:\n%s", out)
	}
	want := []string{"s0", "s2", "s6", "s7"}
	if got := remaining(e, snaps); !slices.Equal(got, want) {
		t.Fatalf("after forget: %q, want %q", got, want)
	}
	restoresExact(t, e, snaps, want, fixed)
	e.ok("check") // reads and verifies every blob the remaining snapshots use
	// Applied again, the policy keeps what it kept.
	if f := parseForget(t, e.ok(append(policy, "--json", "--time-zone", "UTC")...)); f.Removed != 0 || f.Kept != 4 {
		t.Fatalf("forget again: removed %d, kept %d", f.Removed, f.Kept)
	}

	// rm: an unknown id (alone or beside a good one) removes nothing.
	before = listing(t, e.store)
	e.fail(1, []string{"no such snapshot", "nothing was removed"}, "rm", "00000000")
	e.fail(1, []string{"no such snapshot", "nothing was removed"}, "rm", snaps[2].id[:8], "00000000")
	if after := listing(t, e.store); after != before {
		t.Fatalf("a failed rm changed the store:\n%s\nthen\n%s", before, after)
	}
	e.fail(2, []string{"name the snapshots"}, "rm")
	if r := e.ok("rm", snaps[2].id[:8]); !strings.Contains(r.stdout, "removed snapshot "+snaps[2].id[:8]) {
		t.Fatalf("rm: %s", r)
	}
	if got := remaining(e, snaps); !slices.Equal(got, []string{"s0", "s6", "s7"}) {
		t.Fatalf("after rm: %q", got)
	}

	// A policy stored in a named store applies without flags; a flag
	// replaces the whole of it.
	cfg := filepath.Join(t.TempDir(), "config.json")
	e.extra = append(e.extra, "COFFER_CONFIG="+cfg)
	e.runEnv(e.extra, "config", "store", "create", "pol", "location="+e.store, "keep_last=1", "keep_tag=keep", "time_zone=UTC")
	named := &env{t: t, store: "@pol", pass: e.pass, extra: e.extra}
	f := parseForget(t, named.ok("forget", "--json", "--dry-run"))
	if got := f.verdict(snaps); f.From != "store entry @pol" || !slices.Equal(got, []string{"s0 tag keep", "s6 -", "s7 last"}) {
		t.Fatalf("forget with the entry's policy (from %q): %q", f.From, got)
	}
	f = parseForget(t, named.ok("forget", "--json", "--dry-run", "--keep-last", "2"))
	if got := f.verdict(snaps); !slices.Equal(got, []string{"s0 -", "s6 last", "s7 last"}) {
		t.Fatalf("forget --keep-last 2 over the entry's policy: %q", got)
	}
	named.ok("forget")
	if got := remaining(e, snaps); !slices.Equal(got, []string{"s0", "s7"}) {
		t.Fatalf("after forget by the entry's policy: %q", got)
	}
	restoresExact(t, e, snaps, []string{"s0", "s7"}, fixed)
}

// TestForgetS3: the same policy on a store in MinIO removes exactly the
// snapshot objects it does not keep, as the aws CLI sees them, and what
// remains restores byte-exact.
func TestForgetS3(t *testing.T) {
	m := needMinio(t)
	bucket := bucketName("forget")
	e := newS3Env(t, m, "s3://"+bucket+"/coffer/")
	src := t.TempDir()
	fixed := []byte(strings.Repeat("shared by every snapshot ", 4000))
	os.WriteFile(filepath.Join(src, "fixed"), fixed, 0o644)
	snaps := forgetHistory()
	backupDated(t, e, src, snaps)
	snapshotKeys := func() []string {
		var ids []string
		for _, o := range m.listObjects(t, bucket, "coffer/"+store.Prefix(store.KindSnapshot)) {
			ids = append(ids, o.Key)
		}
		return ids
	}
	idsOf := func(names ...string) []string {
		var ids []string
		for _, s := range snaps {
			if slices.Contains(names, s.name) {
				ids = append(ids, s.id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	if got, want := snapshotKeys(), idsOf("s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"); !slices.Equal(got, want) {
		t.Fatalf("snapshot objects before forget: %q, want %q", got, want)
	}
	e.ok("forget", "--keep-daily", "2", "--keep-weekly", "2", "--keep-tag", "keep", "--time-zone", "UTC")
	want := []string{"s0", "s2", "s6", "s7"}
	if got := snapshotKeys(); !slices.Equal(got, idsOf(want...)) {
		t.Fatalf("snapshot objects after forget: %q, want %q", got, idsOf(want...))
	}
	if got := remaining(e, snaps); !slices.Equal(got, want) {
		t.Fatalf("after forget, ls: %q, want %q", got, want)
	}
	restoresExact(t, e, snaps, want, fixed)

	e.fail(1, []string{"no such snapshot", "nothing was removed"}, "rm", snaps[7].id[:8], "ffffffff")
	e.ok("rm", snaps[7].id[:8])
	if got := snapshotKeys(); !slices.Equal(got, idsOf("s0", "s2", "s6")) {
		t.Fatalf("snapshot objects after rm: %q", got)
	}
	e.ok("check")
}

// TestForgetPolicyKeys: a store entry's policy keys are checked when set
// (a bad one changes nothing), kept in a normal form, and an S3 store
// entry takes them as well (they are not S3 settings).
func TestForgetPolicyKeys(t *testing.T) {
	c := newCLIEnv(t)
	c.must(nil, "config", "store", "create", "s", "location=s3://b/p", "keep_daily=7")
	c.must(nil, "config", "store", "set", "s", "keep_weekly=UNLIMITED", "keep_within=2w", "group_by=host, source",
		"time_zone=Europe/Berlin", "keep_tag=a,b", "keep_tag=c")
	var shown map[string]string
	if err := json.Unmarshal([]byte(c.must(nil, "config", "store", "show", "--json", "s").stdout), &shown); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"keep_daily": "7", "keep_weekly": "unlimited", "keep_within": "14d",
		"group_by": "source,host", "time_zone": "Europe/Berlin", "keep_tag": "a,b\nc"} {
		if shown[k] != v {
			t.Errorf("%s = %q, want %q (entry %v)", k, shown[k], v, shown)
		}
	}
	before, _ := os.ReadFile(c.configFile())
	for _, tc := range []struct{ kv, want string }{
		{"keep_daily=-1", "number of at least 0, or unlimited"},
		{"keep_last=many", "number of at least 0, or unlimited"},
		{"keep_within=5", "1y2m3d4h"},
		{"keep_within=3min", "the smallest unit is the hour"},
		{"keep_within=2x", "unknown unit"},
		{"group_by=paths", "source, host and tags"},
		{"time_zone=Mars/Olympus", "Europe/Berlin"},
	} {
		c.mustFail(2, []string{tc.want}, nil, "config", "store", "set", "s", tc.kv)
	}
	if after, _ := os.ReadFile(c.configFile()); string(after) != string(before) {
		t.Fatalf("a rejected policy key altered the file:\n%s\nvs\n%s", before, after)
	}
	c.mustFail(2, []string{`unknown key "keep_daily" for a source`}, nil, "config", "source", "create", "f", "location=/x", "keep_daily=1")
}

// TestForgetKeepUntaggedAndOneGroup: an empty --keep-tag keeps the snapshots
// with no tag, and an empty --group-by applies the policy across sources.
func TestForgetKeepUntaggedAndOneGroup(t *testing.T) {
	e := newEnv(t)
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "f"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(b, "f"), []byte("b"), 0o644)
	sa := e.backup(a, "--time", "2026-01-01T00:00:00Z", "--tag", "x")
	sb := e.backup(b, "--time", "2026-01-02T00:00:00Z")
	sa2 := e.backup(a, "--time", "2026-01-03T00:00:00Z")
	snaps := []*dated{{name: "a1", id: sa.ID}, {name: "b1", id: sb.ID}, {name: "a2", id: sa2.ID}}
	f := parseForget(t, e.ok("forget", "--dry-run", "--json", "--keep-tag", ""))
	if got := f.verdict(snaps); !slices.Equal(got, []string{"a1 -", "a2 tag (no tag)", "b1 tag (no tag)"}) {
		t.Fatalf("--keep-tag '': %q", got)
	}
	f = parseForget(t, e.ok("forget", "--dry-run", "--json", "--keep-last", "1", "--group-by", ""))
	if got := f.verdict(snaps); len(f.Groups) != 1 || !slices.Equal(got, []string{"a1 -", "a2 last", "b1 -"}) {
		t.Fatalf("--group-by '' --keep-last 1: %d groups, %q", len(f.Groups), got)
	}
	f = parseForget(t, e.ok("forget", "--dry-run", "--json", "--keep-last", "1", "--source", a))
	if got := f.verdict(snaps); !slices.Equal(got, []string{"a1 -", "a2 last"}) {
		t.Fatalf("--source A --keep-last 1: %q", got)
	}
	e.fail(2, []string{"forget takes no snapshot ids", "rm ID"}, "forget", "--keep-last", "1", sa.Short)
}
