package test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// seedSmall fills bucket with a few small objects, one of them tagged.
func seedSmall(t *testing.T, m *minioServer, bucket string) {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i < 12; i++ {
		testtree.WriteFile(filepath.Join(dir, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d", i)), testtree.Text(uint64(i), 100+i*37))
	}
	m.aws(t, "s3", "cp", "--recursive", "--quiet", dir, "s3://"+bucket+"/")
	m.aws(t, "s3api", "put-object-tagging", "--bucket", bucket, "--key", "d0/f00", "--tagging", "TagSet=[{Key=k,Value=v}]")
}

// assumeRole returns the environment of temporary credentials limited by
// an inline session policy (MinIO's STS AssumeRole, asked with the root
// credentials through the aws CLI).
func (m *minioServer) assumeRole(t *testing.T, policy string) []string {
	t.Helper()
	out := m.aws(t, "sts", "assume-role", "--role-arn", "arn:xxx:xxx:xxx:xxxx", "--role-session-name", "coffer-test",
		"--policy", policy, "--query", "Credentials")
	var c struct{ AccessKeyId, SecretAccessKey, SessionToken string }
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.SessionToken == "" {
		t.Fatalf("assume-role: %v", err)
	}
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyId, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken}
}

func policy(statements ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
}

func allow(resource string, actions ...string) string {
	return fmt.Sprintf(`{"Effect":"Allow","Action":["%s"],"Resource":["%s"]}`, strings.Join(actions, `","`), resource)
}

// with returns a copy of e whose environment has extra added (later
// entries win).
func (e *env) with(extra ...string) *env {
	c := *e
	c.extra = append(append([]string{}, e.extra...), extra...)
	return &c
}

// storeObjects lists the store's keys, to show what a failed command left.
func storeObjects(t *testing.T, m *minioServer, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for _, o := range m.listObjects(t, bucket, prefix) {
		keys = append(keys, o.Key)
	}
	return keys
}

// TestS3Failures: wrong keys, missing buckets and credentials limited to
// reading each fail with exit 1 and a message naming the cause (the IAM
// action and the ARN for a denial); nothing they leave behind trips the
// next backup, which with the right credentials succeeds and checks.
func TestS3Failures(t *testing.T) {
	m := needMinio(t)
	src := m.newBucket(t, "src")
	seedSmall(t, m, src)
	storeBucket := bucketName("store")
	e := newS3Env(t, m, "s3://"+storeBucket+"/c/")
	first := e.backup("s3://" + src + "/")
	before := storeObjects(t, m, storeBucket, "c/")

	// Wrong secret: for the store, for a source, for a destination.
	bad := e.with("AWS_SECRET_ACCESS_KEY=wrong")
	refused := []string{"the server refused the credentials", "SignatureDoesNotMatch"}
	bad.fail(1, append(refused, "arn:aws:s3:::"+storeBucket+"/c/config"), "ls")
	bad.fail(1, refused, "backup", "s3://"+src+"/")
	local := newS3Env(t, m, filepath.Join(t.TempDir(), "store"))
	local.with("AWS_SECRET_ACCESS_KEY=wrong").fail(1, append(refused, "s3:ListBucket on arn:aws:s3:::"+src), "backup", "s3://"+src+"/")
	dst := m.newBucket(t, "dst")
	e.ok("restore", "-to", filepath.Join(t.TempDir(), "r"), "latest") // the store itself is fine
	local.backup("s3://" + src + "/")
	local.with("AWS_SECRET_ACCESS_KEY=wrong").fail(1, refused, "restore", "-to", "s3://"+dst+"/", "latest")

	// Missing buckets: as a source, as a store, as a destination.
	nope := bucketName("nope")
	e.fail(1, []string{"bucket " + nope + " does not exist", "no snapshot was written"}, "backup", "s3://"+nope+"/")
	missing := &env{t: t, store: "s3://" + nope + "/c/", pass: e.pass, extra: e.extra}
	missing.fail(1, []string{"bucket " + nope + " does not exist"}, "ls")
	e.fail(1, []string{"bucket " + nope + " does not exist"}, "restore", "-to", "s3://"+nope+"/x/", "latest")

	// Read-only credentials (GetObject, ListBucket): every write names
	// the action refused and its ARN.
	ro := m.assumeRole(t, policy(allow("arn:aws:s3:::*", "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation")))
	e.with(ro...).fail(1, []string{"access denied: s3:PutObject on arn:aws:s3:::" + storeBucket + "/c/", "docs/S3.md",
		"no snapshot was written"}, "backup", "s3://"+src+"/")
	e.with(ro...).ok("ls")
	(&env{t: t, store: "s3://" + storeBucket + "/ro/", pass: e.pass, extra: append(append([]string{}, e.extra...), ro...)}).
		fail(1, []string{"access denied: s3:PutObject on arn:aws:s3:::" + storeBucket + "/ro/config"}, "create")
	newBucket := bucketName("new")
	(&env{t: t, store: "s3://" + newBucket + "/", pass: e.pass, extra: append(append([]string{}, e.extra...), ro...)}).
		fail(1, []string{"access denied: s3:CreateBucket on arn:aws:s3:::" + newBucket}, "create")
	e.with(ro...).fail(1, []string{"access denied: s3:PutObject on arn:aws:s3:::" + dst + "/"}, "restore", "-to", "s3://"+dst+"/", "latest")
	// Reading a bucket needs no tagging permission: a notice, not a failure.
	fresh := newS3Env(t, m, filepath.Join(t.TempDir(), "store"))
	r := fresh.with(ro...).ok("backup", "s3://"+src+"/")
	if !strings.Contains(r.stderr, "object tags are not backed up") || !strings.Contains(r.stderr, "s3:GetObjectTagging") {
		t.Errorf("backup without s3:GetObjectTagging: %s", r)
	}

	// Credentials that may write packs (and the backup's marker under
	// locks/) and nothing else: the backup stops at the index, after its
	// packs are up.
	storeARN := "arn:aws:s3:::" + storeBucket + "/c/"
	packsOnly := m.assumeRole(t, policy(allow("arn:aws:s3:::*", "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"),
		allow(storeARN+store.Prefix(store.KindLock)+"*", "s3:PutObject", "s3:DeleteObject"),
		allow(storeARN+store.Prefix(store.KindDataPack)+"*", "s3:PutObject"),
		allow(storeARN+store.Prefix(store.KindTreePack)+"*", "s3:PutObject")))
	m.aws(t, "s3api", "put-object", "--bucket", src, "--key", "d9/new", "--body", "/etc/hostname")
	e.with(packsOnly...).fail(1, []string{"access denied: s3:PutObject on " + storeARN + store.Prefix(store.KindIndex)}, "backup", "s3://"+src+"/")
	after := storeObjects(t, m, storeBucket, "c/")
	if len(after) <= len(before) {
		t.Fatalf("the packs-only backup wrote no packs:\n%v", after)
	}
	for _, k := range after {
		if strings.HasPrefix(k, store.Prefix(store.KindSnapshot)) && !contains(before, k) {
			t.Fatalf("a failed backup wrote a snapshot: %s", k)
		}
	}
	if out := m.aws(t, "s3api", "list-multipart-uploads", "--bucket", storeBucket, "--query", "Uploads"); strings.TrimSpace(out) != "null" {
		t.Errorf("failed commands left multipart uploads: %s", out)
	}

	// The right credentials again: backup, check, restore all succeed.
	s := e.backup("s3://" + src + "/")
	if s.Stats.Files != first.Stats.Files+1 || s.Partial {
		t.Fatalf("backup after the failures: %+v", s)
	}
	e.ok("check")
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots, want 2 (failed backups wrote none)", n)
	}
	e.ok("restore", "-to", "s3://"+dst+"/", "latest")
	compareBuckets(t, m, src, dst, "")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
