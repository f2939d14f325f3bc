package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestS3NamedEntries: a store, a source and a destination in S3 given
// only as configuration entries (endpoint, keys, path style, passphrase
// command): @names create, back up and restore against MinIO with no AWS
// variable in the environment, and the aws CLI finds every object of the
// source, byte for byte, in the destination.
func TestS3NamedEntries(t *testing.T) {
	m := needMinio(t)
	c := newCLIEnv(t)
	src := m.newBucket(t, "named-src")
	dst := m.newBucket(t, "named-dst")
	store := bucketName("named-store") // create makes it
	dir := t.TempDir()
	for _, k := range []string{"a.txt", "docs/b.txt", "docs/deep/c.bin"} {
		p := filepath.Join(dir, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("named entry "+k), 0o644)
		m.aws(t, "s3api", "put-object", "--bucket", src, "--key", k, "--body", p)
	}
	creds := []string{"endpoint=" + m.endpoint, "access_key=" + m.user, "secret_access_key=" + m.pass,
		"use_path_style=true", "region=us-east-1"}
	c.must(nil, append([]string{"config", "store", "create", "s3store", "location=s3://" + store + "/coffer",
		"passphrase_cmd=echo named-pass"}, creds...)...)
	c.must(nil, append([]string{"config", "source", "create", "bucket", "location=s3://" + src + "/"}, creds...)...)
	c.must(nil, append([]string{"config", "destination", "create", "back", "location=s3://" + dst + "/restored/"}, creds...)...)
	if show := c.must(nil, "config", "store", "show", "s3store").stdout; strings.Contains(show, m.pass) {
		t.Fatalf("config show prints the secret key:\n%s", show)
	}

	// No AWS_* or COFFER_PASSPHRASE: everything comes from the entries.
	c.must(nil, "at", "@s3store", "create")
	out := c.must(nil, "at", "@s3store", "backup", "@bucket")
	if !strings.Contains(out.stdout, "s3://"+src) {
		t.Fatalf("backup summary does not name the source:\n%s", out)
	}
	c.must(nil, "at", "@s3store", "restore", "-to", "@back", "latest")

	want := m.listObjects(t, src, "")
	got := m.listObjects(t, dst, "restored/")
	if len(got) != len(want) {
		t.Fatalf("restored %d objects, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].ETag != want[i].ETag || got[i].Size != want[i].Size {
			t.Fatalf("object %d: restored %+v, source %+v", i, got[i], want[i])
		}
	}
	if ls := c.must(nil, "at", "@s3store", "ls").stdout; !strings.Contains(ls, "s3://"+src) {
		t.Fatalf("ls:\n%s", ls)
	}
}
