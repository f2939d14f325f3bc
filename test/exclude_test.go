package test

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// excludeOut is what these tests read of backup --json.
type excludeOut struct {
	Short string `json:"short_id"`
	Stats struct {
		Files         uint64 `json:"files"`
		ExcludedFiles uint64 `json:"excluded_files"`
		ExcludedDirs  uint64 `json:"excluded_dirs"`
	} `json:"stats"`
}

func parseBackup(t *testing.T, r result) excludeOut {
	t.Helper()
	var o excludeOut
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, r)
	}
	return o
}

// restoredPaths restores a snapshot and lists its paths, folders with a
// trailing "/".
func (e *env) restoredPaths(t *testing.T, id string) []string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "r")
	e.ok("restore", "-to", to, id)
	var out []string
	filepath.WalkDir(to, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == to {
			return err
		}
		rel, _ := filepath.Rel(to, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(out)
	return out
}

func writeTree(t *testing.T, dir string, files map[string]int) {
	t.Helper()
	for p, n := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExcludeFlagsLocal: every folder exclusion flag on the command line
// at once, then as a named source's settings with a flag added; each
// leaves out what it names, the JSON counts it, and flags that do not
// apply to a folder are usage errors.
func TestExcludeFlagsLocal(t *testing.T) {
	c := newCLIEnv(t)
	c.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{
		"keep.txt": 5, "a.tmp": 5, "sub/b.tmp": 5, "sub/keep.md": 5, "sub/PIC.JPG": 5, "build/out.o": 5,
		"docs/build/page.html": 5, "secret/.nobackup": 0, "secret/key": 5, "huge.bin": 3000, "logs/x,y.log": 5,
	})
	exFile := filepath.Join(t.TempDir(), "excludes")
	os.WriteFile(exFile, []byte("# build products\n/build/\n\n"), 0o644)
	mounted := false
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Logf("--one-file-system is not tested: cannot mount a tmpfs here (needs root): %v: %s", err, out)
	} else {
		mounted = true
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
		os.WriteFile(filepath.Join(mnt, "elsewhere.txt"), []byte("other fs"), 0o644)
	}

	args := []string{"backup", "--json", "--exclude", "*.tmp", "--exclude", "x,y.log", "--iexclude", "*.jpg",
		"--exclude-file", exFile, "--exclude-if-present", ".nobackup", "--exclude-larger-than", "2KiB"}
	if mounted {
		args = append(args, "--one-file-system")
	}
	o := parseBackup(t, c.ok(append(args, dir)...))
	want := []string{"docs/", "docs/build/", "docs/build/page.html", "keep.txt", "logs/", "mnt/", "sub/", "sub/keep.md"}
	if got := c.restoredPaths(t, o.Short); !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot holds\n%q\nwant\n%q", got, want)
	}
	// a.tmp, sub/b.tmp, x,y.log, PIC.JPG, huge.bin; build/, secret/ (and mnt/, kept empty).
	wantDirs := uint64(2)
	if mounted {
		wantDirs++
	}
	if o.Stats.ExcludedFiles != 5 || o.Stats.ExcludedDirs != wantDirs {
		t.Errorf("excluded %d files and %d dirs, want 5 and %d", o.Stats.ExcludedFiles, o.Stats.ExcludedDirs, wantDirs)
	}
	text := c.ok("backup", "--exclude", "*.tmp", dir)
	if !strings.Contains(text.stdout, "excluded 2 files, 0 dirs") {
		t.Errorf("the summary does not count the excluded entries:\n%s", text)
	}

	// A named source carries the same settings; a flag adds a pattern.
	c.must(nil, "config", "source", "create", "mine", "location="+dir, "exclude=*.tmp", "exclude=x,y.log",
		"iexclude=*.jpg", "exclude_file="+exFile, "exclude_if_present=.nobackup", "exclude_larger_than=2KiB", "one_file_system=true")
	o = parseBackup(t, c.ok("backup", "--json", "--exclude", "keep.md", "@mine"))
	want = []string{"docs/", "docs/build/", "docs/build/page.html", "keep.txt", "logs/", "mnt/", "sub/"}
	if got := c.restoredPaths(t, o.Short); !reflect.DeepEqual(got, want) {
		t.Errorf("named source: snapshot holds\n%q\nwant\n%q", got, want)
	}
	if o.Stats.ExcludedFiles != 6 {
		t.Errorf("named source: excluded %d files, want 6", o.Stats.ExcludedFiles)
	}
	// --one-file-system=false overrides the entry's true.
	if mounted {
		o = parseBackup(t, c.ok("backup", "--json", "--one-file-system=false", "@mine"))
		if got := c.restoredPaths(t, o.Short); !slices.Contains(got, "mnt/elsewhere.txt") {
			t.Errorf("--one-file-system=false did not override the entry: %q", got)
		}
	}

	c.fail(2, []string{"--include applies to buckets only"}, "backup", "--include", "*.txt", dir)
	c.fail(2, []string{`pattern "["`}, "backup", "--exclude", "[", dir)
	c.fail(2, []string{"--exclude-larger-than"}, "backup", "--exclude-larger-than", "lots", dir)
	c.fail(2, []string{"exclude file"}, "backup", "--exclude-file", exFile+".missing", dir)
	c.mustFail(2, []string{"include applies to S3 locations only"}, nil, "config", "source", "set", "mine", "include", "*.txt")
	if !mounted {
		t.Skip("--one-file-system was not tested: cannot mount a tmpfs here (needs root); the rest passed")
	}
}

// TestExcludeS3Keys: --include and --exclude on a bucket's keys are
// applied to the LIST: the objects left out get no GetObject, HeadObject
// or tagging request, and are counted; the same settings on a named
// source do the same.
func TestExcludeS3Keys(t *testing.T) {
	m := needMinio(t)
	src := m.newBucket(t, "exclude-src")
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{
		"photos/2024/a.jpg": 10, "photos/2024/b.raw": 10, "photos/2024/raw/c.jpg": 10, "photos/2023/d.jpg": 10,
		"photos/2024/big.jpg": 5000, "notes.txt": 10, "tmp/e.txt": 10, "other/f.bin": 10,
	})
	m.aws(t, "s3", "cp", "--recursive", "--quiet", dir, "s3://"+src+"/")

	p := newProxy(t, m.endpoint)
	var mu sync.Mutex
	var read []string // keys of the source that were HEAD, GET or tagged
	p.hook = func(w http.ResponseWriter, r *http.Request, kind string) bool {
		bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if bucket == src && key != "" {
			mu.Lock()
			read = append(read, kind+" "+key)
			mu.Unlock()
		}
		return false
	}
	xdg := t.TempDir()
	e := newS3Env(t, m, filepath.Join(t.TempDir(), "store"), append(p.env(), "XDG_CONFIG_HOME="+xdg)...)
	check := func(what string, o excludeOut, wantKeys []string, wantExcluded uint64) {
		t.Helper()
		got := e.restoredPaths(t, o.Short)
		var files []string
		for _, k := range got {
			if !strings.HasSuffix(k, "/") {
				files = append(files, k)
			}
		}
		if !reflect.DeepEqual(files, wantKeys) {
			t.Errorf("%s: snapshot holds %q, want %q", what, files, wantKeys)
		}
		if o.Stats.ExcludedFiles != wantExcluded || o.Stats.ExcludedDirs != 0 {
			t.Errorf("%s: excluded %d files, %d dirs, want %d files", what, o.Stats.ExcludedFiles, o.Stats.ExcludedDirs, wantExcluded)
		}
		mu.Lock()
		defer mu.Unlock()
		sort.Strings(read)
		var requested []string
		for _, r := range read {
			_, key, _ := strings.Cut(r, " ")
			requested = append(requested, key)
			if !slices.Contains(wantKeys, key) {
				t.Errorf("%s: %s of an excluded key", what, r)
			}
		}
		// A first backup reads each kept object with one GET, no HEAD.
		if len(read) != len(wantKeys) || p.get("HeadObject", src) != 0 {
			t.Errorf("%s: requests for objects: %q, want one GET each of %q\nall requests: %s", what, read, wantKeys, p)
		}
		read = nil
		p.reset()
	}

	o := parseBackup(t, e.ok("backup", "--json", "--include", "prefix:photos/2024/", "--include", "*.txt",
		"--exclude", "raw/", "--exclude", "*.raw", "--exclude", "/tmp", "--exclude-larger-than", "1KB", "s3://"+src+"/"))
	check("flags", o, []string{"notes.txt", "photos/2024/a.jpg"}, 6)

	// The same as a named source's settings, in another store (so that
	// the first backup's snapshot is no parent), the size from a flag.
	cfg := func(args ...string) { // without "at STORE"
		t.Helper()
		r := e.runEnv([]string{"XDG_CONFIG_HOME=" + xdg}, args...)
		if r.code != 0 {
			t.Fatalf("coffer %s: %s", strings.Join(args, " "), r)
		}
	}
	cfg("config", "source", "create", "pics", "location=s3://"+src+"/", "include=prefix:photos/2024/", "include=*.txt",
		"exclude=raw/", "exclude=*.raw", "exclude=/tmp")
	e2 := newS3Env(t, m, filepath.Join(t.TempDir(), "store2"), append(p.env(), "XDG_CONFIG_HOME="+xdg)...)
	e = e2
	p.reset()
	mu.Lock()
	read = nil
	mu.Unlock()
	o = parseBackup(t, e.ok("backup", "--json", "--exclude-larger-than", "1KB", "@pics"))
	check("named source", o, []string{"notes.txt", "photos/2024/a.jpg"}, 6)
	e.fail(2, []string{"--one-file-system applies to folders only"}, "backup", "--one-file-system", "@pics")
}
