package test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// comboTree writes a small tree of regular files: empty to 3 MiB, nested,
// a non-ASCII name; it returns the files' paths (slash-separated) and
// bytes.
func comboTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"empty":                  {},
		"top.txt":                testtree.Text(1, 1234),
		"a/b/c/deep.txt":         testtree.Text(2, 40000),
		"a/random.bin":           testtree.RandBytes(3<<20 + 17),
		"ünï/日本語 name.txt":       testtree.Text(3, 777),
		"many/f0":                testtree.Text(4, 10),
		"many/f1":                testtree.Text(5, 11),
		"many/sub/f2":            testtree.Text(6, 12),
		"a/b/sibling with space": testtree.Text(7, 99),
	}
	for p, b := range files {
		if err := testtree.WriteFile(filepath.Join(dir, p), b); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// sameFolder checks that dir holds exactly want.
func sameFolder(t *testing.T, what, dir string, want map[string][]byte) {
	t.Helper()
	got := map[string][]byte{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		return nil
	})
	if len(got) != len(want) {
		t.Errorf("%s: %d files, want %d", what, len(got), len(want))
	}
	for p, b := range want {
		if !bytes.Equal(got[p], b) {
			t.Errorf("%s: %s: %d bytes differ from the source's %d", what, p, len(got[p]), len(b))
		}
	}
}

// sameBucket checks with the aws CLI that bucket/prefix holds exactly
// want: keys, sizes and ETags (the MD5 of single-part objects).
func sameBucket(t *testing.T, m *minioServer, what, bucket, prefix string, want map[string][]byte) {
	t.Helper()
	got := m.listObjects(t, bucket, prefix)
	if len(got) != len(want) {
		t.Errorf("%s: %d objects, want %d: %v", what, len(got), len(want), got)
	}
	for _, o := range got {
		b, ok := want[o.Key]
		switch {
		case !ok:
			t.Errorf("%s: unexpected key %q", what, o.Key)
		case o.Size != int64(len(b)):
			t.Errorf("%s: %s: %d bytes, want %d", what, o.Key, o.Size, len(b))
		case !strings.Contains(o.ETag, "-") && strings.Trim(o.ETag, `"`) != md5hex(b):
			t.Errorf("%s: %s: ETag %s, want the MD5 %s", what, o.Key, o.ETag, md5hex(b))
		}
	}
}

// TestS3Combinations: a folder and a bucket, each backed up into a folder
// store and a bucket store, each snapshot restored into a folder and a
// bucket: contents equal everywhere, and objects' headers and user
// metadata equal between the source bucket and the restored ones.
func TestS3Combinations(t *testing.T) {
	m := needMinio(t)
	folder := filepath.Join(t.TempDir(), "src")
	files := comboTree(t, folder)
	bucket := m.newBucket(t, "src")
	m.aws(t, "s3", "cp", "--recursive", "--quiet", folder, "s3://"+bucket+"/")
	rich := []string{"meta/headers.json", "meta/plain"}
	body := filepath.Join(t.TempDir(), "body")
	os.WriteFile(body, []byte(`{"rich": true}`), 0o644)
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", rich[0], "--body", body,
		"--content-type", "application/json", "--cache-control", "no-store", "--content-disposition", "inline",
		"--metadata", "origin=combo,Case=Mixed")
	m.aws(t, "s3api", "put-object", "--bucket", bucket, "--key", rich[1], "--body", body, "--content-encoding", "identity")
	bucketFiles := map[string][]byte{}
	for k, v := range files {
		bucketFiles[k] = v
	}
	for _, k := range rich {
		bucketFiles[k] = []byte(`{"rich": true}`)
	}

	var headChecks []func() // run in parallel at the end: the aws CLI is slow to start
	for _, store := range []string{"folder", "bucket"} {
		loc := filepath.Join(t.TempDir(), "store")
		if store == "bucket" {
			loc = "s3://" + bucketName("store") + "/s/"
		}
		e := newS3Env(t, m, loc)
		for _, source := range []string{"folder", "bucket"} {
			what := source + " → " + store + " store"
			srcLoc, want := folder, files
			if source == "bucket" {
				srcLoc, want = "s3://"+bucket+"/", bucketFiles
			}
			s := e.backup(srcLoc)
			if s.Stats.Files != uint64(len(want)) || s.Partial {
				t.Fatalf("%s: backup: %+v", what, s)
			}
			dir := filepath.Join(t.TempDir(), "r")
			e.ok("restore", "-to", dir, s.Short)
			sameFolder(t, what+" → folder", dir, want)
			dst := m.newBucket(t, "dst")
			e.ok("restore", "-to", "s3://"+dst+"/into/", s.Short)
			sameBucket(t, m, what+" → bucket", dst, "into/", want)
			if source == "bucket" {
				for _, k := range rich {
					headChecks = append(headChecks, func() {
						h1, h2 := m.head(t, bucket, k), m.head(t, dst, "into/"+k)
						if !reflect.DeepEqual(h1, h2) {
							t.Errorf("%s → bucket: %s: headers differ:\nsource   %+v\nrestored %+v", what, k, h1, h2)
						}
					})
				}
			}
		}
		e.ok("check")
	}
	var wg sync.WaitGroup
	for _, f := range headChecks {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	wg.Wait()
	if h := m.head(t, bucket, rich[0]); h.Metadata["origin"] != "combo" || h.CacheControl != "no-store" {
		t.Fatalf("the seeded headers are not there to compare: %+v", h)
	}
}
