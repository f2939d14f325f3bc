package test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestS3Faults runs a backup and restores through a proxy that answers
// about 5% of requests with 503 SlowDown, drops 2% of connections without
// an answer, cuts 3% of GetObject bodies short and delays 3% by 300ms: the
// backup, a restore into a bucket and a restore into a folder complete
// and are byte-exact (compared with the aws CLI, straight to MinIO), and
// the store checks.
func TestS3Faults(t *testing.T) {
	m := needMinio(t)
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	src := m.newBucket(t, "src")
	seedBucket(t, m, src, 300) // 300 small objects, one of 20 MiB, three with every header
	phase("seeded")

	p := newProxy(t, m.endpoint)
	p.slowDown, p.drop, p.cut, p.slow = 0.05, 0.02, 0.03, 0.03
	e := newS3Env(t, m, "s3://"+bucketName("store")+"/faulty/", p.env()...)
	s := e.backup("s3://"+src+"/", "-concurrency", "8")
	if s.Stats.Files != 300+1+3 || s.Partial {
		t.Fatalf("backup through faults: %+v", s)
	}
	phase("backed up")
	dst := m.newBucket(t, "dst")
	e.ok("restore", "-concurrency", "8", "-to", "s3://"+dst+"/r/", "latest")
	phase("restored to a bucket")
	dir := filepath.Join(t.TempDir(), "r")
	e.ok("restore", "-concurrency", "8", "-to", dir, "latest")
	phase("restored to a folder")
	e.ok("check")
	phase("checked")
	if p.faults.Load() < 20 {
		t.Fatalf("only %d faults injected: the test proves little", p.faults.Load())
	}
	t.Logf("%d faults injected; requests: %s", p.faults.Load(), p)

	p.slowDown, p.drop, p.cut, p.slow = 0, 0, 0, 0
	compareBuckets(t, m, src, dst, "r/")
	// The folder: every object's bytes, fetched with the aws CLI.
	whole := t.TempDir()
	m.aws(t, "s3", "cp", "--recursive", "--quiet", "s3://"+src+"/", whole)
	n := 0
	filepath.Walk(whole, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(whole, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: folder restore differs (%v)", rel, err)
		}
		n++
		return nil
	})
	if n != 304 {
		t.Fatalf("compared %d objects, want 304", n)
	}
	phase("compared")
}
