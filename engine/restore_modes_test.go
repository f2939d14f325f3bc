package engine_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/tree"
)

// modesFixture is a folder snapshot and, beside it, a target that
// differs from it in every way restore must care about.
type modesFixture struct {
	r      *engine.Repo
	sn     *engine.Snapshot
	src    string
	base   string // holds the target and what is outside it
	target string
}

// The snapshot has:
//
//	same.txt edited.txt newer.txt missing.txt lnfile notes  (files)
//	link -> same.txt                                         (symlink)
//	docs/a  pics/p  sub/keep                                 (directories)
//
// The target has same.txt, link and sub/keep as restored, and:
//
//	edited.txt   other content, mtime older than the snapshot's
//	newer.txt    other content, mtime newer than the snapshot's
//	missing.txt  absent
//	docs         a file (the snapshot has a directory)
//	notes/x      a directory (the snapshot has a file)
//	pics         a symlink to a directory outside the target
//	lnfile       a symlink to a file outside the target
//	sub/extra, sub/extradir/y  not in the snapshot
//
// and outside it, base/outside/ (what the symlinks point at) and
// base/sibling.
func newModesFixture(t *testing.T) *modesFixture {
	t.Helper()
	r, _ := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	f := &modesFixture{r: r, src: filepath.Join(t.TempDir(), "src")}
	for name, data := range map[string]string{
		"same.txt": "same", "edited.txt": "snapshot edited", "newer.txt": "snapshot newer",
		"missing.txt": "missing", "lnfile": "a file", "notes": "notes", "docs/a": "a", "pics/p": "p", "sub/keep": "keep",
	} {
		writeFile(t, filepath.Join(f.src, name), []byte(data))
	}
	must(t, os.Symlink("same.txt", filepath.Join(f.src, "link")))
	filepath.Walk(f.src, func(p string, fi fs.FileInfo, err error) error {
		if err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			os.Chtimes(p, fixedTime, fixedTime)
		}
		return nil
	})
	f.sn = backupDir(t, r, f.src, backup.Options{})
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeTarget builds a fresh base with the target as described above.
func (f *modesFixture) makeTarget(t *testing.T) {
	t.Helper()
	f.base = t.TempDir()
	f.target = filepath.Join(f.base, "target")
	must(t, restoreAll(t, f.r, f.sn, f.target))
	tg := func(p string) string { return filepath.Join(f.target, p) }
	writeFile(t, tg("edited.txt"), []byte("local edit"))
	must(t, os.Chtimes(tg("edited.txt"), fixedTime.Add(-time.Hour), fixedTime.Add(-time.Hour)))
	writeFile(t, tg("newer.txt"), []byte("newer local edit"))
	must(t, os.Chtimes(tg("newer.txt"), fixedTime.Add(time.Hour), fixedTime.Add(time.Hour)))
	must(t, os.Remove(tg("missing.txt")))
	must(t, os.RemoveAll(tg("docs")))
	writeFile(t, tg("docs"), []byte("a local file named docs"))
	must(t, os.Remove(tg("notes")))
	writeFile(t, tg("notes/x"), []byte("local notes"))
	writeFile(t, filepath.Join(f.base, "outside/sentinel"), []byte("outside"))
	writeFile(t, filepath.Join(f.base, "outside-file"), []byte("outside file"))
	writeFile(t, filepath.Join(f.base, "sibling"), []byte("sibling"))
	must(t, os.RemoveAll(tg("pics")))
	must(t, os.Symlink(filepath.Join(f.base, "outside"), tg("pics")))
	must(t, os.Remove(tg("lnfile")))
	must(t, os.Symlink(filepath.Join(f.base, "outside-file"), tg("lnfile")))
	writeFile(t, tg("sub/extra"), []byte("extra"))
	writeFile(t, tg("sub/extradir/y"), []byte("y"))
}

// fullListing names every entry under dir with its type, mode, size,
// mtime and content or link target.
func fullListing(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	filepath.Walk(dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		what := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			what, _ = os.Readlink(p)
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			what = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		lines = append(lines, fmt.Sprintf("%s %v %d %d %s", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), what))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type modeCase struct {
	name      string
	mode      restore.Overwrite
	delete    bool
	want      map[string]restore.Action // by path; existing directories report nothing
	conflicts []string
}

const (
	C = restore.Create
	R = restore.Replace
	U = restore.Unchanged
	K = restore.Keep
	D = restore.Delete
)

var modeCases = []modeCase{
	{name: "never", mode: restore.OverwriteNever,
		want: map[string]restore.Action{"/same.txt": U, "/edited.txt": K, "/newer.txt": K, "/missing.txt": C,
			"/lnfile": K, "/link": U, "/sub/keep": U},
		conflicts: []string{"/docs", "/notes", "/pics"}},
	{name: "if-changed", mode: restore.OverwriteIfChanged,
		want: map[string]restore.Action{"/same.txt": U, "/edited.txt": R, "/newer.txt": R, "/missing.txt": C,
			"/lnfile": R, "/link": U, "/sub/keep": U},
		conflicts: []string{"/docs", "/notes", "/pics"}},
	{name: "if-newer", mode: restore.OverwriteIfNewer,
		want: map[string]restore.Action{"/same.txt": U, "/edited.txt": R, "/newer.txt": K, "/missing.txt": C,
			"/lnfile": K, "/link": U, "/sub/keep": U}, // lnfile, a symlink made now, is newer
		conflicts: []string{"/docs", "/notes", "/pics"}},
	{name: "always", mode: restore.OverwriteAlways,
		want: map[string]restore.Action{"/same.txt": R, "/edited.txt": R, "/newer.txt": R, "/missing.txt": C,
			"/lnfile": R, "/link": R, "/sub/keep": R, "/docs": R, "/docs/a": C, "/pics": R, "/pics/p": C},
		conflicts: []string{"/notes"}},
	{name: "never-delete", mode: restore.OverwriteNever, delete: true,
		want: map[string]restore.Action{"/same.txt": U, "/edited.txt": K, "/newer.txt": K, "/missing.txt": C,
			"/lnfile": K, "/link": U, "/sub/keep": U, "/sub/extra": D, "/sub/extradir": D},
		conflicts: []string{"/docs", "/notes", "/pics"}},
	{name: "always-delete", mode: restore.OverwriteAlways, delete: true,
		want: map[string]restore.Action{"/same.txt": R, "/edited.txt": R, "/newer.txt": R, "/missing.txt": C,
			"/lnfile": R, "/link": R, "/sub/keep": R, "/docs": R, "/docs/a": C, "/pics": R, "/pics/p": C,
			"/notes": R, "/sub/extra": D, "/sub/extradir": D}},
}

// TestRestoreOverwriteModes restores, for real and as a dry run, in each
// overwrite mode into a target with edited, newer, missing, extra and
// type-conflicting entries.
func TestRestoreOverwriteModes(t *testing.T) {
	f := newModesFixture(t)
	for _, c := range modeCases {
		for _, dry := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/dry=%v", c.name, dry), func(t *testing.T) {
				f.makeTarget(t)
				before := fullListing(t, f.base)
				got := map[string]restore.Action{}
				var warned []string
				dst, err := restore.NewFolder(f.target)
				must(t, err)
				st, err := restore.Restore(context.Background(), f.r, f.sn.RootNode(), dst, restore.Options{
					Overwrite: c.mode, Delete: c.delete, DryRun: dry,
					Report: func(a restore.Action, p, why string) {
						if _, dup := got[p]; dup {
							t.Errorf("%s reported twice", p)
						}
						got[p] = a
					},
					Warn: func(p string, err error) {
						warned = append(warned, p)
						var ce *restore.ConflictError
						if !errors.As(err, &ce) || !strings.Contains(err.Error(), "move it away") {
							t.Errorf("%s: %v, want a conflict naming the remedy", p, err)
						}
					},
				})
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("actions:\n got %v\nwant %v", got, c.want)
				}
				sort.Strings(warned)
				if strings.Join(warned, " ") != strings.Join(c.conflicts, " ") {
					t.Errorf("conflicts %v, want %v", warned, c.conflicts)
				}
				var re *restore.Error
				if len(c.conflicts) > 0 && (!errors.As(err, &re) || re.Failed != uint64(len(c.conflicts))) {
					t.Errorf("restore: %v, want an Error for %d entries", err, len(c.conflicts))
				} else if len(c.conflicts) == 0 && err != nil {
					t.Errorf("restore: %v", err)
				}
				var n [5]uint64
				for _, a := range c.want {
					n[a]++
				}
				if gotN := [5]uint64{st.Created, st.Replaced, st.Unchanged, st.Kept, st.Deleted}; gotN != n {
					t.Errorf("stats created/replaced/unchanged/kept/deleted %v, want %v", gotN, n)
				}
				after := fullListing(t, f.base)
				if dry {
					if after != before {
						t.Fatalf("a dry run changed the target:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				checkModeResult(t, f, c)
			})
		}
	}
}

func checkModeResult(t *testing.T, f *modesFixture, c modeCase) {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(f.target, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	local := map[string]string{"/edited.txt": "local edit", "/newer.txt": "newer local edit"}
	for p, a := range c.want {
		switch a {
		case C, R, U:
			fi, _ := os.Lstat(filepath.Join(f.src, p))
			if fi.Mode().IsRegular() {
				if got, want := read(p), read2(t, filepath.Join(f.src, p)); got != want {
					t.Errorf("%s (%v) holds %q, want the snapshot's %q", p, a, got, want)
				}
			}
		case K:
			if want, ok := local[p]; ok && read(p) != want {
				t.Errorf("%s kept, but holds %q, want %q", p, read(p), want)
			}
		case D:
			if _, err := os.Lstat(filepath.Join(f.target, p)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s not deleted: %v", p, err)
			}
		}
	}
	if l, _ := os.Readlink(filepath.Join(f.target, "lnfile")); c.want["/lnfile"] == K && l == "" {
		t.Errorf("kept symlink lnfile is gone")
	}
	for _, p := range c.conflicts {
		switch p {
		case "/docs":
			if read(p) != "a local file named docs" {
				t.Errorf("conflicting file docs changed: %q", read(p))
			}
		case "/notes":
			if read("/notes/x") != "local notes" {
				t.Errorf("conflicting directory notes changed")
			}
		case "/pics":
			if l, _ := os.Readlink(filepath.Join(f.target, "pics")); l != filepath.Join(f.base, "outside") {
				t.Errorf("conflicting symlink pics changed: %q", l)
			}
		}
	}
	// Nothing outside the target moved, nothing was written through a
	// symlink, and no name was mapped: this is a folder snapshot.
	if got := read2(t, filepath.Join(f.base, "outside/sentinel")) + read2(t, filepath.Join(f.base, "outside-file")) + read2(t, filepath.Join(f.base, "sibling")); got != "outsideoutside filesibling" {
		t.Errorf("outside the target: %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.base, "outside")); len(ents) != 1 {
		t.Errorf("restore wrote through the pics symlink: %v", ents)
	}
	filepath.Walk(f.target, func(p string, fi fs.FileInfo, err error) error {
		if strings.Contains(filepath.Base(p), "%") || strings.HasPrefix(filepath.Base(p), ".coffer-restore-") {
			t.Errorf("unexpected name %s", p)
		}
		return nil
	})
	if !c.delete {
		if read("/sub/extra") != "extra" {
			t.Errorf("sub/extra removed without --delete")
		}
	}
}

func read2(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRestoreReplaceTwiceIsUnchanged: after --overwrite always --delete
// the target is the snapshot, and a second restore changes nothing.
func TestRestoreReplaceTwiceIsUnchanged(t *testing.T) {
	f := newModesFixture(t)
	f.makeTarget(t)
	dst, _ := restore.NewFolder(f.target)
	if _, err := restore.Restore(context.Background(), f.r, f.sn.RootNode(), dst, restore.Options{
		Overwrite: restore.OverwriteAlways, Delete: true}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, f.src, f.target)
	// A second restore in if-changed mode finds everything in place.
	dst, _ = restore.NewFolder(f.target)
	st, err := restore.Restore(context.Background(), f.r, f.sn.RootNode(), dst, restore.Options{
		Overwrite: restore.OverwriteIfChanged, Delete: true})
	if err != nil || st.Created+st.Replaced+st.Kept+st.Deleted != 0 || st.Unchanged != 10 {
		t.Fatalf("re-restore: %+v, %v", st, err)
	}
}

// failingFolder fails every write of a file.
type failingFolder struct{ *restore.Folder }

type failingWriter struct{ restore.FileWriter }

func (failingWriter) WriteAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func (d failingFolder) CreateFile(ctx context.Context, path string, n *tree.Node) (restore.FileWriter, error) {
	w, err := d.Folder.CreateFile(ctx, path, n)
	return failingWriter{w}, err
}

// TestRestoreFailedReplacementKeepsOld: a replacement that cannot be
// completed leaves the old file as it was, and no temporary file.
func TestRestoreFailedReplacementKeepsOld(t *testing.T) {
	f := newModesFixture(t)
	f.makeTarget(t)
	before := fullListing(t, f.target)
	fd, _ := restore.NewFolder(f.target)
	_, err := restore.Restore(context.Background(), f.r, f.sn.RootNode(), failingFolder{fd}, restore.Options{
		Overwrite: restore.OverwriteIfChanged})
	var re *restore.Error
	if !errors.As(err, &re) {
		t.Fatalf("restore: %v, want an Error", err)
	}
	if got := read2(t, filepath.Join(f.target, "edited.txt")); got != "local edit" {
		t.Fatalf("a failed replacement left %q", got)
	}
	after := fullListing(t, f.target)
	for _, l := range strings.Split(after, "\n") {
		if strings.Contains(l, ".coffer-restore-") {
			t.Errorf("temporary file left: %s", l)
		}
	}
	// missing.txt's creation failed and was undone; everything else is
	// as it was (directories but for their times, which restore sets).
	noDirs := func(l string) string {
		var out []string
		for _, line := range strings.Split(l, "\n") {
			if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[1], "d") {
				out = append(out, line)
			}
		}
		return strings.Join(out, "\n")
	}
	if noDirs(after) != noDirs(before) {
		t.Errorf("target changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
