package main

import (
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/config"
	"github.com/coffer-backup/coffer/s3io"
)

func clearAWSEnv(t *testing.T) {
	for _, v := range append(append(append([]string{}, envCredentials...), envRegion...), envEndpoint...) {
		t.Setenv(v, "")
	}
}

// An S3 entry becomes the options s3io sees; the environment overrides
// the entry, key group by key group.
func TestS3EntryLocation(t *testing.T) {
	e := config.Entry{
		"location": "s3://bucket/pre", "access_key": "AKIA1", "secret_access_key": "s3cret",
		"region": "eu-west-1", "endpoint": "https://minio:9000", "use_tls": "false",
		"use_path_style": "true", "storage_class": "STANDARD_IA", "timeout": "5s",
	}
	parse := func() s3io.Options {
		t.Helper()
		loc, err := s3EntryLocation(e)
		if err != nil {
			t.Fatal(err)
		}
		o, err := s3io.ParseLocation(loc)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}

	clearAWSEnv(t)
	t.Setenv(s3io.TimeoutEnv, "")
	o := parse()
	if o.Bucket != "bucket" || o.Prefix != "pre/" || o.AccessKey != "AKIA1" || o.SecretKey != "s3cret" ||
		o.Region != "eu-west-1" || o.Endpoint != "http://minio:9000" || o.UsePathStyle == nil || !*o.UsePathStyle ||
		o.StorageClass != "STANDARD_IA" || o.Timeout != 5*time.Second {
		t.Fatalf("options: %+v", o)
	}
	if o.URI() != "s3://bucket/pre/" {
		t.Fatalf("URI %q", o.URI())
	}

	t.Setenv("AWS_PROFILE", "other")
	t.Setenv("AWS_REGION", "us-west-2")
	t.Setenv("AWS_ENDPOINT_URL", "http://elsewhere:1")
	t.Setenv(s3io.TimeoutEnv, "9s")
	o = parse()
	if o.AccessKey != "" || o.SecretKey != "" || o.Profile != "" || o.Region != "" || o.Timeout != 0 {
		t.Fatalf("the environment did not override the entry: %+v", o)
	}
	if strings.Contains(o.Endpoint, "minio") {
		t.Fatalf("entry endpoint used despite AWS_ENDPOINT_URL: %q", o.Endpoint)
	}
}

// A location's own query survives, and a bad one fails without quoting
// the secrets.
func TestS3EntryLocationQueryAndSecrets(t *testing.T) {
	clearAWSEnv(t)
	e := config.Entry{"location": "s3://b/p?sse=AES256", "access_key": "AKIA1", "secret_access_key": "s3cret"}
	loc, err := s3EntryLocation(e)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := s3io.ParseLocation(loc); o.SSE != "AES256" || o.AccessKey != "AKIA1" {
		t.Fatalf("options %+v", o)
	}
	e["location"] = "s3://b/p?sse=bogus"
	_, err = s3EntryLocation(e)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v", err)
	}
}
