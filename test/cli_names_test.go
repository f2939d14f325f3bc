package test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// decodeStream decodes a stream of JSON objects (backup --json prints one
// per source).
func decodeStream[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var v T
		if err := dec.Decode(&v); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("JSON stream: %v\n%s", err, s)
		}
		out = append(out, v)
	}
}

type backupJSON struct {
	snapOut
	Given string `json:"given"`
	Error string `json:"error"`
}

// @name in every position: at, --store, COFFER_STORE, create, backup
// (several sources, one snapshot each), restore -to, mount.
func TestCLINamesEverywhere(t *testing.T) {
	c := newCLIEnv(t)
	root := t.TempDir()
	srcA, srcB, srcC := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "c")
	testtree.WriteFile(filepath.Join(srcA, "x", "one"), []byte("one"))
	testtree.WriteFile(filepath.Join(srcB, "two"), []byte("two"))
	testtree.WriteFile(filepath.Join(srcC, "three"), []byte("three"))
	pf := filepath.Join(root, "pass")
	os.WriteFile(pf, []byte(c.pass+"\n"), 0o600)
	out := filepath.Join(root, "out")

	c.must(nil, "config", "store", "create", "st", "location="+c.store, "passphrase_file="+pf)
	c.must(nil, "config", "source", "create", "a", "location="+srcA)
	c.must(nil, "config", "source", "create", "b", "location", srcB)
	c.must(nil, "config", "destination", "create", "out", "location="+out)

	// No COFFER_PASSPHRASE anywhere below: the store's passphrase_file.
	c.must(nil, "at", "@st", "create", "--kdf-memory", "1024", "--kdf-time", "1")
	if _, err := os.Stat(filepath.Join(c.store, store.ObjectName(store.ConfigHandle))); err != nil {
		t.Fatalf("at @st create made no store at %s: %v", c.store, err)
	}

	r := c.must(nil, "at", "@st", "backup", "--json", "@a", "@b", srcC)
	snaps := decodeStream[backupJSON](t, r.stdout)
	if len(snaps) != 3 {
		t.Fatalf("backup of 3 sources printed %d objects:\n%s", len(snaps), r.stdout)
	}
	for i, want := range []struct{ given, source string }{{"@a", srcA}, {"@b", srcB}, {srcC, srcC}} {
		if s := snaps[i]; s.Given != want.given || s.Source != want.source || s.ID == "" || s.Error != "" || s.Stats.Files != 1 {
			t.Fatalf("snapshot %d: %+v, want %+v", i, s, want)
		}
	}
	// The text summary lists each.
	r = c.must(nil, "at", "@st", "backup", "@a", "@b")
	if !strings.Contains(r.stdout, "of "+srcA+" saved") || !strings.Contains(r.stdout, "of "+srcB+" saved") ||
		!strings.Contains(r.stdout, "2 of 2 sources saved") {
		t.Fatalf("summary:\n%s", r.stdout)
	}

	// --store @st and COFFER_STORE=@st.
	var list []snapOut
	json.Unmarshal([]byte(c.must(nil, "--store", "@st", "ls", "--json").stdout), &list)
	if len(list) != 5 {
		t.Fatalf("--store @st ls: %d snapshots, want 5", len(list))
	}
	if ls := c.must([]string{"COFFER_STORE=@st"}, "ls").stdout; !strings.Contains(ls, snaps[2].Short) {
		t.Fatalf("COFFER_STORE=@st ls:\n%s", ls)
	}

	// restore -to @out.
	c.must(nil, "at", "@st", "restore", "-to", "@out", snaps[0].Short)
	if err := testtree.Compare(srcA, out); err != nil {
		t.Fatal(err)
	}

	// An unknown name is a usage error, found before anything is written.
	before := listing(t, c.store)
	c.mustFail(2, []string{"@nope", "no source named nope", "known: @a, @b"}, nil, "at", "@st", "backup", "@a", "@nope")
	c.mustFail(2, []string{"no store named nope"}, nil, "at", "@nope", "ls")
	c.mustFail(2, []string{"no destination named nope"}, nil, "at", "@st", "restore", "-to", "@nope", "latest")
	if after := listing(t, c.store); after != before {
		t.Fatal("a command with an unknown @name wrote to the store")
	}

	// One failing source among several: the others are saved, the exit
	// code is the worst (1), and --json says which failed.
	r = c.mustFail(1, []string{"1 of 3 backups failed"}, nil, "at", "@st", "backup", "--json", "@a", filepath.Join(root, "missing"), "@b")
	snaps = decodeStream[backupJSON](t, r.stdout)
	if len(snaps) != 3 || snaps[0].ID == "" || snaps[1].Error == "" || snaps[1].ID != "" || snaps[2].ID == "" {
		t.Fatalf("backup with a missing source: %+v", snaps)
	}
	// A partial one among good ones: exit 3.
	if err := mkfifo(filepath.Join(srcB, "pipe")); err == nil {
		c.mustFail(3, []string{"skipped pipe", "1 of 2 snapshots are partial"}, nil, "at", "@st", "backup", "@a", "@b")
	}

	// mount @st, when FUSE is here.
	if _, err := os.Stat("/dev/fuse"); err == nil {
		e := *c.env
		e.store = "@st"
		m := e.mount([]string{"XDG_CONFIG_HOME=" + c.xdg}, nil)
		got, err := os.ReadFile(filepath.Join(m.dir, "latest", "two"))
		if err != nil || !bytes.Equal(got, []byte("two")) {
			t.Fatalf("mount @st: latest/two: %q %v", got, err)
		}
		m.stop(os.Interrupt)
	}
}

// Flags beat the environment, which beats the configuration entry.
func TestCLIPrecedence(t *testing.T) {
	c := newCLIEnv(t)
	root := t.TempDir()
	good := filepath.Join(root, "good")
	os.WriteFile(good, []byte(c.pass+"\n"), 0o600)
	c.must(nil, "config", "store", "create", "st", "location="+c.store, "passphrase_cmd=cat "+good)
	c.must(nil, "at", "@st", "create", "--kdf-memory", "1024", "--kdf-time", "1")

	// The entry alone.
	r := c.must(nil, "-v", "at", "@st", "ls")
	if !strings.Contains(r.stderr, "passphrase from the passphrase_cmd of @st") {
		t.Fatalf("-v does not name the entry's passphrase_cmd:\n%s", r)
	}
	// The environment beats the entry: a wrong COFFER_PASSPHRASE fails.
	c.mustFail(1, []string{"wrong passphrase"}, []string{"COFFER_PASSPHRASE=wrong"}, "at", "@st", "ls")
	// The flag beats the environment.
	r = c.must([]string{"COFFER_PASSPHRASE=wrong"}, "-v", "--passphrase-file", good, "at", "@st", "ls")
	if !strings.Contains(r.stderr, "passphrase from --passphrase-file") {
		t.Fatalf("-v:\n%s", r)
	}

	// The store: 'at' (a flag) beats COFFER_STORE.
	other := newEnv(t)
	r = c.must([]string{"COFFER_STORE=@st", "COFFER_PASSPHRASE=" + c.pass}, "at", other.store, "info", "--json")
	var info struct{ Location string }
	json.Unmarshal([]byte(r.stdout), &info)
	if info.Location != other.store {
		t.Fatalf("at beat by COFFER_STORE: %s", r.stdout)
	}
}
