// Command mkfixture writes the store fixture of one format version, which
// test/compat_test.go reads to prove that later coffers still restore it
// byte-exact:
//
//	test/testdata/store-vN/             the store (passphrase fixture-vN)
//	test/testdata/store-vN.passphrase   that passphrase
//	test/testdata/store-vN.manifest     what each snapshot must restore to
//
// It builds coffer from the current tree, writes a deterministic source
// folder (files of several sizes, one spanning several chunks, one
// compressible, a duplicate, nested and empty folders, symlinks, odd
// names, distinct modes, fixed nanosecond mtimes; from format 2 on, a
// folder of 400 entries that the tree builder, its cut rules lowered at
// link time, stores with two levels of index pages), backs it up, changes
// one file and adds one (two from format 2 on), and backs it up again:
// two snapshots, the second the child of the first, and two index files. It restores both and
// compares them with the manifest before writing anything into -out.
//
// Usage, from the repository root:
//
//	go run ./scripts/mkfixture -version N [-out test/testdata]
//
// Run it only when FormatVersion moves, for the new version. It refuses
// to overwrite an existing fixture: a fixture is a frozen record of what
// an old coffer wrote, and regenerating it would prove nothing.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
	"golang.org/x/sys/unix"
)

const (
	kib = 1 << 10

	chunkMin  = 512 * kib // the default chunker's minimum (docs/FORMAT.md §4)
	bigSize   = 1536*kib + 1234
	textSize  = 600*kib + 77
	bigName   = "/data/random.bin"
	textName  = "/logs/app.log"
	maxTries  = 10
	kdfTime   = "1"    // create's hidden KDF flags, as the tests use them:
	kdfMemory = "1024" // opening the fixture then takes milliseconds, not a second
)

// base is the first mtime; each entry gets its own, nanoseconds included.
var base = time.Date(2024, 2, 29, 13, 37, 42, 123456789, time.UTC)

// entry is one thing in the source folder: a folder if dir, a symlink if
// target is set, else a file holding data.
type entry struct {
	path   string
	mode   os.FileMode
	dir    bool
	data   []byte
	target string
	mtime  time.Time
}

func at(i int) time.Time { return base.Add(time.Duration(i)*time.Hour + time.Duration(i)*1001) }

// random returns n incompressible bytes from a fixed seed.
func random(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// manyDir is a folder big enough, under the fixture's cut rules
// (fixtureCuts), for a directory of several levels of index pages
// (format 2, docs/FORMAT.md §7).
const (
	manyDir     = "/many"
	manyEntries = 400
	// fixtureCuts lowers the cut rules of the tree builder (engine/tree's
	// link-time testCuts: page min, modulus, max; index page min,
	// modulus, max; directory reference bytes) so that manyDir has index
	// pages with a few hundred entries instead of a few hundred thousand.
	// The coffer that writes the fixture is otherwise the real one.
	fixtureCuts = "2,4,16,2,4,8,256"
	minHeight   = 2 // the levels of index pages manyDir must have
)

// many returns manyDir's entries: mostly empty files (no data blobs), some
// small ones, folders and symlinks, with names of varied lengths.
func many() []entry {
	es := []entry{{path: manyDir, dir: true, mode: 0o755, mtime: at(30)}}
	for i := range manyEntries {
		p := fmt.Sprintf("%s/obj-%04d%s", manyDir, i, strings.Repeat("x", i%7))
		e := entry{path: p, data: []byte{}, mode: 0o644, mtime: at(31 + i)}
		switch {
		case i%50 == 7:
			e = entry{path: p, dir: true, mode: 0o755, mtime: at(31 + i)}
		case i%50 == 13:
			e = entry{path: p, target: fmt.Sprintf("obj-%04d", i-1), mtime: at(31 + i)}
		case i%10 == 3:
			e.data = []byte(fmt.Sprintf("object %d\n", i))
		}
		es = append(es, e)
	}
	return es
}

// tree1 is the source of the first snapshot.
func tree1() []entry {
	big := random(1, bigSize)
	return []entry{
		{path: "/", dir: true, mode: 0o755, mtime: at(0)},
		{path: "/empty", data: []byte{}, mode: 0o644, mtime: at(1)},
		{path: "/one-byte", data: []byte("x"), mode: 0o644, mtime: at(2)},
		{path: "/docs", dir: true, mode: 0o755, mtime: at(3)},
		{path: "/docs/readme.txt", data: testtree.Text(2, 3*kib+5), mode: 0o644, mtime: at(4)},
		{path: "/docs/notes with spaces.md", data: testtree.Text(3, 5*kib), mode: 0o644, mtime: at(5)},
		{path: "/docs/café-日本語-😀.txt", data: []byte("unicode name\n"), mode: 0o644, mtime: at(6)},
		{path: "/docs/-leading-dash", data: []byte("a name that looks like a flag\n"), mode: 0o600, mtime: at(7)},
		{path: "/data", dir: true, mode: 0o700, mtime: at(8)},
		{path: bigName, data: big, mode: 0o600, mtime: at(9)},
		{path: "/data/random-copy.bin", data: big, mode: 0o644, mtime: at(10)},
		{path: "/logs", dir: true, mode: 0o755, mtime: at(11)},
		{path: textName, data: testtree.Text(1, textSize), mode: 0o644, mtime: at(12)},
		{path: "/bin", dir: true, mode: 0o755, mtime: at(13)},
		{path: "/bin/run.sh", data: []byte("#!/bin/sh\necho fixture\n"), mode: 0o755, mtime: at(14)},
		{path: "/bin/read-only", data: random(2, 2*kib), mode: 0o444, mtime: at(15)},
		{path: "/nested", dir: true, mode: 0o755, mtime: at(16)},
		{path: "/nested/a", dir: true, mode: 0o755, mtime: at(17)},
		{path: "/nested/a/b", dir: true, mode: 0o750, mtime: at(18)},
		{path: "/nested/a/b/deep.txt", data: []byte("deep\n"), mode: 0o644, mtime: at(19)},
		{path: "/nested/a/empty dir", dir: true, mode: 0o755, mtime: at(20)},
		{path: "/link-to-readme", target: "docs/readme.txt", mtime: at(21)},
		{path: "/nested/a/b/link-dangling", target: "/nonexistent/coffer-fixture", mtime: at(22)},
	}
}

// changes turn the first snapshot's source into the second's: one file
// rewritten, one added, and their folder's mtime moved; from format 2 on,
// one more added into manyDir.
func changes(version int) []entry {
	es := []entry{
		{path: "/docs", dir: true, mode: 0o755, mtime: at(101)},
		{path: "/docs/readme.txt", data: testtree.Text(20, 3*kib+123), mode: 0o644, mtime: at(102)},
		{path: "/docs/added in v2.txt", data: testtree.Text(21, 1500), mode: 0o644, mtime: at(103)},
	}
	if version >= 2 {
		es = append(es,
			entry{path: manyDir, dir: true, mode: 0o755, mtime: at(104)},
			entry{path: manyDir + "/obj-0200-added", data: []byte("added in snapshot 2\n"), mode: 0o644, mtime: at(105)})
	}
	return es
}

// apply replaces the entries of es that changes names, and adds the rest.
func apply(es, changes []entry) []entry {
	out := append([]entry(nil), es...)
next:
	for _, c := range changes {
		for i := range out {
			if out[i].path == c.path {
				out[i] = c
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

// write writes es under root: content, modes and then mtimes, deepest
// first so that writing a child does not move its folder's. It touches
// nothing else, so the files it does not name keep their inode and ctime
// and a backup finds them unchanged.
func write(root string, es []entry) error {
	sorted := append([]entry(nil), es...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	for _, e := range sorted {
		p := filepath.Join(root, e.path)
		switch {
		case e.dir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case e.target != "":
			os.Remove(p)
			if err := os.Symlink(e.target, p); err != nil {
				return err
			}
		default:
			os.Remove(p) // a read-only file is replaced, not opened
			if err := os.WriteFile(p, e.data, 0o600); err != nil {
				return err
			}
		}
		if e.target == "" {
			if err := os.Chmod(p, e.mode); err != nil {
				return err
			}
		}
	}
	for i := len(sorted) - 1; i >= 0; i-- {
		ns := sorted[i].mtime.UnixNano()
		ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, sorted[i].path), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// coffer runs the built binary on store with the passphrase in env.
type coffer struct{ bin, store, pass string }

func (c coffer) run(args ...string) ([]byte, error) {
	cmd := exec.Command(c.bin, append([]string{"at", c.store}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COFFER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "COFFER_PASSPHRASE="+c.pass)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("coffer %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes(), nil
}

// json runs a command with --json (flags go before arguments) into v.
func (c coffer) json(v any, args ...string) error {
	out, err := c.run(append([]string{args[0], "--json"}, args[1:]...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("coffer %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

type snapshot struct {
	ID      string `json:"id"`
	Parent  string `json:"parent"`
	Partial bool   `json:"partial"`
	Stats   struct {
		Files     int `json:"files"`
		Unchanged int `json:"unchanged"`
	} `json:"stats"`
}

type info struct {
	Version    int `json:"format_version"`
	Snapshots  int `json:"snapshots"`
	IndexFiles int `json:"index_files"`
	DataBlobs  int `json:"data_blobs"`
}

func (c coffer) backup(src string) (snapshot, error) {
	var s snapshot
	if err := c.json(&s, "backup", src); err != nil {
		return s, err
	}
	if s.Partial {
		return s, fmt.Errorf("snapshot %s is partial", s.ID)
	}
	return s, nil
}

// smallBlobs is how many data blobs the first snapshot holds besides the
// chunks of bigName and textName: one per distinct content of the other
// non-empty files, which are all below the chunker's minimum.
func smallBlobs(es []entry) int {
	seen := map[string]bool{}
	for _, e := range es {
		if e.dir || e.target != "" || len(e.data) == 0 {
			continue
		}
		seen[string(e.data)] = true
	}
	for _, e := range es {
		if e.path == bigName || e.path == textName {
			delete(seen, string(e.data)) // and their copies
		}
	}
	for data := range seen {
		if len(data) >= chunkMin {
			panic("a file besides " + bigName + " and " + textName + " is not below the chunker's minimum")
		}
	}
	return len(seen)
}

// firstSnapshot creates the store and backs up the first tree. The chunker
// is keyed by the store's random master key, so where the big file is cut
// differs from store to store; it tries again until the big file spans
// several chunks. (The data blob count cannot tell "text 2, big 1" from
// "text 1, big 2"; the text file is cut below 600 KiB about once in 50
// stores, so about one store in 400 passes with a big file of one chunk.)
func firstSnapshot(c coffer, src string, es []entry, version int) (snapshot, error) {
	for try := 1; ; try++ {
		os.RemoveAll(c.store)
		if _, err := c.run("create", "--kdf-time", kdfTime, "--kdf-memory", kdfMemory); err != nil {
			return snapshot{}, err
		}
		var cfg struct {
			Params struct {
				Version int `json:"version"`
			} `json:"params"`
		}
		data, err := os.ReadFile(filepath.Join(c.store, "config"))
		if err != nil {
			return snapshot{}, err
		}
		if err := json.Unmarshal(data, &cfg); err != nil {
			return snapshot{}, fmt.Errorf("config: %v", err)
		}
		if cfg.Params.Version != version {
			return snapshot{}, fmt.Errorf("this coffer writes format version %d, not %d", cfg.Params.Version, version)
		}
		s, err := c.backup(src)
		if err != nil {
			return s, err
		}
		var in info
		if err := c.json(&in, "info"); err != nil {
			return s, err
		}
		if in.DataBlobs-smallBlobs(es) >= 3 {
			return s, nil
		}
		fmt.Fprintf(os.Stderr, "mkfixture: %s is one chunk in this store (try %d); creating it again\n", bigName, try)
		if try == maxTries {
			return s, errors.New("the big file stayed one chunk; is the chunker's normal size still 1 MiB?")
		}
	}
}

// height returns the levels of index pages of directory dir in snapshot
// snap, reading the store with the engine.
func height(c coffer, snap, dir string) (int, error) {
	ctx := context.Background()
	st, err := store.NewFolder(c.store)
	if err != nil {
		return 0, err
	}
	r, err := engine.Open(ctx, st, []byte(c.pass))
	if err != nil {
		return 0, err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return 0, err
	}
	sn, err := r.FindSnapshot(ctx, snap)
	if err != nil {
		return 0, err
	}
	n, err := r.ResolvePath(ctx, sn, dir, false)
	if err != nil {
		return 0, err
	}
	d, err := r.LoadDir(ctx, n.Subtree)
	if err != nil {
		return 0, err
	}
	return d.Height, nil
}

// verify restores every snapshot and compares it with its manifest.
func verify(c coffer, work string, snaps []snapshot, manifests [][]string) error {
	for i, s := range snaps {
		to := filepath.Join(work, fmt.Sprintf("restore-%d", i+1))
		if _, err := c.run("restore", "-to", to, s.ID); err != nil {
			return err
		}
		got, err := testtree.Manifest(to)
		if err != nil {
			return err
		}
		if g, w := strings.Join(got, "\n"), strings.Join(manifests[i], "\n"); g != w {
			return fmt.Errorf("snapshot %d restores to\n%s\nnot\n%s", i+1, g, w)
		}
	}
	return nil
}

func main() {
	version := flag.Int("version", 0, "the format version this coffer writes (engine.FormatVersion)")
	out := flag.String("out", filepath.Join("test", "testdata"), "where store-vN and its files go")
	flag.Parse()
	if err := run(*version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkfixture:", err)
		os.Exit(1)
	}
}

func run(version int, out string) error {
	if version < 1 {
		return errors.New("-version N is required: the format version of this coffer")
	}
	if _, err := os.Stat(filepath.Join("cmd", "coffer")); err != nil {
		return errors.New("run it from the repository root")
	}
	name := fmt.Sprintf("store-v%d", version)
	dest := filepath.Join(out, name)
	for _, p := range []string{dest, dest + ".passphrase", dest + ".manifest"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; a fixture is never regenerated (a new format version gets a new one)", p)
		}
	}
	work, err := os.MkdirTemp("", "coffer-mkfixture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	c := coffer{bin: filepath.Join(work, "coffer"), store: filepath.Join(work, name), pass: fmt.Sprintf("fixture-v%d", version)}
	args := []string{"build", "-o", c.bin}
	if version >= 2 {
		args = append(args, "-ldflags", "-X github.com/coffer-backup/coffer/engine/tree.testCuts="+fixtureCuts)
	}
	build := exec.Command("go", append(args, "./cmd/coffer")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building coffer: %v", err)
	}

	src := filepath.Join(work, "src")
	t1 := tree1()
	if version >= 2 {
		t1 = append(t1, many()...)
	}
	var manifests [][]string
	var snaps []snapshot
	for i, step := range [][]entry{t1, changes(version)} {
		if err := write(src, step); err != nil {
			return err
		}
		m, err := testtree.Manifest(src)
		if err != nil {
			return err
		}
		if want := len(apply(t1, step)); len(m) != want {
			return fmt.Errorf("source %d has %d entries, not %d", i+1, len(m), want)
		}
		var s snapshot
		if i == 0 {
			s, err = firstSnapshot(c, src, t1, version)
		} else {
			s, err = c.backup(src)
		}
		if err != nil {
			return err
		}
		manifests, snaps = append(manifests, m), append(snaps, s)
	}
	// The second snapshot is the first's child and rereads only the
	// changed and the added file.
	if s1, s2 := snaps[0], snaps[1]; s2.Parent != s1.ID || s2.Stats.Unchanged != s1.Stats.Files-1 {
		return fmt.Errorf("second snapshot: parent %s, %d unchanged; want parent %s, %d unchanged",
			s2.Parent, s2.Stats.Unchanged, s1.ID, s1.Stats.Files-1)
	}
	if _, err := c.run("check"); err != nil {
		return err
	}
	var in info
	if err := c.json(&in, "info"); err != nil {
		return err
	}
	if in.Version != version || in.Snapshots != 2 || in.IndexFiles != 2 {
		return fmt.Errorf("info: %+v; want format %d, 2 snapshots, 2 index files", in, version)
	}
	if err := verify(c, work, snaps, manifests); err != nil {
		return err
	}
	if version >= 2 {
		for _, s := range snaps {
			h, err := height(c, s.ID, manyDir)
			if err != nil {
				return err
			}
			if h < minHeight {
				return fmt.Errorf("%s in snapshot %s has %d levels of index pages, want %d: change fixtureCuts", manyDir, s.ID[:8], h, minHeight)
			}
		}
	}

	var man bytes.Buffer
	fmt.Fprintf(&man, "# Columns: SNAPSHOT PATH TYPE MODE SIZE MTIME(unix ns) SHA256|TARGET, tab-separated, PATH and TARGET Go-quoted.\n")
	fmt.Fprintf(&man, "# What each snapshot of %s (1 the oldest) restores to, from its source folder; written by scripts/mkfixture.\n", name)
	for i, m := range manifests {
		for _, line := range m {
			fmt.Fprintf(&man, "%d\t%s\n", i+1, line)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.CopyFS(dest, os.DirFS(c.store)); err != nil {
		return err
	}
	if err := os.WriteFile(dest+".passphrase", []byte(c.pass+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(dest+".manifest", man.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s: format %d, snapshots %s and %s (its child), %d index files, %d data blobs\n",
		dest, in.Version, snaps[0].ID[:8], snaps[1].ID[:8], in.IndexFiles, in.DataBlobs)
	return nil
}
