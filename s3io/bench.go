package s3io

// Helpers for scripts/s3seed, the bucket seeder and lister of
// scripts/bench-s3, and for the tests' seeding of buckets. They live here
// because only s3io imports the AWS SDK; coffer itself does not use them.

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// PutObjects PUTs n objects below c's prefix, jobs at once, one plain
// PutObject each (no multipart, no storage class or encryption): object
// i's key, body and size come from object(i), and a body that is an
// io.Closer is closed after its PUT. The body should be an io.Seeker
// (a file, a bytes.Reader) so that a retried PUT can send it again. The
// first failure stops the rest; PutObjects returns the bytes of the
// objects written and that failure.
func PutObjects(ctx context.Context, c *Client, n, jobs int,
	object func(i int) (key string, body io.Reader, size int64, err error)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next, written atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range max(jobs, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				size, err := c.putSeed(ctx, i, object)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				written.Add(size)
			}
		})
	}
	wg.Wait()
	return written.Load(), first
}

// PutDir PUTs the regular files below dir with PutObjects, jobs at
// once, each keyed by its slash path relative to dir; it returns the
// number of files and their bytes.
func PutDir(ctx context.Context, c *Client, dir string, jobs int) (files int, bytes int64, err error) {
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	bytes, err = PutObjects(ctx, c, len(paths), jobs, func(i int) (string, io.Reader, int64, error) {
		f, err := os.Open(paths[i])
		if err != nil {
			return "", nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return "", nil, 0, err
		}
		rel, _ := filepath.Rel(dir, paths[i])
		return filepath.ToSlash(rel), f, st.Size(), nil
	})
	return len(paths), bytes, err
}

func (c *Client) putSeed(ctx context.Context, i int,
	object func(i int) (string, io.Reader, int64, error)) (int64, error) {
	name, body, size, err := object(i)
	if err != nil {
		return 0, err
	}
	if cl, ok := body.(io.Closer); ok {
		defer cl.Close()
	}
	key := c.key(name)
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(c.opt.Bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		return 0, classify(err, "put", "s3:PutObject", c.opt.Bucket, key)
	}
	return size, nil
}

// ListBaseline is the bare-SDK listing that docs/PERFORMANCE.md compares
// coffer's unchanged re-backup of a bucket with (scripts/s3seed -list): the
// SDK's ListObjectsV2 paginator over c's bucket below its prefix, 1,000
// keys a page, one page after the other, counting keys and bytes and
// keeping nothing. It is a benchmark floor: keep it bare (no HEADs, no
// concurrency, no per-key work), or the figures stop meaning anything.
func ListBaseline(ctx context.Context, c *Client) (keys, bytes int64, err error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(c.opt.Bucket)}
	if c.opt.Prefix != "" {
		in.Prefix = aws.String(c.opt.Prefix)
	}
	p := s3.NewListObjectsV2Paginator(c.s3, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return keys, bytes, classify(err, "list", "s3:ListBucket", c.opt.Bucket, "")
		}
		for _, o := range page.Contents {
			keys++
			bytes += aws.ToInt64(o.Size)
		}
	}
	return keys, bytes, nil
}
