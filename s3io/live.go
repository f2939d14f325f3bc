package s3io

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/coffer-backup/coffer/engine/object"
	"github.com/coffer-backup/coffer/engine/store"
)

// Live is a bucket under the client's prefix read as it is now, for the
// live mount (coffer mount s3://BUCKET/PREFIX DIR): a level is a LIST
// with delimiter "/", a lookup of one name two one-key LISTs, a read a
// ranged GET pinned to the object's ETag with If-Match. It needs
// s3:ListBucket and s3:GetObject.
type Live struct {
	c *Client
	// PageSize is the keys a LIST page asks for (default 1000, S3's
	// most); tests make it small to cross pages.
	PageSize int32
}

var _ object.LiveTree = (*Live)(nil)

// NewLive returns the live tree of c's bucket and prefix.
func NewLive(c *Client) *Live { return &Live{c: c} }

// URI is the bucket and prefix, as s3://BUCKET/PREFIX.
func (l *Live) URI() string { return l.c.URI() }

func (l *Live) pageSize() int32 {
	if l.PageSize <= 0 || l.PageSize > 1000 {
		return 1000
	}
	return l.PageSize
}

// List lists one level: the objects right under prefix and its folders.
func (l *Live) List(ctx context.Context, prefix, token string) (object.LivePage, error) {
	full := l.c.opt.Prefix + prefix
	in := &s3.ListObjectsV2Input{Bucket: &l.c.opt.Bucket, Prefix: aws.String(full), Delimiter: aws.String("/"),
		MaxKeys: aws.Int32(l.pageSize())}
	if token != "" {
		in.ContinuationToken = aws.String(token)
	}
	out, err := l.c.s3.ListObjectsV2(ctx, in)
	if err != nil {
		return object.LivePage{}, classify(err, "list", "s3:ListBucket", l.c.opt.Bucket, "")
	}
	// Objects and folders come apart; merge them back into key order (a
	// folder "a/" sorts by its prefix).
	var pg object.LivePage
	objs, dirs := out.Contents, out.CommonPrefixes
	for len(objs) > 0 || len(dirs) > 0 {
		if len(dirs) == 0 || (len(objs) > 0 && aws.ToString(objs[0].Key) < aws.ToString(dirs[0].Prefix)) {
			o := objs[0]
			objs = objs[1:]
			key := aws.ToString(o.Key)
			if key == l.c.opt.Prefix {
				continue // the mount prefix's own folder marker, as a backup skips it
			}
			pg.Entries = append(pg.Entries, object.LiveEntry{Name: strings.TrimPrefix(key, full),
				Size: aws.ToInt64(o.Size), MTime: aws.ToTime(o.LastModified), ETag: aws.ToString(o.ETag)})
			continue
		}
		d := aws.ToString(dirs[0].Prefix)
		dirs = dirs[1:]
		pg.Entries = append(pg.Entries, object.LiveEntry{Name: strings.TrimSuffix(strings.TrimPrefix(d, full), "/"), Dir: true})
	}
	if aws.ToBool(out.IsTruncated) {
		pg.Next = aws.ToString(out.NextContinuationToken)
	}
	return pg, nil
}

// Stat looks up prefix+name with two one-key LISTs at once, whatever the
// size of the level: the object sorts first among the keys that start
// with its name, and the folder is there when a key starts with its
// name and "/".
func (l *Live) Stat(ctx context.Context, prefix, name string) (*object.LiveEntry, bool, error) {
	key := l.c.opt.Prefix + prefix + name
	type dirAnswer struct {
		ok  bool
		err error
	}
	dc := make(chan dirAnswer, 1)
	go func() {
		out, err := l.c.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &l.c.opt.Bucket,
			Prefix: aws.String(key + "/"), MaxKeys: aws.Int32(1)})
		if err != nil {
			dc <- dirAnswer{err: classify(err, "list", "s3:ListBucket", l.c.opt.Bucket, "")}
			return
		}
		dc <- dirAnswer{ok: len(out.Contents) > 0}
	}()
	var obj *object.LiveEntry
	out, err := l.c.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &l.c.opt.Bucket,
		Prefix: aws.String(key), MaxKeys: aws.Int32(1)})
	if err != nil {
		err = classify(err, "list", "s3:ListBucket", l.c.opt.Bucket, "")
	} else if len(out.Contents) > 0 && aws.ToString(out.Contents[0].Key) == key && key != l.c.opt.Prefix {
		o := out.Contents[0]
		obj = &object.LiveEntry{Name: name, Size: aws.ToInt64(o.Size), MTime: aws.ToTime(o.LastModified), ETag: aws.ToString(o.ETag)}
	}
	d := <-dc
	if err == nil {
		err = d.err
	}
	if err != nil {
		return nil, false, err
	}
	return obj, d.ok, nil
}

// ReadRange GETs n bytes at off of key with If-Match etag: a 412 (or a
// key gone) is object.ErrChanged. A body cut short is read again (the
// SDK retries a request only until its headers arrive).
func (l *Live) ReadRange(ctx context.Context, key, etag string, off, n int64) ([]byte, error) {
	full := l.c.opt.Prefix + key
	if n == 0 {
		return []byte{}, nil
	}
	buf := make([]byte, n)
	out, err := l.c.getRangeInto(ctx, full, etag, off, buf)
	if err != nil {
		if errors.Is(err, ErrChanged) || store.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %w", object.ErrChanged, err)
		}
		return nil, err
	}
	if e := aws.ToString(out.ETag); etag != "" && e != "" && e != etag {
		// A server that ignores If-Match must not pass off new bytes.
		return nil, fmt.Errorf("%w: s3io: get %s: ETag %s, listed as %s", object.ErrChanged, arn(l.c.opt.Bucket, full), e, etag)
	}
	return buf, nil
}
