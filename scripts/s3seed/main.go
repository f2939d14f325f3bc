// Command s3seed fills a bucket with many small objects fast, or lists one,
// for scripts/bench-s3. It is a benchmark helper, not part of coffer. It
// reaches S3 through s3io (s3io.NewClient, s3io.PutObjects,
// s3io.ListBaseline), since only s3io imports the AWS SDK.
//
// Usage:
//
//	go run ./scripts/s3seed -endpoint URL -bucket B [-n 100000] [-j 64] [-seed 1]
//	go run ./scripts/s3seed -endpoint URL -bucket B -list
//	go run ./scripts/s3seed -endpoint URL -bucket B -dir DIR [-j 64]
//
// Seeding creates the bucket if it is missing and PUTs n objects of 0..4 KiB
// of random bytes, keys dNNN/fNNNNNNN (1,000 objects per prefix), j at once.
// -dir uploads the regular files below DIR instead, keys their paths
// relative to DIR, one PUT each (no multipart), j at once.
// -list runs a bare paginated ListObjectsV2 (1,000 keys a page) of the whole
// bucket and prints the number of keys and their total size: the floor an
// unchanged re-backup of the bucket is compared with (s3io.ListBaseline).
// Credentials and region come from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/coffer-backup/coffer/s3io"
)

func main() {
	endpoint := flag.String("endpoint", os.Getenv("AWS_ENDPOINT_URL"), "S3 endpoint URL (path-style addressing)")
	bucket := flag.String("bucket", "", "bucket")
	n := flag.Int("n", 100000, "objects to PUT")
	jobs := flag.Int("j", 64, "concurrent PUTs")
	seed := flag.Uint64("seed", 1, "random seed of the contents and sizes")
	list := flag.Bool("list", false, "list the bucket (paginated ListObjectsV2) instead of seeding it")
	dir := flag.String("dir", "", "upload the files below this folder instead of generating objects")
	flag.Parse()
	if *bucket == "" {
		fmt.Fprintln(os.Stderr, "s3seed: -bucket is required")
		os.Exit(2)
	}
	ctx := context.Background()
	pathStyle := true
	cl, err := s3io.NewClient(ctx, s3io.Options{Bucket: *bucket, Endpoint: *endpoint, UsePathStyle: &pathStyle})
	if err != nil {
		fail(err)
	}
	if *list {
		keys, size, err := s3io.ListBaseline(ctx, cl)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%d keys, %d bytes\n", keys, size)
		return
	}
	if _, err := s3io.EnsureBucket(ctx, cl); err != nil {
		fail(err)
	}
	if *dir != "" {
		uploadDir(ctx, cl, *bucket, *dir, *jobs)
		return
	}
	seedBucket(ctx, cl, *bucket, *n, *jobs, *seed)
}

func uploadDir(ctx context.Context, cl *s3io.Client, bucket, dir string, jobs int) {
	start := time.Now()
	n, total, err := s3io.PutDir(ctx, cl, dir, jobs)
	if err != nil {
		fail(err)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "s3seed: %d files, %d bytes into %s in %.1f s\n", n, total, bucket, el)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "s3seed:", err)
	os.Exit(1)
}

func seedBucket(ctx context.Context, cl *s3io.Client, bucket string, n, jobs int, seed uint64) {
	// One random pool; each object is a slice of it at a per-key offset.
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	start := time.Now()
	total, err := s3io.PutObjects(ctx, cl, n, jobs, func(i int) (string, io.Reader, int64, error) {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		size := r.IntN(4097)
		off := r.IntN(len(pool) - size)
		return fmt.Sprintf("d%03d/f%07d", i/1000, i), bytes.NewReader(pool[off : off+size]), int64(size), nil
	})
	if err != nil {
		fail(err)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "s3seed: %d objects, %d bytes into %s in %.1f s (%.0f PUT/s)\n", n, total, bucket, el, float64(n)/el)
}
