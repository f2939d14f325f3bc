package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestoreOverwriteCLI: restore into a folder that already holds an
// edited file, lacks one, and has a file where the snapshot has a
// directory (issue 9: that directory used to go to "docs%~", exit 0).
func TestRestoreOverwriteCLI(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	for name, data := range map[string]string{"notes.txt": "snapshot notes", "gone.txt": "gone", "docs/a": "a", "sub/keep": "keep"} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("docs/a", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	s := e.backup(src)

	base := t.TempDir()
	out := filepath.Join(base, "out")
	e.ok("restore", "-to", out, s.Short)
	write := func(p, data string) {
		if err := os.WriteFile(filepath.Join(out, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("notes.txt", "my local edit")
	os.Remove(filepath.Join(out, "gone.txt"))
	write("sub/extra", "extra")
	if err := os.RemoveAll(filepath.Join(out, "docs")); err != nil {
		t.Fatal(err)
	}
	write("docs", "a file where the snapshot has a folder")
	before := listing(t, base)

	// --dry-run: says what it would do, changes nothing, and exits as the
	// restore would (the conflict fails it).
	r := e.fail(1, []string{"cannot restore /docs", "where the snapshot has a directory", "move it away", "dry run"},
		"restore", "-v", "--dry-run", "--delete", "-to", out, s.Short)
	for _, w := range []string{"keep /notes.txt", "create /gone.txt", "delete /sub/extra",
		"would restore 1 file,", "create 1, replace 0, unchanged 2, keep 1, delete 1"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("dry run lacks %q:\n%s", w, r)
		}
	}
	var dj struct {
		DryRun                 bool `json:"dry_run"`
		Created, Kept, Deleted int
		Failed                 int
		Entries                []struct{ Action, Path string }
	}
	r = e.fail(1, nil, "restore", "--json", "--dry-run", "--delete", "-to", out, s.Short)
	if err := json.Unmarshal([]byte(r.stdout), &dj); err != nil {
		t.Fatalf("restore --json --dry-run: %v\n%s", err, r.stdout)
	}
	if !dj.DryRun || dj.Created != 1 || dj.Kept != 1 || dj.Deleted != 1 || dj.Failed != 1 || len(dj.Entries) != 3 {
		t.Errorf("dry run JSON: %+v", dj)
	}
	if after := listing(t, base); after != before {
		t.Fatalf("dry run changed the target:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The default (--overwrite never) and an explicit never keep the
	// edit, restore the missing file, and fail on the conflict, naming
	// it, without renaming anything.
	for _, args := range [][]string{{}, {"--overwrite", "never"}} {
		r = e.fail(1, []string{"cannot restore /docs: the target has a file where the snapshot has a directory",
			"--overwrite always", "1 existing entry differs from the snapshot and was kept"},
			append(append([]string{"restore"}, args...), "-to", out, s.Short)...)
		if b, _ := os.ReadFile(filepath.Join(out, "notes.txt")); string(b) != "my local edit" {
			t.Fatalf("restore %v replaced the edited file: %q", args, b)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "gone.txt")); string(b) != "gone" {
			t.Fatalf("restore %v did not restore the missing file: %q", args, b)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "docs")); string(b) != "a file where the snapshot has a folder" {
			t.Fatalf("restore %v touched the conflicting file: %q", args, b)
		}
		ents, _ := os.ReadDir(out)
		for _, en := range ents {
			if strings.Contains(en.Name(), "%") {
				t.Fatalf("restore of a folder snapshot made %q", en.Name())
			}
		}
	}

	// A bad mode is a usage error; the flags are refused for a bucket.
	e.fail(2, []string{"unknown overwrite mode"}, "restore", "--overwrite", "sometimes", "-to", out, s.Short)
	e.fail(2, []string{"apply to folders"}, "restore", "--dry-run", "-to", "s3://bucket/x/", s.Short)

	// --overwrite always --delete makes the target the snapshot.
	e.ok("restore", "--overwrite", "always", "--delete", "-to", out, s.Short)
	if b, _ := os.ReadFile(filepath.Join(out, "docs", "a")); string(b) != "a" {
		t.Fatalf("docs/a after --overwrite always: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(out, "sub", "extra")); err == nil {
		t.Fatal("sub/extra survived --delete")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "notes.txt")); string(b) != "snapshot notes" {
		t.Fatalf("notes.txt after --overwrite always: %q", b)
	}
}
