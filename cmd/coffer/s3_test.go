package main

import (
	"bytes"
	"errors"
	"flag"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/s3io"
)

func TestS3Options(t *testing.T) {
	o, err := s3Options("", map[string]string{
		"type": "s3", "location": "s3://kloset/prod?region=us-east-2", "region": "eu-west-3",
		"access_key": "AK", "secret_access_key": "SK", "session_token": "ST", "profile": "p",
		"endpoint": "minio.lan:9000", "use_path_style": "true", "use_tls": "false",
		"storage_class": "deep_archive", "sse": "aws:kms", "sse_kms_key_id": "k",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != "kloset" || o.Prefix != "prod/" || o.Region != "eu-west-3" || o.AccessKey != "AK" || o.SecretKey != "SK" ||
		o.SessionToken != "ST" || o.Profile != "p" || o.Endpoint != "minio.lan:9000" || o.UsePathStyle == nil || !*o.UsePathStyle ||
		o.UseTLS == nil || *o.UseTLS || o.StorageClass != "DEEP_ARCHIVE" || o.SSE != "aws:kms" || o.SSEKMSKeyID != "k" {
		t.Fatalf("%+v", o)
	}
	if o, err := s3Options("s3://b/x", map[string]string{"uri": "s3://other/"}); err != nil || o.Bucket != "b" {
		t.Fatalf("an explicit location loses to the entry's: %+v %v", o, err)
	}
	for _, kv := range []map[string]string{
		{"type": "fs", "location": "s3://b/"},
		{"location": "/srv"},
		{"location": "s3://b/", "storage_class": "COLD"},
		{"location": "s3://b/", "nope": "1"},
	} {
		var ue *usageError
		if _, err := s3Options("", kv); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", kv, err)
		}
	}
}

func TestConcurrencyFor(t *testing.T) {
	ctx := func(args ...string) *cli.Context {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.Int("concurrency", 2, "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cli.NewContext(cli.NewApp(), fs, nil)
	}
	if n := concurrencyFor(ctx(), "/srv", "s3://b/"); n != s3io.DefaultConcurrency {
		t.Errorf("default with S3: %d", n)
	}
	if n := concurrencyFor(ctx(), "/srv", "/backups"); n != 2 {
		t.Errorf("default without S3: %d", n)
	}
	if n := concurrencyFor(ctx("-concurrency", "3"), "s3://b/"); n != 3 {
		t.Errorf("given: %d", n)
	}
}

// What the AWS SDK logs is a -v note, like coffer's own. A backup from
// gofakes3, which sends no checksums where coffer asks for them, makes
// the SDK log "Response has no supported checksum" (MinIO does the same
// for objects written without one).
func TestSDKLogIsAVerboseNote(t *testing.T) {
	be := s3mem.New()
	if err := be.CreateBucket("src"); err != nil {
		t.Fatal(err)
	}
	body := []byte("some bytes")
	if _, err := be.PutObject("src", "a", map[string]string{}, bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	defer srv.Close()
	dir := t.TempDir()
	for k, v := range map[string]string{"XDG_CONFIG_HOME": dir, "COFFER_CONFIG": "", "COFFER_STORE": "", "COFFER_PASSPHRASE": "x",
		"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": srv.URL,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"} {
		t.Setenv(k, v)
	}
	const note = "coffer: aws sdk: Response has no supported checksum"
	for _, v := range []bool{false, true} {
		// A new store each time: a backup reads only what changed since
		// the last one.
		store := filepath.Join(t.TempDir(), "store")
		if code, stderr := runCoffer(t, "at", store, "create", "--kdf-memory", "1024", "--kdf-time", "1"); code != exitOK {
			t.Fatalf("create: exit %d: %s", code, stderr)
		}
		verboseMu.Lock()
		verboseSaid = map[string]bool{} // say it again, whoever said it before
		verboseMu.Unlock()
		args := []string{"at", store, "backup", "s3://src/"}
		if v {
			args = append([]string{"-v"}, args...)
		}
		code, stderr := runCoffer(t, args...)
		if code != exitOK {
			t.Fatalf("coffer %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		if strings.Contains(stderr, note) != v {
			t.Errorf("coffer %s: stderr %q; want %q there only with -v", strings.Join(args, " "), stderr, note)
		}
	}
}
