package s3io

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"
	"github.com/coffer-backup/coffer/internal/pipeline"
)

// Source backs up the objects under a bucket prefix. A flat listing in
// key order is already the depth-first walk the engine wants once keys
// are split on "/" (docs/FORMAT.md §7), so Walk is one paginated LIST;
// directories are left implicit and every key is kept byte-exact.
type Source struct {
	c *Client
	// Notice receives messages that are not failures (tags not readable).
	Notice func(msg string)
	// Filter, if set, leaves keys out on the LIST, before any HEAD or
	// GET: Include, Exclude (keys and their prefixes up to a "/") and
	// LargerThan; the folder-only settings are not used.
	Filter *backup.Filter

	deferAttrs atomic.Bool // headers come at Open or from the parent
	tagsDenied atomic.Bool
	noticeOnce sync.Once
}

var (
	_ backup.Source     = (*Source)(nil)
	_ backup.SourceInfo = (*Source)(nil)
	_ backup.AttrReuser = (*Source)(nil)
	_ backup.Excluder   = (*Source)(nil)
)

// ExcludedCounts returns the keys the Filter left out of the last walk.
func (s *Source) ExcludedCounts() backup.Excluded { return s.Filter.Counts() }

// NewSource returns the source of c's bucket and prefix.
func NewSource(c *Client) *Source { return &Source{c: c} }

func (s *Source) URI() string { return s.c.URI() }

// Info names the bucket, its region, creation date and owner.
func (s *Source) Info(ctx context.Context) ([]tree.Attr, error) { return s.c.bucketInfo(ctx), nil }

// DeferAttrs tells the source that the engine gives an unchanged object
// its parent's attributes (ReuseAttrs), so Walk can leave out what only a
// HEAD per object tells: an unchanged bucket then costs its LIST alone,
// and a changed object gets its headers from the GET that reads it.
func (s *Source) DeferAttrs() { s.deferAttrs.Store(true) }

// ReuseAttrs gives cur, an object found unchanged in the parent snapshot
// (same key, size, ETag and last-modified), the parent's attributes,
// updated with what the listing says now (the storage class may change
// without a new ETag).
func (s *Source) ReuseAttrs(prev, cur *tree.Node) {
	out := make([]tree.Attr, 0, len(prev.Attrs))
	for _, a := range prev.Attrs {
		if v := attrValue(cur.Attrs, a.Key); v != "" {
			a.Value = []byte(v)
		}
		out = append(out, a)
	}
	for _, a := range cur.Attrs {
		if attrValue(out, a.Key) == "" {
			out = append(out, a)
		}
	}
	sortAttrs(out)
	cur.Attrs = out
}

// walkWindow bounds the objects listed ahead of the engine.
const walkWindow = 2048

// Walk lists the objects in key order and passes them to fn in that
// order; unless attributes are deferred, up to the client's concurrency
// of HEADs complete them first.
func (s *Source) Walk(ctx context.Context, fn func(*backup.Item) error, warn func(string, error)) error {
	if err := fn(&backup.Item{Path: "", Node: tree.Node{Type: tree.TypeDir, Mode: 0o755}}); err != nil {
		return err
	}
	head := !s.deferAttrs.Load()
	s.Filter.Reset()
	return pipeline.Ordered(ctx, pipeline.Options{Workers: s.c.opt.concurrency(), Window: walkWindow},
		func(ctx context.Context, emit func(*backup.Item, bool) error) error {
			return s.list(ctx, func(o types.Object) error {
				key := aws.ToString(o.Key)
				rel := strings.TrimPrefix(key, s.c.opt.Prefix)
				if rel == "" { // the prefix's own folder marker
					return nil
				}
				if !s.Filter.KeepKey(rel, uint64(aws.ToInt64(o.Size))) {
					return nil // excluded: no HEAD, no GET
				}
				return emit(&backup.Item{Path: rel, Node: tree.Node{
					Type: tree.TypeFile, Mode: 0o644, Size: uint64(aws.ToInt64(o.Size)),
					MTime: objectMTime(aws.ToTime(o.LastModified)), CTime: etagStamp(aws.ToString(o.ETag)),
					Attrs: listAttrs(o),
				}}, head)
			})
		},
		s.head,
		func(ctx context.Context, it *backup.Item, err error) error {
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return err
				}
				if errors.Is(err, store.ErrNotFound) {
					return nil // deleted since the listing: not in this snapshot
				}
				var pe *store.PermanentError
				if errors.As(err, &pe) && !errors.Is(err, ErrChanged) {
					return err
				}
				warn(it.Path, err)
				return nil
			}
			return fn(it)
		})
}

func (s *Source) list(ctx context.Context, fn func(types.Object) error) error {
	p := s3.NewListObjectsV2Paginator(s.c.s3, &s3.ListObjectsV2Input{
		Bucket: &s.c.opt.Bucket, Prefix: aws.String(s.c.opt.Prefix), MaxKeys: aws.Int32(1000),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify(err, "list", "s3:ListBucket", s.c.opt.Bucket, "")
		}
		for _, o := range page.Contents {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Source) objectKey(it *backup.Item) string { return s.c.opt.Prefix + it.Path }

// head completes an item's node with the object's headers and tags.
func (s *Source) head(ctx context.Context, it *backup.Item) error {
	key := s.objectKey(it)
	out, err := s.c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.c.opt.Bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return s.c.headError(ctx, err, "head", "s3:GetObject", key)
	}
	m := headMeta(out)
	tags, err := s.tags(ctx, key, m.tagCount)
	if err != nil {
		return err
	}
	n := &it.Node
	n.Size = uint64(m.size)
	if !m.lastModified.IsZero() {
		n.MTime = objectMTime(m.lastModified)
	}
	n.CTime = etagStamp(m.etag)
	n.Attrs = m.attrs(attrValue(n.Attrs, AttrStorageClass), tags)
	return nil
}

// tags reads an object's tags when the GET or HEAD said it has some
// (x-amz-tagging-count, which S3 and MinIO send only when there are
// tags), unless s3:GetObjectTagging was denied once already (then one
// notice, and no more tries). An untagged object costs no request.
func (s *Source) tags(ctx context.Context, key string, count *int32) ([]types.Tag, error) {
	if count == nil || *count == 0 || s.tagsDenied.Load() {
		return nil, nil
	}
	out, err := s.c.s3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &s.c.opt.Bucket, Key: &key})
	if err == nil {
		return out.TagSet, nil
	}
	err = classify(err, "tags", "s3:GetObjectTagging", s.c.opt.Bucket, key)
	if errors.Is(err, ErrAccessDenied) || apiCode(err) == "NotImplemented" {
		s.tagsDenied.Store(true)
		s.noticeOnce.Do(func() {
			if s.Notice != nil {
				s.Notice(fmt.Sprintf("object tags are not backed up: %v", err))
			}
		})
		return nil, nil
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, context.Canceled) {
		return nil, err
	}
	// Tags are worth a notice, not the object: back it up without them.
	if s.Notice != nil {
		s.Notice(fmt.Sprintf("tags of %s are not backed up: %v", key, err))
	}
	return nil, nil
}

// archived says an object must be restored from its archive class first.
func archived(n *tree.Node) bool {
	switch attrValue(n.Attrs, AttrStorageClass) {
	case "GLACIER", "DEEP_ARCHIVE":
		return !strings.Contains(attrValue(n.Attrs, AttrRestore), `ongoing-request="false"`)
	}
	return false
}

// Open reads an object: one streamed GET for small objects (no buffer:
// the engine reads the body), parallel ranged GETs into buffers of the
// memory budget for large ones, each pinned to the walked ETag (If-Match) so a changed
// object fails instead of mixing versions. With deferred attributes the
// first GET's headers complete it.Node.Attrs.
func (s *Source) Open(ctx context.Context, it *backup.Item) (io.ReadCloser, error) {
	key := s.objectKey(it)
	if !s.deferAttrs.Load() && archived(&it.Node) {
		return nil, &Error{Op: "get", Action: "s3:GetObject", Resource: arn(s.c.opt.Bucket, key), Kind: ErrArchived}
	}
	etag := attrValue(it.Node.Attrs, AttrETag)
	r := &objectReader{c: s.c, ctx: ctx, key: key, etag: etag, size: int64(it.Node.Size)}
	// Large objects are read in parts held in the memory budget: at
	// least two fit it.
	part := fitPart(s.c.opt.partSize(), s.c.opt.Memory.Budget())
	if r.size <= 2*part {
		if err := r.get(0); err != nil {
			return nil, err
		}
		if s.deferAttrs.Load() {
			if err := s.fillAttrs(ctx, it, key, &r.meta); err != nil {
				r.Close()
				return nil, err
			}
		}
		return r, nil
	}
	pr := newPartReader(ctx, s.c, key, etag, r.size, part)
	if s.deferAttrs.Load() {
		m, err := pr.first()
		if err == nil {
			err = s.fillAttrs(ctx, it, key, &m)
		}
		if err != nil {
			pr.Close()
			return nil, err
		}
	}
	return pr, nil
}

// fillAttrs gives a changed object, with deferred attributes, the
// headers of the GET that reads it and its tags.
func (s *Source) fillAttrs(ctx context.Context, it *backup.Item, key string, m *objMeta) error {
	tags, err := s.tags(ctx, key, m.tagCount)
	if err != nil {
		return err
	}
	it.Node.Attrs = m.attrs(attrValue(it.Node.Attrs, AttrStorageClass), tags)
	return nil
}
