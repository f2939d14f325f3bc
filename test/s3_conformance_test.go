package test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/storetest"
	"github.com/coffer-backup/coffer/s3io"
)

// TestS3StoreConformance holds the S3 store to the Storage conformance
// suite on a real MinIO: real multipart uploads, real listing pages and
// real If-Match / If-None-Match, where gofakes3 (s3io's own run of the
// suite) is an imitation. Each case gets its own prefix in one bucket.
func TestS3StoreConformance(t *testing.T) {
	m := needMinio(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	bucket := bucketName("conformance")
	var seq atomic.Int64
	client := func(t *testing.T, prefix string) *s3io.Client { return m.client(t, bucket+"/"+prefix) }
	if _, err := s3io.EnsureBucket(t.Context(), client(t, "")); err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) store.Storage {
		return s3io.NewStorage(client(t, fmt.Sprintf("case%d", seq.Add(1))))
	})
}
