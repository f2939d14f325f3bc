package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshotRefs: a reference that cannot name a snapshot is a usage
// error like a missing argument (exit 2); one that names none is a
// failure (exit 1); "latest" is accepted in any case.
func TestSnapshotRefs(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.backup(src)
	e.fail(2, []string{`not a snapshot id (hex digits) or "latest"`}, "ls", "xyz")
	e.fail(2, nil, "cat", "latest")
	e.fail(1, []string{"no such snapshot"}, "ls", "abcdef12")
	if got := e.ok("cat", "LATEST:/a").stdout; got != "hi" {
		t.Fatalf("cat LATEST:/a = %q", got)
	}
	e.ok("ls", "Latest:/")
}

// TestQuietCreateOfBucket: -q prints nothing but errors, not even the
// note that create made the store's bucket; without -q the note is there.
func TestQuietCreateOfBucket(t *testing.T) {
	m := needMinio(t)
	e := &env{t: t, store: "s3://" + bucketName("quiet") + "/p", pass: "pw", extra: m.awsEnv()}
	if r := e.ok("-q", "create", "--kdf-memory", "1024", "--kdf-time", "1"); r.stdout+r.stderr != "" {
		t.Fatalf("create -q printed %q", r.stdout+r.stderr)
	}
	e2 := &env{t: t, store: "s3://" + bucketName("loud") + "/p", pass: "pw", extra: m.awsEnv()}
	if r := e2.ok("create", "--kdf-memory", "1024", "--kdf-time", "1"); !strings.Contains(r.stderr, "created bucket") {
		t.Fatalf("create without -q: %s", r)
	}
}

// TestVerboseSaysWhereS3SettingsCameFrom: -v names where the endpoint and
// the credentials came from, and never the secret itself.
func TestVerboseSaysWhereS3SettingsCameFrom(t *testing.T) {
	m := needMinio(t)
	e := &env{t: t, store: "s3://" + bucketName("verbose") + "/p", pass: "pw", extra: m.awsEnv()}
	r := e.ok("-v", "create", "--kdf-memory", "1024", "--kdf-time", "1")
	for _, want := range []string{"(from AWS_ENDPOINT_URL)", "credentials from AWS_ACCESS_KEY_ID"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("-v lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stdout+r.stderr, m.pass) {
		t.Fatalf("-v printed the secret key:\n%s", r.stderr)
	}
}
