package s3io

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/coffer-backup/coffer/engine/object"
	"github.com/coffer-backup/coffer/engine/store"
)

// Live is a bucket under the client's prefix read as it is now, for the
// live mount (coffer mount s3://BUCKET/PREFIX DIR): a level is a LIST
// with delimiter "/", a lookup of one name two one-key LISTs, a read a
// ranged GET pinned to the object's ETag with If-Match, its attributes
// a HEAD and its tags. It needs s3:ListBucket and s3:GetObject (and
// s3:GetObjectTagging for tags).
type Live struct {
	c *Client
	// PageSize is the keys a LIST page asks for (default 1000, S3's
	// most); tests make it small to cross pages.
	PageSize int32

	tagsDenied atomic.Bool // s3:GetObjectTagging was refused once
	ahead      *object.LevelsAhead
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

// ListAhead makes List list folders ahead of a walk
// (object.LevelsAhead): once a level listed is a folder of one listed
// just before, the folders of both are listed, parallel at once, at
// most 256 held or coming, each used only if younger than maxAge. A walk
// then costs about as many LISTs, sent in parallel instead of one after
// the other; a plain listing of one folder costs one. Call it before
// the first List.
func (l *Live) ListAhead(parallel int, maxAge time.Duration) {
	l.ahead = object.NewLevelsAhead(func(ctx context.Context, prefix string) (object.LivePage, error) {
		return l.list(ctx, prefix, "")
	}, parallel, 256, maxAge)
}

// List lists one level: the objects right under prefix and its folders.
func (l *Live) List(ctx context.Context, prefix, token string) (object.LivePage, error) {
	if l.ahead == nil {
		return l.list(ctx, prefix, token)
	}
	if token != "" {
		return l.list(ctx, prefix, token)
	}
	pg, ok := l.ahead.Take(ctx, prefix)
	if !ok {
		var err error
		if pg, err = l.list(ctx, prefix, ""); err != nil {
			return pg, err
		}
	}
	l.ahead.Listed(prefix, pg)
	return pg, nil
}

// list is List without listing ahead.
func (l *Live) list(ctx context.Context, prefix, token string) (object.LivePage, error) {
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
			pg.Entries = append(pg.Entries, liveEntry(strings.TrimPrefix(key, full), o))
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

// Stat looks up prefix+name in the level's listing ahead if it is held
// (ListAhead), else with two one-key LISTs at once, whatever the size of
// the level: the object sorts first among the keys that start
// with its name, and the folder is there when a key starts with its
// name and "/".
func (l *Live) Stat(ctx context.Context, prefix, name string) (*object.LiveEntry, bool, error) {
	if l.ahead != nil {
		if pg, ok := l.ahead.Peek(prefix); ok {
			// The level, listed ahead: no request.
			var obj *object.LiveEntry
			dir := false
			for i, e := range pg.Entries {
				switch {
				case e.Name != name:
				case e.Dir:
					dir = true
				default:
					obj = &pg.Entries[i]
				}
			}
			if obj != nil {
				e := *obj
				obj = &e
			}
			return obj, dir, nil
		}
	}
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
		e := liveEntry(name, out.Contents[0])
		obj = &e
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

// liveEntry is the entry of a listed object.
func liveEntry(name string, o types.Object) object.LiveEntry {
	return object.LiveEntry{Name: name, Size: aws.ToInt64(o.Size), MTime: aws.ToTime(o.LastModified),
		ETag: aws.ToString(o.ETag), Class: string(o.StorageClass)}
}

// ReadRange GETs n bytes at off of o (its version, if it names one) with
// If-Match on its ETag: a 412 (or a key gone) is object.ErrChanged, an
// archived object object.ErrNotRestored with how to restore it. A body
// cut short is read again (the SDK retries a request only until its
// headers arrive).
func (l *Live) ReadRange(ctx context.Context, o object.LiveObject, off, n int64) ([]byte, error) {
	full := l.c.opt.Prefix + o.Key
	if n == 0 {
		return []byte{}, nil
	}
	buf := make([]byte, n)
	out, err := l.c.getRangeInto(ctx, full, o.VersionID, o.ETag, off, buf)
	if err != nil {
		return nil, l.readErr(full, o, err)
	}
	if err := l.checkETag(full, o, out); err != nil {
		return nil, err
	}
	return buf, nil
}

var _ object.LiveRanges = (*Live)(nil)

// ReadRanges GETs the consecutive ranges of o from off (sizes[i] bytes
// each) with one request, pinned as ReadRange is, and gives each range
// with put as soon as its bytes are in: a long sequential read costs one
// GET, not one a block, and its first block is there before its last.
// A body cut short is asked again from the first range not given.
func (l *Live) ReadRanges(ctx context.Context, o object.LiveObject, off int64, sizes []int64, put func(i int, b []byte)) error {
	full := l.c.opt.Prefix + o.Key
	end := off
	for _, n := range sizes {
		end += n
	}
	pos, i := off, 0
	for i < len(sizes) && sizes[i] == 0 {
		put(i, []byte{})
		i++
	}
	var last error
	for attempt := 0; i < len(sizes); attempt++ {
		if attempt == bodyAttempts {
			return fmt.Errorf("s3io: get %s: bytes %d-%d: %w", arn(l.c.opt.Bucket, full), pos, end-1, last)
		}
		out, err := l.c.getVersionRange(ctx, full, o.VersionID, o.ETag, pos, end-pos)
		if err != nil {
			return l.readErr(full, o, err)
		}
		before := i
		if err := l.checkETag(full, o, out); err != nil {
			out.Body.Close()
			return err
		}
		for ; i < len(sizes); i++ {
			buf := make([]byte, sizes[i])
			if _, err = io.ReadFull(out.Body, buf); err != nil {
				break
			}
			put(i, buf)
			pos += sizes[i]
		}
		out.Body.Close()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = err
			if i > before {
				attempt = -1 // it got somewhere: as many tries again for the rest
			}
		}
	}
	return nil
}

// readErr says what a failed GET of o means to a reader of the tree.
func (l *Live) readErr(full string, o object.LiveObject, err error) error {
	switch {
	case errors.Is(err, ErrChanged) || store.IsNotFound(err):
		return fmt.Errorf("%w: %w", object.ErrChanged, err)
	case errors.Is(err, ErrArchived):
		return fmt.Errorf("%w: %s", object.ErrNotRestored, l.thaw(full, o))
	}
	return err
}

// checkETag refuses a response whose ETag is not o's: a server that
// ignores If-Match must not pass off new bytes.
func (l *Live) checkETag(full string, o object.LiveObject, out *s3.GetObjectOutput) error {
	if e := aws.ToString(out.ETag); o.ETag != "" && e != "" && e != o.ETag {
		return fmt.Errorf("%w: s3io: get %s: ETag %s, listed as %s", object.ErrChanged, arn(l.c.opt.Bucket, full), e, o.ETag)
	}
	return nil
}

// thaw says that an archived object is not restored and how to restore
// it: the aws CLI command, shell-quoted.
func (l *Live) thaw(key string, o object.LiveObject) string {
	class := o.Class
	if class == "" {
		class = "an archive storage class"
	}
	version := ""
	if o.VersionID != "" {
		version = " --version-id " + shellQuote(o.VersionID)
	}
	return fmt.Sprintf("%s is in %s and not restored: restore a copy with 'aws s3api restore-object --bucket %s --key %s%s --restore-request Days=7' "+
		"(s3:RestoreObject; it takes hours) and read it once head-object says ongoing-request=\"false\"",
		arn(l.c.opt.Bucket, key), class, shellQuote(l.c.opt.Bucket), shellQuote(key), version)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Attrs HEADs o (its version, if it names one; If-Match on its ETag) and
// reads its tags when the HEAD says it has some, and returns the
// attributes a backup of it records, under the same keys (s3io/attrs.go):
// so getfattr shows the same on a live mount and on a snapshot mount.
func (l *Live) Attrs(ctx context.Context, o object.LiveObject) ([]object.LiveAttr, error) {
	full := l.c.opt.Prefix + o.Key
	in := &s3.HeadObjectInput{Bucket: &l.c.opt.Bucket, Key: &full, ChecksumMode: types.ChecksumModeEnabled}
	if o.VersionID != "" {
		in.VersionId = aws.String(o.VersionID)
	}
	if o.ETag != "" {
		in.IfMatch = aws.String(o.ETag)
	}
	out, err := l.c.s3.HeadObject(ctx, in)
	if err != nil {
		err = l.c.headError(ctx, err, "head", "s3:GetObject", full)
		if errors.Is(err, ErrChanged) || store.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %w", object.ErrChanged, err)
		}
		return nil, err
	}
	m := headMeta(out)
	var tags []types.Tag
	if m.tagCount != nil && *m.tagCount > 0 && !l.tagsDenied.Load() {
		tin := &s3.GetObjectTaggingInput{Bucket: &l.c.opt.Bucket, Key: &full}
		if o.VersionID != "" {
			tin.VersionId = aws.String(o.VersionID)
		}
		t, err := l.c.s3.GetObjectTagging(ctx, tin)
		switch err := classify(err, "tags", "s3:GetObjectTagging", l.c.opt.Bucket, full); {
		case err == nil:
			tags = t.TagSet
		case errors.Is(err, ErrAccessDenied) || apiCode(err) == "NotImplemented":
			// No tags from now on, as a backup without the permission.
			l.tagsDenied.Store(true)
		default:
			return nil, err
		}
	}
	var a []object.LiveAttr
	for _, t := range m.attrs(o.Class, tags) {
		a = append(a, object.LiveAttr{Key: t.Key, Value: t.Value})
	}
	return a, nil
}
