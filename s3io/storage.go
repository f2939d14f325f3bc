package s3io

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/engine/store"
)

// Storage keeps a store's objects under a bucket prefix.
type Storage struct {
	c    *Client
	lock atomic.Pointer[store.RetentionPolicy] // nil: objects are not locked
}

var _ store.Storage = (*Storage)(nil)

// NewStorage returns the store at c's bucket and prefix.
func NewStorage(c *Client) *Storage { return &Storage{c: c} }

// storeMultipartAbove is the size above which Put uploads in parts; packs
// (16 MiB) go up as parts of storePartSize in parallel.
const (
	storeMultipartAbove = 8 << 20
	storePartSize       = 8 << 20
)

func (s *Storage) Location() string { return s.c.URI() }

// Features: conditional writes (If-None-Match / If-Match on PutObject);
// no temp objects (a pack's name is its hash, and S3 cannot rename);
// uploads at once sized to the memory budget, since each holds a whole
// pack in the engine: one per 32 MiB of budget, between 1 and
// store.DefaultUploads.
func (s *Storage) Features() store.Features {
	return store.Features{Conditional: true, Uploads: storeUploads(s.c.opt.Memory.Budget())}
}

func storeUploads(budget int64) int {
	return min(store.DefaultUploads, max(1, int(budget/(32<<20))))
}

// storageClass is the storage_class option for data packs only;
// everything else (config, index, tree packs, snapshots, locks) stays
// STANDARD so listing and browsing work on a cold store.
func (s *Storage) storageClass(h store.Handle) types.StorageClass {
	if s.c.opt.StorageClass != "" && h.Kind == store.KindDataPack {
		return types.StorageClass(s.c.opt.StorageClass)
	}
	return ""
}

// objectKey is the S3 key of h, after validating it.
func (s *Storage) objectKey(h store.Handle) (string, error) {
	if err := h.Valid(); err != nil {
		return "", err
	}
	return s.c.key(store.ObjectName(h)), nil
}

// sse applies the server-side encryption options to a PUT.
func (c *Client) sse() (types.ServerSideEncryption, *string) {
	if c.opt.SSE == "" {
		return "", nil
	}
	var kid *string
	if c.opt.SSEKMSKeyID != "" {
		kid = aws.String(c.opt.SSEKMSKeyID)
	}
	return types.ServerSideEncryption(c.opt.SSE), kid
}

func (s *Storage) Put(ctx context.Context, h store.Handle, data []byte) error {
	key, err := s.objectKey(h)
	if err != nil {
		return err
	}
	if len(data) > storeMultipartAbove {
		in := &s3.CreateMultipartUploadInput{Bucket: &s.c.opt.Bucket, Key: &key, StorageClass: s.storageClass(h)}
		in.ObjectLockMode, in.ObjectLockRetainUntilDate, _ = s.lockFor(h, time.Now())
		return s.c.putMultipart(ctx, in, data, storePartSize)
	}
	return s.putObject(ctx, h, key, data, nil)
}

// putObject is one PutObject of data; cond adds a condition header. On
// a store with object lock it carries the lock and a Content-MD5.
func (s *Storage) putObject(ctx context.Context, h store.Handle, key string, data []byte, cond func(*s3.PutObjectInput)) error {
	in := &s3.PutObjectInput{
		Bucket: &s.c.opt.Bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), StorageClass: s.storageClass(h),
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.c.sse()
	action := "s3:PutObject"
	var locked bool
	if in.ObjectLockMode, in.ObjectLockRetainUntilDate, locked = s.lockFor(h, time.Now()); locked {
		in.ContentMD5 = contentMD5(data)
		action = lockedPutAction
	}
	if cond != nil {
		cond(in)
	}
	_, err := s.c.s3.PutObject(ctx, in)
	return classify(err, "put", action, s.c.opt.Bucket, key)
}

// NewTemp: S3 has no rename, so packs are buffered and Put whole.
func (s *Storage) NewTemp(ctx context.Context) (store.TempObject, error) {
	return nil, fmt.Errorf("s3io: temp objects: %w", store.ErrNotSupported)
}

// GetVersion returns h and its ETag, the version PutIf compares.
func (s *Storage) GetVersion(ctx context.Context, h store.Handle) ([]byte, store.Version, error) {
	key, err := s.objectKey(h)
	if err != nil {
		return nil, "", err
	}
	out, err := s.c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.c.opt.Bucket, Key: &key})
	if err != nil {
		return nil, "", classify(err, "get", "s3:GetObject", s.c.opt.Bucket, key)
	}
	data, err := readBody(out.Body, aws.ToInt64(out.ContentLength))
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", fmt.Errorf("s3io: get %s: %w", arn(s.c.opt.Bucket, key), err)
	}
	return data, store.Version(aws.ToString(out.ETag)), nil
}

// PutIf is a PutObject with If-Match: ETag, or If-None-Match: * for a new
// object; the server refuses it with 412 when the condition fails.
func (s *Storage) PutIf(ctx context.Context, h store.Handle, data []byte, v store.Version) error {
	key, err := s.objectKey(h)
	if err != nil {
		return err
	}
	err = s.putObject(ctx, h, key, data, func(in *s3.PutObjectInput) {
		if v == "" {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(string(v))
		}
	})
	if errors.Is(err, ErrChanged) || (v != "" && store.IsNotFound(err)) {
		return fmt.Errorf("%w: %w", store.ErrPreconditionFailed, err)
	}
	return err
}

// putMultipart uploads data in parts of partSize, several at once.
func (c *Client) putMultipart(ctx context.Context, in *s3.CreateMultipartUploadInput, data []byte, partSize int) error {
	in.ServerSideEncryption, in.SSEKMSKeyId = c.sse()
	mu, err := c.startMultipart(ctx, in)
	if err != nil {
		return err
	}
	// A locked upload's parts carry a Content-MD5, as a locked PUT does.
	mu.md5 = in.ObjectLockMode != ""
	n := (len(data) + partSize - 1) / partSize
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.concurrency())
	for i := 0; i < n; i++ {
		part := data[i*partSize : min(len(data), (i+1)*partSize)]
		g.Go(func() error { return mu.upload(gctx, int32(i+1), part) })
	}
	if err := g.Wait(); err != nil {
		mu.abort()
		return err
	}
	return mu.complete(ctx)
}

// multipart is one multipart upload in progress.
type multipart struct {
	c     *Client
	key   string
	id    *string
	mu    sync.Mutex
	parts []types.CompletedPart // by part number - 1
	md5   bool                  // each part carries a Content-MD5
}

func (c *Client) startMultipart(ctx context.Context, in *s3.CreateMultipartUploadInput) (*multipart, error) {
	return c.startMultipartWith(ctx, in)
}

func (c *Client) startMultipartWith(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*multipart, error) {
	out, err := c.s3.CreateMultipartUpload(ctx, in, optFns...)
	if err != nil {
		action := "s3:PutObject"
		if in.ObjectLockMode != "" {
			action = lockedPutAction
		}
		return nil, classify(err, "put", action, c.opt.Bucket, *in.Key)
	}
	return &multipart{c: c, key: *in.Key, id: out.UploadId}, nil
}

func (m *multipart) upload(ctx context.Context, num int32, data []byte) error {
	in := &s3.UploadPartInput{
		Bucket: &m.c.opt.Bucket, Key: &m.key, UploadId: m.id, PartNumber: aws.Int32(num),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	}
	if m.md5 {
		in.ContentMD5 = contentMD5(data)
	}
	out, err := m.c.s3.UploadPart(ctx, in)
	if err != nil {
		return classify(err, "put part", "s3:PutObject", m.c.opt.Bucket, m.key)
	}
	m.setPart(num, out.ETag)
	return nil
}

// setPart records a finished part; parts finish concurrently.
func (m *multipart) setPart(num int32, etag *string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for int(num) > len(m.parts) {
		m.parts = append(m.parts, types.CompletedPart{})
	}
	m.parts[num-1] = types.CompletedPart{PartNumber: aws.Int32(num), ETag: etag}
}

func (m *multipart) complete(ctx context.Context) error {
	_, err := m.c.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &m.c.opt.Bucket, Key: &m.key, UploadId: m.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: m.parts},
	})
	if err != nil {
		m.abort()
		return classify(err, "put", "s3:PutObject", m.c.opt.Bucket, m.key)
	}
	return nil
}

// abort discards the parts; it runs even when ctx is cancelled, so a
// stopped upload leaves no parts to pay for.
func (m *multipart) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	m.c.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &m.c.opt.Bucket, Key: &m.key, UploadId: m.id})
}

// abortTimeout bounds the clean-up of a failed multipart upload.
const abortTimeout = 30 * time.Second

// bodyAttempts bounds the tries of a GET whose body broke off: the SDK
// retries a request until its headers arrive, not a body cut short.
const bodyAttempts = 5

func (s *Storage) Get(ctx context.Context, h store.Handle, offset, length int64) ([]byte, error) {
	return s.get(ctx, h, offset, length, nil)
}

// GetInto is Get into the caller's buffer (store.RangeReader): a prune's
// repack reads hundreds of MiB in runs of a few MiB through one buffer.
func (s *Storage) GetInto(ctx context.Context, h store.Handle, offset int64, buf []byte) error {
	_, err := s.get(ctx, h, offset, int64(len(buf)), buf)
	return err
}

// get reads length bytes of h at offset (to the end when length < 0):
// into buf when buf is not nil (then len(buf) == length), else into a
// new slice.
func (s *Storage) get(ctx context.Context, h store.Handle, offset, length int64, buf []byte) ([]byte, error) {
	key, err := s.objectKey(h)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("s3io: get %s: negative offset %d", arn(s.c.opt.Bucket, key), offset)
	}
	var rng *string
	switch {
	case length == 0:
		return []byte{}, nil
	case length > 0:
		rng = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		rng = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	var lastErr error
	for attempt := 0; attempt < bodyAttempts; attempt++ {
		out, err := s.c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.c.opt.Bucket, Key: &key, Range: rng})
		if err != nil {
			return nil, classify(err, "get", "s3:GetObject", s.c.opt.Bucket, key)
		}
		hint := aws.ToInt64(out.ContentLength)
		var data []byte
		if buf != nil {
			data, err = readBodyInto(out.Body, hint, buf)
		} else {
			data, err = readBody(out.Body, hint)
		}
		if err == nil && length > 0 && int64(len(data)) != length {
			err = fmt.Errorf("got %d bytes of %d asked", len(data), length)
		}
		if err == nil {
			return data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lastErr = err
	}
	return nil, fmt.Errorf("s3io: get %s: %w", arn(s.c.opt.Bucket, key), lastErr)
}

func readBody(r io.ReadCloser, hint int64) ([]byte, error) {
	if hint > 0 {
		return readBodyInto(r, hint, make([]byte, hint))
	}
	defer r.Close()
	return io.ReadAll(r)
}

// readBodyInto reads a body of exactly len(buf) bytes into buf.
func readBodyInto(r io.ReadCloser, hint int64, buf []byte) ([]byte, error) {
	defer r.Close()
	if hint > 0 && hint != int64(len(buf)) {
		return nil, fmt.Errorf("got %d bytes of %d asked", hint, len(buf))
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if hint <= 0 { // no length given: nothing may follow
		if n, _ := r.Read(make([]byte, 1)); n > 0 {
			return nil, fmt.Errorf("got more than the %d bytes asked", len(buf))
		}
	}
	return buf, nil
}

func (s *Storage) List(ctx context.Context, k store.Kind, fn func(store.ObjectInfo) error) error {
	p := s3.NewListObjectsV2Paginator(s.c.s3, &s3.ListObjectsV2Input{Bucket: &s.c.opt.Bucket, Prefix: aws.String(s.c.key(store.Prefix(k)))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify(err, "list", "s3:ListBucket", s.c.opt.Bucket, "")
		}
		for _, o := range page.Contents {
			h, ok := store.ParseObjectName(strings.TrimPrefix(aws.ToString(o.Key), s.c.opt.Prefix))
			if !ok || h.Kind != k {
				continue // not an object of the layout's
			}
			if err := fn(store.ObjectInfo{Handle: h, Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Storage) Stat(ctx context.Context, h store.Handle) (store.ObjectInfo, error) {
	key, err := s.objectKey(h)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	out, err := s.c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.c.opt.Bucket, Key: &key})
	if err != nil {
		return store.ObjectInfo{}, s.c.headError(ctx, err, "stat", "s3:GetObject", key)
	}
	return store.ObjectInfo{Handle: h, Size: aws.ToInt64(out.ContentLength)}, nil
}

func (s *Storage) Delete(ctx context.Context, h store.Handle) error {
	key, err := s.objectKey(h)
	if err != nil {
		return err
	}
	if err := s.refuseLocked(ctx, h); err != nil {
		if store.IsNotFound(err) {
			return nil
		}
		return err
	}
	_, err = s.c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.c.opt.Bucket, Key: &key})
	err = classify(err, "delete", "s3:DeleteObject", s.c.opt.Bucket, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
