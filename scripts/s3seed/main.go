// Command s3seed fills a bucket with many small objects fast, or lists one,
// for scripts/bench-s3. It is a benchmark helper, not part of coffer: it
// talks to aws-sdk-go-v2 directly (coffer itself does so only in s3io).
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
// unchanged re-backup of the bucket is compared with.
// Credentials and region come from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
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
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail(err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	cl := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if *endpoint != "" {
			o.BaseEndpoint = aws.String(*endpoint)
		}
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if *list {
		listAll(ctx, cl, *bucket)
		return
	}
	if *dir != "" {
		uploadDir(ctx, cl, *bucket, *dir, *jobs)
		return
	}
	seedBucket(ctx, cl, *bucket, *n, *jobs, *seed)
}

func makeBucket(ctx context.Context, cl *s3.Client, bucket string) {
	_, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		fail(err)
	}
}

func uploadDir(ctx context.Context, cl *s3.Client, bucket, dir string, jobs int) {
	makeBucket(ctx, cl, bucket)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		fail(err)
	}
	start := time.Now()
	var next, total atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range jobs {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return
				}
				err := func() error {
					f, err := os.Open(files[i])
					if err != nil {
						return err
					}
					defer f.Close()
					st, err := f.Stat()
					if err != nil {
						return err
					}
					rel, _ := filepath.Rel(dir, files[i])
					_, err = cl.PutObject(ctx, &s3.PutObjectInput{
						Bucket:        aws.String(bucket),
						Key:           aws.String(filepath.ToSlash(rel)),
						Body:          f,
						ContentLength: aws.Int64(st.Size()),
					})
					total.Add(st.Size())
					return err
				}()
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("put %s: %w", files[i], err) })
					next.Store(int64(len(files)))
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		fail(firstErr)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "s3seed: %d files, %d bytes into %s in %.1f s\n", len(files), total.Load(), bucket, el)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "s3seed:", err)
	os.Exit(1)
}

func listAll(ctx context.Context, cl *s3.Client, bucket string) {
	var keys, bytes int64
	p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			fail(err)
		}
		for _, o := range page.Contents {
			keys++
			bytes += aws.ToInt64(o.Size)
		}
	}
	fmt.Printf("%d keys, %d bytes\n", keys, bytes)
}

func seedBucket(ctx context.Context, cl *s3.Client, bucket string, n, jobs int, seed uint64) {
	makeBucket(ctx, cl, bucket)
	// One random pool; each object is a slice of it at a per-key offset.
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	start := time.Now()
	var next, total atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range jobs {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				size := r.IntN(4097)
				off := r.IntN(len(pool) - size)
				key := fmt.Sprintf("d%03d/f%07d", i/1000, i)
				_, err := cl.PutObject(ctx, &s3.PutObjectInput{
					Bucket:        aws.String(bucket),
					Key:           aws.String(key),
					Body:          bytes.NewReader(pool[off : off+size]),
					ContentLength: aws.Int64(int64(size)),
				})
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("put %s: %w", key, err) })
					next.Store(int64(n))
					return
				}
				total.Add(int64(size))
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		fail(firstErr)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "s3seed: %d objects, %d bytes into %s in %.1f s (%.0f PUT/s)\n", n, total.Load(), bucket, el, float64(n)/el)
}
