package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/fusefs"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// mounted is a running `coffer mount`.
type mounted struct {
	t      testing.TB
	dir    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

func needFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no fusermount3 (scripts/deps installs fuse3)")
	}
}

// isMounted reports whether dir is a mount point in /proc/mounts.
func isMounted(dir string) bool {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 1 && fields[1] == dir {
			return true
		}
	}
	return false
}

// mount runs coffer mount with args (flags, then DIR is added, then the
// rest) and waits until the folder is mounted.
func (e *env) mount(envs, flags []string, rest ...string) *mounted {
	e.t.Helper()
	needFUSE(e.t)
	dir := filepath.Join(e.t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	args := append(append(append([]string{"at", e.store, "mount"}, flags...), dir), rest...)
	cmd := exec.Command(coffer, args...)
	cmd.Env = append(append(cleanEnv(), "COFFER_PASSPHRASE="+e.pass), envs...)
	return startMount(e.t, cmd, dir)
}

// syncBuffer is a bytes.Buffer that can be read while a command writes
// to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMount starts cmd, a coffer mount at dir, and waits until dir is
// mounted and coffer has said so ("coffer: mounted …"). It says so once
// the mount answers; until then go-fuse's own first open of the mount
// (its poll probe) may still hold it, and a fusermount3 -u at once
// failed with "Device or resource busy" (seen once in TestMountOnePath).
// The mount is stopped and checked unmounted when the test ends.
func startMount(t testing.TB, cmd *exec.Cmd, dir string) *mounted {
	t.Helper()
	m := &mounted{t: t, dir: dir, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = m.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		m.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			m.code = ee.ExitCode()
		} else if err != nil {
			m.code = -1
		}
		close(m.done)
	}()
	t.Cleanup(func() {
		select {
		case <-m.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-m.done
			}
		}
		if isMounted(dir) {
			exec.Command("fusermount3", "-u", "-z", dir).Run()
			t.Errorf("%s still mounted after coffer mount ended", dir)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(dir) || !strings.Contains(m.stderr.String(), "coffer: mounted ") {
		select {
		case <-m.done:
			t.Fatalf("coffer mount exited %d before mounting:\n%s", m.code, m.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("coffer mount did not mount in 30s:\n%s", m.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

// stop sends sig and checks that coffer unmounts and exits 0.
func (m *mounted) stop(sig os.Signal) {
	m.t.Helper()
	m.cmd.Process.Signal(sig)
	m.wait()
}

// wait waits for coffer to exit by itself, and checks that it exits 0
// and leaves nothing mounted.
func (m *mounted) wait() {
	m.t.Helper()
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		m.t.Fatalf("coffer mount did not exit:\n%s", m.stderr)
	}
	if m.code != 0 {
		m.t.Fatalf("coffer mount exited %d:\n%s", m.code, m.stderr)
	}
	if isMounted(m.dir) {
		m.t.Fatalf("%s is still mounted", m.dir)
	}
}

type lsEntry struct {
	Path   string    `json:"path"`
	Type   string    `json:"type"`
	Mode   string    `json:"mode"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target"`
}

// walkMount lists root as coffer ls --json -recursive does.
func walkMount(t testing.TB, root string) []lsEntry {
	t.Helper()
	var out []lsEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := lsEntry{Path: strings.TrimPrefix(p, root), Mode: fi.Mode().String(), MTime: fi.ModTime().UTC()}
		switch {
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "symlink"
			e.Target, _ = os.Readlink(p)
		default:
			e.Type, e.Size = "file", uint64(fi.Size())
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sortEntries(es []lsEntry) {
	sort.Slice(es, func(i, j int) bool { return es[i].Path < es[j].Path })
}

const marker = "MARKER-7f3a-coffer"

// TestMountSnapshots mounts a store of three snapshots (the binary under
// GOMAXPROCS=1) and uses it the way people do: ls -lR, cp -a, grep -r,
// random preads; then SIGTERM unmounts it.
func TestMountSnapshots(t *testing.T) {
	needFUSE(t)
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := testtree.Make(src, defaultSizes); err != nil {
		t.Fatal(err)
	}
	note := filepath.Join(src, "docs", "note.txt")
	testtree.WriteFile(note, []byte("invoice 42\n"+marker+"\n"))
	testtree.WriteFile(filepath.Join(src, "docs", "other.txt"), []byte("nothing here\n"))
	s1 := e.backup(src)
	testtree.WriteFile(filepath.Join(src, "docs", "other.txt"), []byte("still nothing\n"))
	s2 := e.backup(src)
	testtree.WriteFile(note, []byte("invoice 42, marker removed\n"))
	testtree.SetTimes(src)
	s3 := e.backup(src)

	cacheHome := t.TempDir()
	m := e.mount([]string{"GOMAXPROCS=1", "XDG_CACHE_HOME=" + cacheHome}, nil)
	snaps := map[string]string{} // short id → folder
	for _, de := range testtree.Names(t, m.dir) {
		if i := strings.LastIndexByte(de, '_'); i > 0 {
			snaps[de[i+1:]] = de
		}
	}
	if len(snaps) != 3 || snaps[s1.Short] == "" || snaps[s2.Short] == "" || snaps[s3.Short] == "" {
		t.Fatalf("root lists %v", testtree.Names(t, m.dir))
	}
	if l, _ := os.Readlink(filepath.Join(m.dir, "latest")); l != snaps[s3.Short] {
		t.Fatalf("latest -> %q", l)
	}
	bySrc := filepath.Join(m.dir, "by-source", fusefs.SourceName(src))
	if l, _ := os.Readlink(filepath.Join(bySrc, "latest")); l != snaps[s3.Short] {
		t.Fatalf("by-source latest -> %q (%v)", l, testtree.Names(t, filepath.Join(m.dir, "by-source")))
	}
	latest := filepath.Join(m.dir, snaps[s3.Short])

	t.Run("ls", func(t *testing.T) {
		// The mount lists what coffer ls -recursive lists: names, types,
		// modes, sizes, mtimes, link targets.
		var want []lsEntry
		if err := json.Unmarshal([]byte(e.ok("ls", "--json", "-recursive", s3.ID).stdout), &want); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			want[i].MTime = want[i].MTime.UTC()
			if want[i].Type != "file" {
				want[i].Size = 0
			}
		}
		got := walkMount(t, latest)
		sortEntries(want)
		sortEntries(got)
		if len(got) != len(want) {
			t.Fatalf("mount has %d entries, coffer ls %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("entry %d:\nmount %+v\nls    %+v", i, got[i], want[i])
			}
		}
		// And ls -lR itself walks it without error, once per entry.
		out, err := exec.Command("ls", "-lRbA", latest).Output()
		if err != nil {
			t.Fatal(err)
		}
		entry := regexp.MustCompile(`^[-dl][rwxsStT-]{9} `)
		var lines, other []string
		for _, l := range strings.Split(string(out), "\n") {
			if entry.MatchString(l) {
				lines = append(lines, l)
			} else if l != "" && !strings.HasPrefix(l, "total ") && !strings.HasPrefix(l, latest) {
				other = append(other, l)
			}
		}
		if len(lines) != len(want) || len(other) > 0 {
			t.Fatalf("ls -lR shows %d entries, want %d; other lines: %q", len(lines), len(want), other)
		}
	})

	t.Run("pread", func(t *testing.T) {
		// Random reads at odd offsets and lengths across chunk
		// boundaries, by several readers of one file and of others at
		// once.
		files := []string{"random.bin", "text.log", fmt.Sprintf("sizes/f%d", 2*defaultSizes.Max+1)}
		want := map[string][]byte{}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			want[f] = b
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := files[i%len(files)]
				if i < 3 {
					name = files[0] // three readers of one file
				}
				errs <- preads(filepath.Join(latest, name), want[name], uint64(i), 40)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("cp", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "copy")
		if b, err := exec.Command("cp", "-a", latest, out).CombinedOutput(); err != nil {
			t.Fatalf("cp -a: %v %s", err, b)
		}
		if err := testtree.Compare(src, out); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("grep", func(t *testing.T) {
		out, _ := exec.Command("sh", "-c", "grep -rl "+marker+" "+m.dir+"/*/docs/").Output()
		got := strings.Fields(string(out))
		sort.Strings(got)
		want := []string{filepath.Join(m.dir, snaps[s1.Short], "docs/note.txt"), filepath.Join(m.dir, snaps[s2.Short], "docs/note.txt")}
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("grep -r found %q, want %q", got, want)
		}
	})

	t.Run("xattr", func(t *testing.T) {
		// A folder snapshot carries no S3 metadata.
		buf := make([]byte, 256)
		if n, err := unix.Listxattr(filepath.Join(latest, "random.bin"), buf); err != nil || n != 0 {
			t.Fatalf("listxattr: %q %v", buf[:n], err)
		}
	})

	t.Run("diskcache", func(t *testing.T) {
		// The metadata cache is per user (0700) and holds sealed bytes
		// only: no file name or content appears in it.
		dirs, _ := filepath.Glob(filepath.Join(cacheHome, "coffer", "*"))
		if len(dirs) != 1 {
			t.Fatalf("cache folders: %v", dirs)
		}
		if fi, err := os.Stat(dirs[0]); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("cache folder mode: %v %v", fi.Mode(), err)
		}
		if idx, _ := filepath.Glob(filepath.Join(dirs[0], filepath.FromSlash(store.Prefix(store.KindIndex)), "*")); len(idx) == 0 {
			t.Fatal("no index file cached")
		}
		if out, _ := exec.Command("grep", "-rlaE", "note.txt|invoice|"+marker, dirs[0]).Output(); len(out) > 0 {
			t.Fatalf("plaintext in the disk cache: %s", out)
		}
	})

	m.stop(syscall.SIGTERM)
}

// preads reads path at random offsets and lengths and compares with want.
func preads(path string, want []byte, seed uint64, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, 11))
	for i := 0; i < n; i++ {
		off := r.IntN(len(want) + 10)
		size := 1 + r.IntN(3<<20)
		if i%2 == 0 {
			size = 1 + r.IntN(5000)
		}
		p := make([]byte, size)
		got, err := f.ReadAt(p, int64(off))
		end := max(off, min(off+size, len(want)))
		if got != end-off || !bytes.Equal(p[:got], want[off:end]) {
			return fmt.Errorf("%s: pread %d at %d: %d bytes (%v), want %d", path, size, off, got, err, end-off)
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// TestMountOnePath mounts one folder of one snapshot, a second time on
// a warm metadata cache; it ends by fusermount3 -u from outside, and by
// SIGINT.
func TestMountOnePath(t *testing.T) {
	needFUSE(t)
	e := newEnv(t)
	src := t.TempDir()
	testtree.WriteFile(filepath.Join(src, "docs", "a.txt"), []byte("a\n"))
	testtree.WriteFile(filepath.Join(src, "docs", "sub", "b.txt"), []byte("b\n"))
	testtree.WriteFile(filepath.Join(src, "top.txt"), []byte("top\n"))
	testtree.SetTimes(src)
	s := e.backup(src)
	cacheHome := "XDG_CACHE_HOME=" + t.TempDir()

	for _, how := range []string{"fusermount3", "SIGINT"} {
		m := e.mount([]string{cacheHome}, []string{"--cache-size", "8MiB"}, s.Short+":/docs")
		if err := testtree.Compare(filepath.Join(src, "docs"), m.dir); err != nil {
			t.Fatal(err)
		}
		if how == "fusermount3" {
			if out, err := exec.Command("fusermount3", "-u", m.dir).CombinedOutput(); err != nil {
				t.Fatalf("fusermount3 -u: %v %s", err, out)
			}
			m.wait()
		} else {
			m.stop(os.Interrupt)
		}
	}
}

// TestMountRefresh: a backup made by another process while the store is
// mounted shows in the mount after --refresh, files and all; the disk
// cache stays within --disk-cache-size.
func TestMountRefresh(t *testing.T) {
	needFUSE(t)
	e := newEnv(t)
	src1, src2 := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "two")
	testtree.WriteFile(filepath.Join(src1, "a.txt"), []byte("a\n"))
	testtree.WriteFile(filepath.Join(src2, "docs", "b.txt"), []byte("b\n"))
	testtree.SetTimes(src1)
	testtree.SetTimes(src2)
	s1 := e.backup(src1)
	cacheHome := t.TempDir()
	m := e.mount([]string{"XDG_CACHE_HOME=" + cacheHome}, []string{"--refresh", "1s", "--disk-cache-size", "1MiB"})
	if got := testtree.Names(t, m.dir); len(got) != 3 || !strings.HasSuffix(got[0], "_"+s1.Short) {
		t.Fatalf("root: %q", got)
	}
	s2 := e.backup(src2)
	time.Sleep(1300 * time.Millisecond)
	got, name2 := testtree.Names(t, m.dir), ""
	for _, n := range got {
		if strings.HasSuffix(n, "_"+s2.Short) {
			name2 = n
		}
	}
	if len(got) != 4 || name2 == "" {
		t.Fatalf("root %v after the list's refresh: %q", time.Second, got)
	}
	if err := testtree.Compare(src2, filepath.Join(m.dir, name2)); err != nil {
		t.Fatal(err)
	}
	if err := testtree.Compare(src2, filepath.Join(m.dir, "by-source", fusefs.SourceName(src2), name2)); err != nil {
		t.Fatal(err)
	}
	var total int64
	filepath.WalkDir(cacheHome, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			total += fi.Size()
		}
		return nil
	})
	if total == 0 || total > 1<<20 {
		t.Fatalf("disk cache holds %d bytes, limit 1MiB", total)
	}
	m.stop(os.Interrupt)
}

// TestMountFailsBeforeMounting: a wrong passphrase, a missing store, a
// missing folder or snapshot fail with a message and mount nothing.
func TestMountFailsBeforeMounting(t *testing.T) {
	needFUSE(t)
	e := newEnv(t)
	src := t.TempDir()
	testtree.WriteFile(filepath.Join(src, "a"), []byte("a"))
	e.backup(src)
	dir := t.TempDir()
	e.fail(2, []string{"not a folder"}, "mount", filepath.Join(dir, "nope"))
	e.fail(2, []string{"mount takes"}, "mount")
	e.fail(2, []string{"--disk-cache-size"}, "mount", "--disk-cache-size", "1KiB", dir)
	e.fail(2, []string{"--refresh"}, "mount", "--refresh", "-1s", dir)
	e.fail(1, []string{"no such snapshot"}, "mount", dir, "deadbeef")
	e.fail(1, []string{"no such file or directory"}, "mount", dir, "latest:/nope")
	e.fail(2, []string{"not a directory"}, "mount", dir, "latest:/a")
	e.pass = "wrong"
	e.fail(1, []string{"wrong passphrase"}, "mount", dir)
	missing := &env{t: t, store: filepath.Join(t.TempDir(), "none"), pass: "x"}
	missing.fail(1, []string{"no coffer store"}, "mount", dir)
	if isMounted(dir) {
		t.Fatal("mounted after a failure")
	}
}

// minioForMount starts MinIO (scripts/minio.sh) for one test and returns
// the environment that reaches it; it skips when MinIO or the aws CLI is
// not installed.
func minioForMount(t testing.TB) []string {
	t.Helper()
	p, err := exec.Command("../scripts/minio.sh", "path").Output()
	if err != nil {
		t.Skip("scripts/minio.sh path:", err)
	}
	if _, err := os.Stat(strings.TrimSpace(string(p))); err != nil {
		t.Skip("MinIO is not installed (scripts/minio.sh install)")
	}
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("no aws CLI")
	}
	out, err := exec.Command("../scripts/minio.sh", "start").Output()
	if err != nil {
		t.Fatalf("starting MinIO: %v", err)
	}
	var envs []string
	dir := ""
	for _, l := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(strings.TrimSpace(l), "export "); ok {
			envs = append(envs, kv)
			if v, ok := strings.CutPrefix(kv, "MINIO_DIR="); ok {
				dir = v
			}
		}
	}
	t.Cleanup(func() { exec.Command("../scripts/minio.sh", "stop", dir).Run() })
	return envs
}

// TestMountS3 backs up a bucket on MinIO into a store in another bucket
// on it, mounts that store, and checks the objects' bytes and that their
// extended attributes say what aws s3api head-object says.
func TestMountS3(t *testing.T) {
	needFUSE(t)
	envs := minioForMount(t)
	aws := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("aws", args...)
		cmd.Env = append(cleanEnv(), envs...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		return out
	}
	aws("s3api", "create-bucket", "--bucket", "photos")
	dir := t.TempDir()
	objects := map[string][]byte{
		"2024/a.txt":      []byte("hello from a bucket\n"),
		"2024/b/big.bin":  testtree.RandBytes(9<<20 + 77),
		"notes/readme.md": []byte("# readme\n"),
	}
	for key, body := range objects {
		f := filepath.Join(dir, strings.ReplaceAll(key, "/", "_"))
		os.WriteFile(f, body, 0o644)
		aws("s3api", "put-object", "--bucket", "photos", "--key", key, "--body", f,
			"--content-type", "text/x-test", "--cache-control", "max-age=60",
			"--metadata", "color=blue,Owner=someone")
	}
	e := &env{t: t, store: "s3://kloset/prod", pass: "s3 store passphrase", extra: envs}
	e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")
	s := e.backup("s3://photos/")
	m := e.mount(envs, nil, s.Short)

	for key, body := range objects {
		p := filepath.Join(m.dir, key)
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: %d bytes, %v", key, len(got), err)
		}
		var head struct {
			ETag, ContentType, CacheControl string
			Metadata                        map[string]string
		}
		if err := json.Unmarshal(aws("s3api", "head-object", "--bucket", "photos", "--key", key), &head); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"etag": head.ETag, "content_type": head.ContentType, "cache_control": head.CacheControl,
			"storage_class": "STANDARD"}
		for k, v := range head.Metadata {
			want["meta."+k] = v
		}
		buf := make([]byte, 64<<10)
		n, err := unix.Listxattr(p, buf)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
			k, ok := strings.CutPrefix(name, "user.s3.")
			if !ok {
				t.Fatalf("%s: xattr %q outside user.s3.", key, name)
			}
			vn, err := unix.Getxattr(p, name, buf)
			if err != nil {
				t.Fatalf("%s: getxattr %s: %v", key, name, err)
			}
			got[k] = string(buf[:vn])
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: user.s3.%s = %q, head-object says %q (all: %q)", key, k, got[k], v, got)
			}
		}
	}
	m.stop(syscall.SIGTERM)
}
