package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// xattrsOf returns the user.s3.* attributes of p, as getfattr -d -m
// user.s3 shows them, without the prefix.
func xattrsOf(t *testing.T, p string) map[string]string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Listxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	got := map[string]string{}
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		k, ok := strings.CutPrefix(name, "user.s3.")
		if !ok {
			t.Fatalf("%s: xattr %q outside user.s3.", p, name)
		}
		vn, err := unix.Getxattr(p, name, buf)
		if err != nil {
			t.Fatalf("%s: getxattr %s: %v", p, name, err)
		}
		got[k] = string(buf[:vn])
	}
	return got
}

// TestMountLiveXattrs: the user.s3.* attributes of a live mount are
// what aws s3api head-object and get-object-tagging say, under the same
// names, with the same values, as the snapshot mount of a backup of the
// same bucket shows them; they cost no request until asked for.
func TestMountLiveXattrs(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "lxattr")
	dir := t.TempDir()
	body := filepath.Join(dir, "body")
	os.WriteFile(body, []byte("some bytes of an object\n"), 0o644)
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", "docs/full.txt", "--body", body,
		"--content-type", "text/x-test", "--cache-control", "max-age=60", "--content-disposition", "inline",
		"--content-language", "fr", "--metadata", "color=blue,Owner=someone", "--tagging", "team=ops&stage=prod%20one",
		"--checksum-algorithm", "SHA256")
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", "plain", "--body", body)
	keys := []string{"docs/full.txt", "plain"}

	e := newS3Env(t, m, filepath.Join(t.TempDir(), "store"))
	s := e.backup("s3://" + bucket + "/")
	snap := e.mount(m.awsEnv(), nil, s.Short)
	p := newProxy(t, m.endpoint)
	live := liveMount(t, m, p.env(), "s3://"+bucket+"/")

	// A listing and stats ask for no attributes.
	p.reset()
	walkMount(t, live.dir)
	if h := p.get("HeadObject", bucket) + p.get("GETTagging", bucket); h != 0 {
		t.Fatalf("a walk of the live mount cost %d HEADs and tag reads: %v", h, p)
	}
	for _, key := range keys {
		var head struct {
			ETag, ContentType, CacheControl, ContentDisposition, ContentLanguage, ChecksumSHA256, VersionId, StorageClass string
			Metadata                                                                                                      map[string]string
		}
		if err := json.Unmarshal([]byte(m.aws(t, "s3api", "head-object", "--bucket", bucket, "--key", key, "--checksum-mode", "ENABLED")), &head); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"etag": head.ETag, "storage_class": "STANDARD"}
		for k, v := range map[string]string{"content_type": head.ContentType, "cache_control": head.CacheControl,
			"content_disposition": head.ContentDisposition, "content_language": head.ContentLanguage,
			"checksum_sha256": head.ChecksumSHA256, "version_id": head.VersionId} {
			if v != "" {
				want[k] = v
			}
		}
		for k, v := range head.Metadata {
			want["meta."+k] = v
		}
		var tags struct{ TagSet []struct{ Key, Value string } }
		json.Unmarshal([]byte(m.aws(t, "s3api", "get-object-tagging", "--bucket", bucket, "--key", key)), &tags)
		for _, tg := range tags.TagSet {
			want["tag."+tg.Key] = tg.Value
		}
		got := xattrsOf(t, filepath.Join(live.dir, key))
		if !maps.Equal(got, want) {
			t.Errorf("%s: the live mount's user.s3.* are\n%q\nhead-object and get-object-tagging say\n%q", key, got, want)
		}
		if fromSnap := xattrsOf(t, filepath.Join(snap.dir, key)); !maps.Equal(got, fromSnap) {
			t.Errorf("%s: the live mount's user.s3.* are\n%q\nthe snapshot mount's\n%q", key, got, fromSnap)
		}
	}
	if got := xattrsOf(t, filepath.Join(live.dir, "docs", "full.txt")); got["tag.stage"] != "prod one" || got["meta.color"] != "blue" || got["checksum_sha256"] == "" {
		t.Fatalf("docs/full.txt: the test object lacks its tags, metadata or checksum: %q", got)
	}
	// Kept for the TTL (a minute): asked again, no request.
	p.reset()
	xattrsOf(t, filepath.Join(live.dir, "plain"))
	if h := p.get("HeadObject", bucket); h != 0 {
		t.Fatalf("attributes asked again within the TTL cost %d HEADs", h)
	}
}

// putVersion writes key with body.
func putVersion(t *testing.T, m *minioServer, bucket, key, body string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "b")
	os.WriteFile(f, []byte(body), 0o644)
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", key, "--body", f)
}

// files returns every file below dir with its bytes, hidden ones too,
// and fails on an empty folder (a folder whose keys are all gone).
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if ents, _ := os.ReadDir(p); len(ents) == 0 && p != dir {
				t.Errorf("%s: an empty folder", rel)
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestMountLiveVersions: on a versioned bucket with overwrites and
// deletes, --at at three times shows exactly the keys and bytes of each
// time, and --versions every version of every object, beside the
// current ones.
func TestMountLiveVersions(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "lvers")
	m.aws(t, "s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration", "Status=Enabled")
	pause := func() time.Time {
		time.Sleep(600 * time.Millisecond)
		at := time.Now()
		time.Sleep(600 * time.Millisecond)
		return at
	}
	del := func(key string) { m.aws(t, "s3api", "delete-object", "--bucket", bucket, "--key", key) }
	putVersion(t, m, bucket, "a", "a1")
	putVersion(t, m, bucket, "b", "b1")
	putVersion(t, m, bucket, "dir/c", "c1")
	t1 := pause()
	putVersion(t, m, bucket, "a", "a2")
	del("b")
	putVersion(t, m, bucket, "d", "d1")
	t2 := pause()
	del("a")
	putVersion(t, m, bucket, "b", "b3")
	del("dir/c")
	// ghost: a key left with a delete marker alone (its one version
	// removed by id).
	gf := filepath.Join(t.TempDir(), "g")
	os.WriteFile(gf, []byte("g1"), 0o644)
	var put struct{ VersionId string }
	if err := json.Unmarshal([]byte(m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", "ghost", "--body", gf)), &put); err != nil || put.VersionId == "" {
		t.Fatalf("put-object of ghost: %+v, %v", put, err)
	}
	del("ghost")
	m.aws(t, "s3api", "delete-object", "--bucket", bucket, "--key", "ghost", "--version-id", put.VersionId)
	t3 := pause()

	for i, c := range []struct {
		at   time.Time
		want map[string]string
	}{
		{t1, map[string]string{"a": "a1", "b": "b1", "dir/c": "c1"}},
		{t2, map[string]string{"a": "a2", "d": "d1", "dir/c": "c1"}},
		{t3, map[string]string{"b": "b3", "d": "d1"}},
	} {
		mt := liveMount(t, m, nil, "s3://"+bucket+"/", "--at", c.at.UTC().Format(time.RFC3339Nano))
		if got := files(t, mt.dir); !maps.Equal(got, c.want) {
			t.Errorf("--at t%d: %q, want %q", i+1, got, c.want)
		}
		mt.stop(syscall.SIGTERM)
	}

	// --versions: the current objects, and beside each, every version
	// and delete marker (an empty file "<time>_<versionId>.deleted").
	type version struct{ Key, VersionId, LastModified string }
	var lv struct{ Versions, DeleteMarkers []version }
	if err := json.Unmarshal([]byte(m.aws(t, "s3api", "list-object-versions", "--bucket", bucket)), &lv); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"b": "b3", "d": "d1"}
	bodies := map[string][]string{"a": {"a1", "a2", ""}, "b": {"b1", "", "b3"}, "d": {"d1"}, "dir/c": {"c1", ""}, "ghost": {""}}
	for i, v := range append(lv.Versions, lv.DeleteMarkers...) {
		lm, err := time.Parse(time.RFC3339Nano, v.LastModified)
		if err != nil {
			t.Fatal(err)
		}
		d, base := filepath.Split(v.Key)
		name := d + "." + base + "%25%versions/" + lm.UTC().Format("2006-01-02T15-04-05.000Z") + "_" + v.VersionId
		if i >= len(lv.Versions) {
			name += ".deleted"
		}
		want[name] = ""
	}
	mt := liveMount(t, m, nil, "s3://"+bucket+"/", "--versions")
	got := files(t, mt.dir)
	if len(got) != len(want) || len(lv.Versions) != 6 || len(lv.DeleteMarkers) != 4 {
		t.Fatalf("--versions shows %d files, want %d (%d versions, %d delete markers): %q", len(got), len(want),
			len(lv.Versions), len(lv.DeleteMarkers), slices.Sorted(maps.Keys(got)))
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Fatalf("--versions lacks %s: %q", name, slices.Sorted(maps.Keys(got)))
		}
	}
	// Each folder of versions holds the bytes of every version, and the
	// delete markers (empty), in time order (the names sort by time).
	for key, bs := range bodies {
		d, base := filepath.Split(key)
		vdir := filepath.Join(mt.dir, d, "."+base+"%25%versions")
		var seen []string
		for _, n := range readDirNames(t, vdir) {
			seen = append(seen, got[filepath.Join(d, "."+base+"%25%versions", n)])
		}
		if !slices.Equal(seen, bs) {
			t.Errorf("%s: versions hold %q, want %q", key, seen, bs)
		}
	}
	if got["b"] != "b3" || got["d"] != "d1" {
		t.Errorf("--versions: current b %q, d %q", got["b"], got["d"])
	}
	xa := xattrsOf(t, filepath.Join(mt.dir, ".a%25%versions", readDirNames(t, filepath.Join(mt.dir, ".a%25%versions"))[0]))
	if xa["version_id"] == "" {
		t.Errorf("a version's attributes lack its version_id: %q", xa)
	}
	// A delete marker: an empty file with the marker's time and id.
	for _, v := range lv.DeleteMarkers {
		if v.Key != "a" {
			continue
		}
		lm, _ := time.Parse(time.RFC3339Nano, v.LastModified)
		p := filepath.Join(mt.dir, ".a%25%versions", lm.UTC().Format("2006-01-02T15-04-05.000Z")+"_"+v.VersionId+".deleted")
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != 0 || !fi.ModTime().Equal(lm) {
			t.Errorf("the delete marker of a: %v, %v (modified %v)", fi, err, lm)
		}
		if xa := xattrsOf(t, p); xa["version_id"] != v.VersionId {
			t.Errorf("the delete marker of a has attributes %q, want version_id %s", xa, v.VersionId)
		}
	}
	mt.stop(syscall.SIGTERM)
}

// TestMountLiveListAll: --list-all serves a walk of the whole tree from
// one paginated LIST of the prefix (no delimiter): the same names and
// sizes as the level-by-level mount, in ceil(keys/page) LISTs.
func TestMountLiveListAll(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "lall")
	src := t.TempDir()
	n := 0
	for i := range 4 {
		for j := range 8 {
			p := filepath.Join(src, fmt.Sprintf("d%d", i), fmt.Sprintf("s%d", j%3), fmt.Sprintf("f%02d", j))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, bytes.Repeat([]byte{'x'}, i*10+j), 0o644)
			n++
		}
	}
	os.WriteFile(filepath.Join(src, "top"), []byte("top"), 0o644)
	n++
	m.aws(t, "s3", "cp", "--recursive", "--quiet", src, "s3://"+bucket+"/")
	p := newProxy(t, m.endpoint)
	levels := liveMount(t, m, p.env(), "s3://"+bucket+"/", "--list-page-size", "7")
	want := walkMount(t, levels.dir)
	byLevel := p.get("ListObjects", bucket)
	levels.stop(syscall.SIGTERM)
	p.reset()
	all := liveMount(t, m, p.env(), "s3://"+bucket+"/", "--list-all", "--list-page-size", "7")
	got := walkMount(t, all.dir)
	// (A folder's mtime is its mount's start.)
	same := func(a, b lsEntry) bool {
		if a.Type == "dir" {
			a.MTime, b.MTime = time.Time{}, time.Time{}
		}
		return a == b
	}
	if !slices.EqualFunc(got, want, same) {
		t.Fatalf("--list-all walks\n%v\nthe level mount\n%v", got, want)
	}
	// One page of the top level, at mount (the check of credentials and
	// bucket), and the flat listing.
	if lists, pages := p.get("ListObjects", bucket), int64((n+6)/7); lists != 1+pages {
		t.Fatalf("a walk with --list-all cost %d LISTs, want 1+%d (%d keys in pages of 7); level by level: %d", lists, pages, n, byLevel)
	}
	t.Logf("walk of %d keys: %d LISTs level by level, %d with --list-all", n, byLevel, p.get("ListObjects", bucket))
	all.stop(syscall.SIGTERM)

	// The listing is kept in the cache folder, readable by its owner
	// only; a mount started again within the TTL lists nothing but the
	// check page, and so does not see an object written since.
	lists, _ := filepath.Glob(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "coffer-live", "*.list"))
	var mine []string
	for _, l := range lists {
		if fi, err := os.Stat(l); err == nil && time.Since(fi.ModTime()) < time.Minute {
			mine = append(mine, l)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("listing file %s has mode %v, want 0600", l, fi.Mode().Perm())
			}
		}
	}
	if len(mine) == 0 {
		t.Fatalf("no listing file kept in the cache folder (%v)", lists)
	}
	os.WriteFile(filepath.Join(src, "late"), []byte("late"), 0o644)
	m.aws(t, "s3", "cp", "--quiet", filepath.Join(src, "late"), "s3://"+bucket+"/late")
	walkWith := func(flags ...string) ([]lsEntry, int64) {
		t.Helper()
		p.reset()
		mt := liveMount(t, m, p.env(), "s3://"+bucket+"/", append([]string{"--list-all", "--list-page-size", "7"}, flags...)...)
		w := walkMount(t, mt.dir)
		mt.stop(syscall.SIGTERM)
		return w, p.get("ListObjects", bucket) - 1 // less the check page
	}
	if again, lists := walkWith("--metadata-ttl", "1h"); lists != 0 || !slices.EqualFunc(again, got, same) {
		t.Fatalf("a mount within the TTL of the kept listing: %d LISTs, walk\n%v\nwant\n%v", lists, again, got)
	}
	hasLate := func(w []lsEntry) bool {
		return slices.ContainsFunc(w, func(e lsEntry) bool { return e.Path == "/late" && e.Size == 4 })
	}
	// --no-disk-cache lists (and keeps nothing); past the TTL a mount
	// lists again and keeps the new listing for the next.
	if w, lists := walkWith("--no-disk-cache", "--metadata-ttl", "1h"); lists != int64((n+7)/7) || !hasLate(w) {
		t.Fatalf("--no-disk-cache: %d LISTs, late object shown: %v", lists, hasLate(w))
	}
	time.Sleep(3 * time.Second) // the kept listing is older than the TTL below
	// (A walk slower than 3 s on a loaded machine lists again: more
	// LISTs, never fewer.)
	if w, lists := walkWith("--metadata-ttl", "3s"); lists < int64((n+7)/7) || !hasLate(w) {
		t.Fatalf("past the TTL: %d LISTs, late object shown: %v", lists, hasLate(w))
	}
	if w, lists := walkWith("--metadata-ttl", "1h"); lists != 0 || !hasLate(w) {
		t.Fatalf("after the listing was refreshed: %d LISTs, late object shown: %v", lists, hasLate(w))
	}
	// forever is until unmount: a new mount lists again.
	if w, lists := walkWith("--metadata-ttl", "forever"); lists != int64((n+7)/7) || !hasLate(w) {
		t.Fatalf("--metadata-ttl forever: %d LISTs, late object shown: %v", lists, hasLate(w))
	}
}

// TestMountLiveArchived: objects in GLACIER that are not restored list
// with their size and class; reading one fails with EREMOTE, and the
// mount logs one line saying how to restore it. (MinIO cannot archive:
// the proxy answers as S3 does, the listing with the class and GETs
// with 403 InvalidObjectState.)
func TestMountLiveArchived(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "lcold")
	putVersion(t, m, bucket, "cold/photo.raw", strings.Repeat("r", 5000))
	p := newProxy(t, m.endpoint)
	p.hook = func(w http.ResponseWriter, r *http.Request, kind string) bool {
		if kind != "GetObject" {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the object's storage class</Message><StorageClass>GLACIER</StorageClass></Error>`)
		return true
	}
	p.rewrite = func(kind string, resp *http.Response) error {
		switch kind {
		case "ListObjects":
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			b = bytes.ReplaceAll(b, []byte("<StorageClass>STANDARD</StorageClass>"), []byte("<StorageClass>GLACIER</StorageClass>"))
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		case "HeadObject":
			resp.Header.Set("X-Amz-Storage-Class", "GLACIER")
		}
		return nil
	}
	mt := liveMount(t, m, p.env(), "s3://"+bucket+"/")
	f := filepath.Join(mt.dir, "cold", "photo.raw")
	if fi, err := os.Stat(f); err != nil || fi.Size() != 5000 {
		t.Fatalf("stat of an archived object: %v, %v", fi, err)
	}
	for range 3 {
		if _, err := os.ReadFile(f); !errors.Is(err, syscall.EREMOTE) {
			t.Fatalf("read of an archived object: %v, want EREMOTE", err)
		}
	}
	if x := xattrsOf(t, f); x["storage_class"] != "GLACIER" {
		t.Fatalf("xattrs of an archived object: %q", x)
	}
	mt.stop(syscall.SIGTERM)
	log := mt.stderr.String()
	if strings.Count(log, "restore-object") != 1 || !strings.Contains(log, "aws s3api restore-object --bucket "+bucket+" --key cold/photo.raw") {
		t.Fatalf("the mount's log should say once how to restore the object:\n%s", log)
	}
}

// TestMountLiveFaults reads a live mount through a proxy that answers
// about 5% of requests with 503 SlowDown, drops 2% of connections, cuts
// 3% of GET bodies short and delays 3% by 300ms: every read succeeds
// and is byte-exact (sequential, and random preads).
func TestMountLiveFaults(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "lfault")
	src := t.TempDir()
	want := map[string][]byte{}
	for i := range 20 {
		b := bytes.Repeat([]byte(fmt.Sprintf("%03d-", i)), 100+i*37)
		want[fmt.Sprintf("small/%02d", i)] = b
	}
	big := make([]byte, 5<<20+333)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	want["big"] = big
	for k, b := range want {
		os.MkdirAll(filepath.Dir(filepath.Join(src, k)), 0o755)
		os.WriteFile(filepath.Join(src, k), b, 0o644)
	}
	m.aws(t, "s3", "cp", "--recursive", "--quiet", src, "s3://"+bucket+"/")
	p := newProxy(t, m.endpoint)
	p.slowDown, p.drop, p.cut, p.slow = 0.05, 0.02, 0.03, 0.03
	mt := liveMount(t, m, p.env(), "s3://"+bucket+"/", "--metadata-ttl", "1s", "--cache-size", "4MiB")
	for round := range 2 {
		for k, b := range want {
			got, err := os.ReadFile(filepath.Join(mt.dir, k))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("round %d: %s: %d bytes, %v (want %d bytes)", round, k, len(got), err, len(b))
			}
		}
	}
	if err := preads(filepath.Join(mt.dir, "big"), big, 7, 60); err != nil {
		t.Fatal(err)
	}
	if p.faults.Load() < 10 {
		t.Fatalf("only %d faults injected: the test proves little (%v)", p.faults.Load(), p)
	}
	t.Logf("%d faults injected; requests: %v", p.faults.Load(), p)
	mt.stop(syscall.SIGTERM)
}

// TestMountLiveListsAheadOnlyForWalks: a plain listing of a folder
// costs its own LIST, none for its folders; a walk lists ahead and still
// lists each folder once.
func TestMountLiveListsAheadOnlyForWalks(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "lswalk")
	src := t.TempDir()
	folders := 1 // top/
	for i := range 6 {
		folders++
		for j := range 3 {
			p := filepath.Join(src, "top", fmt.Sprintf("d%d", i), fmt.Sprintf("s%d", j), "f")
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte("x"), 0o644)
			folders++
		}
	}
	m.aws(t, "s3", "cp", "--recursive", "--quiet", src, "s3://"+bucket+"/")
	p := newProxy(t, m.endpoint)
	var mu sync.Mutex
	var prefixes []string
	p.hook = func(w http.ResponseWriter, r *http.Request, kind string) bool {
		if kind == "ListObjects" && r.URL.Query().Get("delimiter") == "/" {
			mu.Lock()
			prefixes = append(prefixes, r.URL.Query().Get("prefix"))
			mu.Unlock()
		}
		return false
	}
	listed := func() []string {
		time.Sleep(500 * time.Millisecond) // any listing ahead is sent by now
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(prefixes)
		prefixes = prefixes[:0]
		return out
	}
	mt := liveMount(t, m, p.env(), "s3://"+bucket+"/")
	listed()
	ents, err := os.ReadDir(filepath.Join(mt.dir, "top"))
	if err != nil || len(ents) != 6 {
		t.Fatalf("ls top: %d entries, %v", len(ents), err)
	}
	if got := listed(); slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, "top/d") }) {
		t.Fatalf("a plain ls of top/ listed its folders: %q", got)
	}
	if n := len(walkMount(t, mt.dir)); n != folders+18 {
		t.Fatalf("walked %d entries, want %d", n, folders+18)
	}
	got := listed()
	seen := map[string]int{}
	for _, p := range got {
		seen[p]++
		if seen[p] > 1 && p != "" {
			t.Fatalf("a walk listed %q twice (%q)", p, got)
		}
	}
	if !slices.Contains(got, "top/d5/s2/") {
		t.Fatalf("the walk did not list every folder: %q", got)
	}
	mt.stop(syscall.SIGTERM)
}
