package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// seedBucket fills bucket with n small objects in 17 prefixes, one object
// larger than the 16 MiB part size, and objects carrying every header,
// user metadata and tags; it returns the keys of the latter.
func seedBucket(t *testing.T, m *minioServer, bucket string, n int) []string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("dir%02d", i%17), fmt.Sprintf("f%05d.txt", i))
		if err := testtree.WriteFile(p, testtree.Text(uint64(i), 10+i%500)); err != nil {
			t.Fatal(err)
		}
	}
	m.putFiles(t, dir, bucket)
	// The large object with the aws CLI, which uploads it in 8 MiB parts.
	large := filepath.Join(t.TempDir(), "large.bin")
	if err := testtree.WriteFile(large, testtree.RandBytes(20<<20+321)); err != nil {
		t.Fatal(err)
	}
	m.aws(t, "s3", "cp", "--quiet", large, "s3://"+bucket+"/big/large.bin")
	body := filepath.Join(dir, "body")
	os.WriteFile(body, []byte(`{"hello": "world"}`), 0o644)
	rich := []string{"meta/full.json", "meta/utf8 ключ ✓.txt", "meta/gz.js"}
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", rich[0], "--body", body,
		"--content-type", "application/json", "--cache-control", "max-age=3600", "--content-disposition", `attachment; filename="x.json"`,
		"--content-language", "fr-CA", "--expires", "2031-02-03T04:05:06Z",
		"--metadata", "owner=alice,Project=Coffer", "--tagging", "team=storage&class=gold%20tier")
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", rich[1], "--body", body,
		"--content-type", "text/plain; charset=utf-8", "--metadata", "note=plain")
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", rich[2], "--body", body,
		"--content-type", "application/javascript", "--content-encoding", "gzip", "--tagging", "only=one")
	return rich
}

// compareBuckets checks that dst/dstPrefix holds the keys of src with the
// same sizes and, for single-part objects, the same ETags (their MD5), and
// that the large multipart object has the same bytes.
func compareBuckets(t *testing.T, m *minioServer, src, dst, dstPrefix string) {
	t.Helper()
	a, b := m.listObjects(t, src, ""), m.listObjects(t, dst, dstPrefix)
	if len(a) != len(b) {
		t.Fatalf("source has %d objects, restore %d", len(a), len(b))
	}
	for i := range a {
		multipart := bytes.ContainsRune([]byte(a[i].ETag), '-') || bytes.ContainsRune([]byte(b[i].ETag), '-')
		if a[i].Key != b[i].Key || a[i].Size != b[i].Size || (!multipart && a[i].ETag != b[i].ETag) {
			t.Fatalf("object %d: source %+v, restored %+v", i, a[i], b[i])
		}
		if multipart {
			x := filepath.Join(t.TempDir(), "a")
			y := filepath.Join(t.TempDir(), "b")
			cps := [][2]string{{"s3://" + src + "/" + a[i].Key, x}, {"s3://" + dst + "/" + dstPrefix + b[i].Key, y}}
			eachAtOnce(t, len(cps), func(j int) { m.aws(t, "s3", "cp", "--quiet", cps[j][0], cps[j][1]) })
			xb, _ := os.ReadFile(x)
			yb, _ := os.ReadFile(y)
			if !bytes.Equal(xb, yb) || int64(len(xb)) != a[i].Size {
				t.Fatalf("%s: restored bytes differ", a[i].Key)
			}
		}
	}
}

// TestS3RoundTrip backs a bucket of a few thousand objects up into a
// store in another bucket and restores it into a third: every key, size,
// body (ETag) and header is equal as the aws CLI sees them; a second
// backup of the unchanged bucket issues its LIST and no GetObject,
// HeadObject or GetObjectTagging; a third, after two objects changed,
// GETs just those two and keeps their new headers and tags.
func TestS3RoundTrip(t *testing.T) {
	m := needMinio(t)
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	src := m.newBucket(t, "src")
	rich := seedBucket(t, m, src, 2000)
	phase("seeded")

	p := newProxy(t, m.endpoint)
	storeBucket := bucketName("store")
	e := newS3Env(t, m, "s3://"+storeBucket+"/coffer/", p.env()...)
	s1 := e.backup("s3://"+src+"/", "-concurrency", "8")
	if s1.Stats.Files != 2000+1+3 || s1.Partial {
		t.Fatalf("first backup: %+v", s1)
	}
	if n := p.get("GetObject", src); n < int64(s1.Stats.Files) {
		t.Fatalf("first backup issued %d GetObject for %d objects", n, s1.Stats.Files)
	}

	phase("backed up")
	dst := m.newBucket(t, "dst")
	e.ok("restore", "-concurrency", "8", "-to", "s3://"+dst+"/restored/", s1.Short)
	phase("restored")
	compareBuckets(t, m, src, dst, "restored/")
	phase("compared")
	sample := append([]string{}, rich...)
	sample = append(sample, fmt.Sprintf("dir%02d/f%05d.txt", 999%17, 999)) // a plain one
	// The aws CLI is slow to start: ask in parallel.
	eachAtOnce(t, len(sample), func(i int) {
		k := sample[i]
		h1, h2 := m.head(t, src, k), m.head(t, dst, "restored/"+k)
		var t1, t2 string
		if slices.Contains(rich, k) {
			t1, t2 = m.tags(t, src, k), m.tags(t, dst, "restored/"+k)
		}
		if !reflect.DeepEqual(h1, h2) {
			t.Errorf("%s: headers differ:\nsource   %+v\nrestored %+v", k, h1, h2)
		}
		if t1 != t2 {
			t.Errorf("%s: tags differ:\nsource   %s\nrestored %s", k, t1, t2)
		}
	})
	if h := m.head(t, dst, "restored/"+rich[0]); h.Metadata["owner"] != "alice" || h.CacheControl != "max-age=3600" {
		t.Errorf("restored headers lack what was seeded: %+v", h)
	}

	phase("headers compared")
	// Unchanged: the LIST and nothing else per object: no GetObject, no
	// HeadObject, no GetObjectTagging (headers and tags come from the
	// parent snapshot).
	p.reset()
	s2 := e.backup("s3://"+src+"/", "-concurrency", "8")
	gets, heads, tags := p.get("GetObject", src), p.get("HeadObject", src), p.get("GETTagging", src)
	if gets != 0 || heads != 0 || tags != 0 || s2.Stats.Unchanged != s1.Stats.Files || s2.Stats.ReadBytes != 0 {
		t.Fatalf("unchanged re-backup: %d GetObject, %d HeadObject, %d GetObjectTagging on the source, stats %+v\nrequests: %s",
			gets, heads, tags, s2.Stats, p)
	}
	phase("backed up unchanged")
	t.Logf("unchanged re-backup requests: %s", p)

	// Changed objects: one rewritten with new headers and tags, one new.
	// Their headers come from the GET that reads them (no HEAD), and land
	// in the snapshot; the unchanged ones keep theirs from the parent.
	body := filepath.Join(t.TempDir(), "changed")
	os.WriteFile(body, []byte(`{"hello": "again"}`), 0o644)
	m.aws(t, "s3api", "put-object", "--bucket", src, "--key", rich[0], "--body", body,
		"--content-type", "application/vnd.coffer+json", "--cache-control", "no-cache", "--content-language", "de",
		"--metadata", "owner=bob,rev=2", "--tagging", "team=restore&stage=second")
	m.aws(t, "s3api", "put-object", "--bucket", src, "--key", "meta/new.txt", "--body", body,
		"--content-type", "text/x-new", "--metadata", "fresh=yes", "--tagging", "new=1")
	p.reset()
	s3 := e.backup("s3://"+src+"/", "-concurrency", "8")
	gets, heads = p.get("GetObject", src), p.get("HeadObject", src)
	if gets != 2 || heads != 0 || s3.Stats.Unchanged != s1.Stats.Files-1 || s3.Stats.Files != s1.Stats.Files+1 {
		t.Fatalf("backup of 2 changed objects: %d GetObject, %d HeadObject, stats %+v\nrequests: %s", gets, heads, s3.Stats, p)
	}
	phase("backed up changed")
	// The third snapshot holds the new headers of the changed objects and
	// the old headers of the unchanged ones (restore /meta from it).
	dst2 := m.newBucket(t, "dst2")
	e.ok("restore", "-to", "s3://"+dst2+"/", s3.Short+":/meta")
	changed := []string{"meta/new.txt", rich[0], rich[2]}
	eachAtOnce(t, len(changed), func(i int) {
		k := changed[i]
		rel := strings.TrimPrefix(k, "meta/")
		h1, h2 := m.head(t, src, k), m.head(t, dst2, rel)
		t1, t2 := m.tags(t, src, k), m.tags(t, dst2, rel)
		if !reflect.DeepEqual(h1, h2) || t1 != t2 {
			t.Errorf("%s: snapshot after a change:\nsource   %+v %s\nrestored %+v %s", k, h1, t1, h2, t2)
		}
	})
	if h := m.head(t, dst2, "full.json"); h.Metadata["owner"] != "bob" || h.ContentLanguage != "de" {
		t.Errorf("the changed object's new headers are not in the snapshot: %+v", h)
	}
	phase("changed headers compared")
}
