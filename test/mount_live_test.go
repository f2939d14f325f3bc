package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// liveMount runs `coffer mount FLAGS LOC DIR` against m, with envs
// added, and waits until DIR is mounted.
func liveMount(t *testing.T, m *minioServer, envs []string, loc string, flags ...string) *mounted {
	t.Helper()
	needFUSE(t)
	dir := filepath.Join(t.TempDir(), "live")
	os.Mkdir(dir, 0o755)
	cmd := exec.Command(coffer, append(append([]string{"mount"}, flags...), loc, dir)...)
	cmd.Env = append(append(cleanEnv(), m.awsEnv()...), envs...)
	return startMount(t, cmd, dir)
}

// listedObject is what list-objects-v2 says of a key.
type listedObject struct {
	Key          string
	Size         int64
	LastModified string
}

func listWithTimes(t *testing.T, m *minioServer, bucket, prefix string) map[string]listedObject {
	t.Helper()
	var out struct{ Contents []listedObject }
	if err := json.Unmarshal([]byte(m.aws(t, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix)), &out); err != nil {
		t.Fatal(err)
	}
	res := map[string]listedObject{}
	for _, o := range out.Contents {
		res[o.Key] = o
	}
	return res
}

func readDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestMountLiveBucket mounts a bucket as it is now: listings across LIST
// pages, odd keys named as in a snapshot, sizes and mtimes from the LIST,
// byte-exact sequential and random reads against the aws CLI's bytes,
// an object rewritten while mounted, and a clean unmount.
func TestMountLiveBucket(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "live")
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(12, 1))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	write := func(rel string, data []byte) {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := rnd(3<<20 + 12345) // several blocks, a short last one
	write("docs/big.bin", big)
	write("docs/a.txt", []byte("first version\n"))
	write("docs/x", []byte("a file beside a folder of its name"))
	var many []string
	for i := range 23 { // more than 3 pages of 7
		name := fmt.Sprintf("k%03d", i)
		many = append(many, name)
		write("docs/many/"+name, rnd(i*100))
	}
	write("top.txt", []byte("top"))
	m.aws(t, "s3", "cp", "--recursive", "--quiet", src, "s3://"+bucket+"/")
	p := newProxy(t, m.endpoint) // counts the mount's requests
	mt := liveMount(t, m, p.env(), "s3://"+bucket+"/", "--metadata-ttl", "1s", "--list-page-size", "7")
	mnt := mt.dir

	// A path looked up before any listing costs two one-key LISTs a
	// name (3 names: 6), never a listing of its folders (docs/many
	// alone is 4 pages of 7), and no GET.
	p.reset()
	if fi, err := os.Stat(filepath.Join(mnt, "docs", "many", "k005")); err != nil || fi.Size() != 500 {
		t.Fatalf("stat of docs/many/k005 before any listing: %v, %v", fi, err)
	}
	if n, g := p.get("ListObjects", bucket), p.get("GetObject", bucket); n > 6 || g != 0 {
		t.Fatalf("a lookup of docs/many/k005 cost %d LISTs and %d GETs, want at most 6 and none: %v", n, g, p)
	}

	// Listings: a folder over several pages. (MinIO holds neither "a//b"
	// keys nor "x" beside "x/y"; the unit tests of fusefs show those.)
	if got := readDirNames(t, filepath.Join(mnt, "docs", "many")); !slices.Equal(got, many) {
		t.Fatalf("docs/many lists %v, want %v", got, many)
	}
	if got, want := readDirNames(t, filepath.Join(mnt, "docs")), []string{"a.txt", "big.bin", "many", "x"}; !slices.Equal(got, want) {
		t.Fatalf("docs lists %v, want %v", got, want)
	}
	if got, want := readDirNames(t, mnt), []string{"docs", "top.txt"}; !slices.Equal(got, want) {
		t.Fatalf("the root lists %v, want %v", got, want)
	}
	for p, want := range map[string]string{"docs/x": "a file beside a folder of its name"} {
		if got, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v; want %q", p, got, err, want)
		}
	}
	// A name looked up before its folder is listed: one name's LIST.
	if _, err := os.Stat(filepath.Join(mnt, "docs", "nope")); !os.IsNotExist(err) {
		t.Fatalf("stat of a missing key: %v", err)
	}
	// Sizes and mtimes are the LIST's.
	for key, o := range listWithTimes(t, m, bucket, "docs/many/") {
		fi, err := os.Stat(filepath.Join(mnt, key))
		if err != nil {
			t.Fatal(err)
		}
		lm, err := time.Parse(time.RFC3339Nano, o.LastModified)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != o.Size || !fi.ModTime().Equal(lm) || fi.Mode() != 0o644 {
			t.Fatalf("%s: size %d mtime %v mode %v; the LIST says %d, %v", key, fi.Size(), fi.ModTime(), fi.Mode(), o.Size, lm)
		}
	}
	// Byte-exact reads against what the aws CLI downloads.
	dl := filepath.Join(t.TempDir(), "big.bin")
	m.aws(t, "s3", "cp", "--quiet", "s3://"+bucket+"/docs/big.bin", dl)
	want, err := os.ReadFile(dl)
	if err != nil || !bytes.Equal(want, big) {
		t.Fatalf("the aws CLI's download differs from what was uploaded (%v)", err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "docs", "big.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sequential read of big.bin: %d bytes, %v; differs from the aws CLI's %d", len(got), err, len(want))
	}
	f, err := os.Open(filepath.Join(mnt, "docs", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		n := 1 + rng.IntN(300<<10)
		off := rng.Int64N(int64(len(want)))
		buf := make([]byte, n)
		k, err := f.ReadAt(buf, off)
		end := min(off+int64(n), int64(len(want)))
		if int64(k) != end-off || (err != nil && k == n) || !bytes.Equal(buf[:k], want[off:end]) {
			t.Fatalf("pread %d: %d bytes at %d: got %d, %v, or other bytes", i, n, off, k, err)
		}
	}
	f.Close()
	// Rewritten while mounted: after the TTL, exactly the new bytes.
	if got, err := os.ReadFile(filepath.Join(mnt, "docs", "a.txt")); err != nil || string(got) != "first version\n" {
		t.Fatalf("a.txt: %q, %v", got, err)
	}
	newer := rnd(1<<20 + 777)
	write("docs/a.txt", newer)
	m.aws(t, "s3", "cp", "--quiet", filepath.Join(src, "docs", "a.txt"), "s3://"+bucket+"/docs/a.txt")
	time.Sleep(1500 * time.Millisecond)
	if got, err := os.ReadFile(filepath.Join(mnt, "docs", "a.txt")); err != nil || !bytes.Equal(got, newer) {
		t.Fatalf("a.txt after its rewrite and the TTL: %d bytes, %v; want the new %d bytes", len(got), err, len(newer))
	}
	// Unmounted from outside: coffer exits 0.
	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v %s", err, out)
	}
	mt.wait()
}

// TestMountLiveFailsEarly: a bucket that does not exist, or credentials
// the server refuses, fail before mounting, with backup's messages and a
// non-zero exit; a good one (by its @name) mounts, and Ctrl-C unmounts it.
func TestMountLiveFailsEarly(t *testing.T) {
	m := needMinio(t)
	needFUSE(t)
	bucket := m.newBucket(t, "early")
	// The bucket, named as a source of the configuration, mounts, and
	// Ctrl-C unmounts it.
	xdg := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	cfg := exec.Command(coffer, "config", "source", "create", "livesrc", "location=s3://"+bucket+"/")
	cfg.Env = append(cleanEnv(), xdg...)
	if out, err := cfg.CombinedOutput(); err != nil {
		t.Fatalf("config source create: %v %s", err, out)
	}
	liveMount(t, m, xdg, "@livesrc").stop(os.Interrupt)
	// Flags of the other kind of mount are refused, before anything.
	for _, args := range [][]string{
		{"mount", "--refresh", "1m", "s3://" + bucket + "/", t.TempDir()},
		{"at", t.TempDir(), "mount", "--metadata-ttl", "1m", t.TempDir()},
	} {
		cmd := exec.Command(coffer, args...)
		cmd.Env = append(cleanEnv(), m.awsEnv()...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "mount: --") {
			t.Fatalf("coffer %v: %v\n%s", args, err, out)
		}
	}
	for _, c := range []struct {
		loc, want string
		env       []string
	}{
		{"s3://" + bucketName("absent") + "/p/", "does not exist", nil},
		{"s3://" + bucket + "/", "the server refused the credentials", []string{"AWS_SECRET_ACCESS_KEY=wrong-secret"}},
	} {
		dir := t.TempDir()
		cmd := exec.Command(coffer, "mount", c.loc, dir)
		cmd.Env = append(append(cleanEnv(), m.awsEnv()...), c.env...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 {
			t.Fatalf("mount of %s: %v\n%s", c.loc, err, out)
		}
		if !strings.Contains(string(out), c.want) || isMounted(dir) {
			t.Fatalf("mount of %s says (want %q):\n%s", c.loc, c.want, out)
		}
	}
}

// TestMountLiveRandomCopy: a file read at random through a live mount
// whose memory cache is far smaller than it is copied whole to the disk
// cache; then every read, random or whole, is byte-exact against the
// aws CLI's download and sends no GET. The disk cache leaves no file in
// the cache folder, while mounted or after.
func TestMountLiveRandomCopy(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "livecopy")
	rng := rand.New(rand.NewPCG(21, 2))
	data := make([]byte, 20<<20+4321)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	src := filepath.Join(t.TempDir(), "obj.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m.aws(t, "s3", "cp", "--quiet", src, "s3://"+bucket+"/d/obj.bin")
	dl := filepath.Join(t.TempDir(), "dl.bin")
	m.aws(t, "s3", "cp", "--quiet", "s3://"+bucket+"/d/obj.bin", dl)
	want, err := os.ReadFile(dl)
	if err != nil || !bytes.Equal(want, data) {
		t.Fatalf("the aws CLI's download differs from what was uploaded (%v)", err)
	}
	cacheHome := t.TempDir()
	p := newProxy(t, m.endpoint)
	mt := liveMount(t, m, append(p.env(), "XDG_CACHE_HOME="+cacheHome), "s3://"+bucket+"/", "--cache-size", "4MiB")
	path := filepath.Join(mt.dir, "d", "obj.bin")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pread := func(n int) {
		t.Helper()
		off := rng.Int64N(int64(len(want) - n))
		buf := make([]byte, n)
		if k, err := f.ReadAt(buf, off); k != n || !bytes.Equal(buf, want[off:off+int64(n)]) {
			t.Fatalf("pread of %d bytes at %d: %d, %v, or other bytes", n, off, k, err)
		}
	}
	for range 8 {
		pread(4096)
	}
	// The copy runs in the background: wait until the GETs stop.
	deadline := time.Now().Add(30 * time.Second)
	for last := int64(-1); ; {
		time.Sleep(500 * time.Millisecond)
		n := p.get("GetObject", bucket)
		if n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GETs still going after 30 s: %v", p)
		}
		last = n
	}
	p.reset()
	for range 300 {
		pread(1 + rng.IntN(512<<10))
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("whole read after the copy: %d bytes, %v; differs from the aws CLI's", len(got), err)
	}
	if g := p.get("GetObject", bucket); g != 0 {
		t.Fatalf("reads after the copy sent %d GETs, want none: the disk cache did not hold the file (%v)", g, p)
	}
	leftovers := func() {
		t.Helper()
		filepath.Walk(cacheHome, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				t.Errorf("the cache folder holds %s", p)
			}
			return nil
		})
	}
	leftovers()
	f.Close()
	if out, err := exec.Command("fusermount3", "-u", mt.dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v %s", err, out)
	}
	mt.wait()
	leftovers()
}
