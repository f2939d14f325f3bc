package main

import (
	"errors"
	"flag"
	"testing"

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
