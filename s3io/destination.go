package s3io

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/coffer-backup/coffer/engine/restore"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Destination restores into a bucket prefix: each file becomes the object
// whose key is the prefix and the item path without its leading "/"
// (segments joined by "/", so keys come back byte-exact), with its recorded headers, user metadata
// and tags. Directories leave no marker objects. A symlink becomes a
// small object holding its target, with user metadata coffer-type=symlink.
type Destination struct {
	c *Client

	bufMu           sync.Mutex
	bufNow, bufHigh int64            // bytes of object buffers (Buffers)
	onAlloc         func(held int64) // tests: called after each allocation
}

var _ restore.Destination = (*Destination)(nil)

// NewDestination returns the destination of c's bucket and prefix.
func NewDestination(c *Client) *Destination { return &Destination{c: c} }

func (d *Destination) URI() string { return d.c.URI() }

// MkDir checks, for the target itself, that the bucket is there and
// reachable; folders need no objects.
func (d *Destination) MkDir(ctx context.Context, path string, n *tree.Node) error {
	if path != "" {
		return nil
	}
	if _, err := d.c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.c.opt.Bucket}); err != nil {
		return d.c.headError(ctx, err, "restore", "s3:ListBucket", "")
	}
	return nil
}

func (d *Destination) FinishDir(ctx context.Context, path string, n *tree.Node) error { return nil }

func (d *Destination) Symlink(ctx context.Context, path string, n *tree.Node) error {
	key := d.c.opt.Prefix + path[1:]
	in := &s3.PutObjectInput{Bucket: &d.c.opt.Bucket, Key: &key, Body: strings.NewReader(n.Target),
		ContentLength: aws.Int64(int64(len(n.Target))), Metadata: map[string]string{"coffer-type": "symlink"}}
	in.ServerSideEncryption, in.SSEKMSKeyId = d.c.sse()
	_, err := d.c.s3.PutObject(ctx, in)
	return classify(err, "restore", "s3:PutObject", d.c.opt.Bucket, key)
}

// headers is what a PUT of node n carries.
type headers struct {
	contentType, contentEncoding, contentLanguage, cacheControl, contentDisposition, tagging, redirect *string
	expires                                                                                            *string
	metadata                                                                                           map[string]string
	class                                                                                              types.StorageClass
}

func (d *Destination) headers(n *tree.Node) headers {
	var h headers
	opt := func(key string) *string {
		if v := attrValue(n.Attrs, key); v != "" {
			return aws.String(v)
		}
		return nil
	}
	h.contentType = opt(AttrContentType)
	h.contentEncoding = opt(AttrContentEncoding)
	h.contentLanguage = opt(AttrContentLanguage)
	h.cacheControl = opt(AttrCacheControl)
	h.contentDisposition = opt(AttrContentDisposition)
	h.redirect = opt(AttrWebsiteRedirect)
	h.expires = opt(AttrExpires)
	for _, a := range n.Attrs {
		if k, ok := strings.CutPrefix(a.Key, MetaPrefix); ok {
			if h.metadata == nil {
				h.metadata = map[string]string{}
			}
			h.metadata[k] = string(a.Value)
		}
	}
	if t := tagging(n.Attrs); t != "" {
		h.tagging = aws.String(t)
	}
	switch {
	case d.c.opt.StorageClass != "":
		h.class = types.StorageClass(d.c.opt.StorageClass)
	case d.c.opt.KeepStorageClass:
		h.class = types.StorageClass(attrValue(n.Attrs, AttrStorageClass))
	}
	return h
}

// expiresOption sets the Expires header as recorded (the SDK's typed
// field would reformat it).
func expiresOption(v *string) func(*s3.Options) {
	return func(o *s3.Options) {
		if v == nil {
			return
		}
		o.HTTPClient = expiresClient{o.HTTPClient, *v}
	}
}

type expiresClient struct {
	next    s3.HTTPClient
	expires string
}

func (c expiresClient) Do(r *http.Request) (*http.Response, error) {
	r.Header.Set("Expires", c.expires)
	return c.next.Do(r)
}

type s3File struct {
	d    *Destination
	ctx  context.Context
	key  string
	n    *tree.Node
	h    headers
	size int64

	mu sync.Mutex

	buf []byte // small objects: the whole content, PUT at Close
	got int64  // bytes written into buf

	part  int64 // large objects: multipart in parts of this size
	mp    *multipart
	parts map[int64]*partBuf // parts being filled
	done  int64              // parts uploaded
	err   error
}

type partBuf struct {
	data []byte
	got  int64
}

// layout returns the part size of n's object, 0 for a single PUT: the
// source's part size, when the recorded ETag tells it and it fits the
// memory budget (the copy then gets the same ETag), else the part_size
// option's, clamped so that two parts fit the budget, grown for objects
// that would need more than S3's 10,000 parts.
func (d *Destination) layout(n *tree.Node) int64 {
	size := int64(n.Size)
	budget := d.c.opt.Memory.Budget()
	part := fitPart(d.c.opt.partSize(), budget)
	sourcePart := int64(0)
	if d.c.opt.PartSize == 0 {
		sourcePart = sourcePartSize(size, etagParts(attrValue(n.Attrs, AttrETag)))
		if sourcePart > budget {
			sourcePart = 0 // cannot be held: cut at our part size (the ETag will differ)
		}
	}
	if sourcePart == 0 && size <= part {
		return 0
	}
	if sourcePart > 0 {
		part = sourcePart
	}
	if need := (size + 9999) / 10000; need > part {
		part = (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return part
}

// FileBuffer is the most memory the writer of n holds while its bytes
// come in ascending order (restore.Buffered): the whole body of an
// object sent in one PUT, one part of one sent in parts (a part goes up,
// and its buffer is dropped, as soon as it is full). engine/restore
// reserves it from the budget before the job that writes the object, so
// the writer itself never waits for memory.
func (d *Destination) FileBuffer(n *tree.Node) int64 {
	if part := d.layout(n); part > 0 {
		return min(part, int64(n.Size))
	}
	return int64(n.Size)
}

// Buffers reports the bytes of object buffers allocated and not yet
// dropped, and the most there ever were at once (for tests).
func (d *Destination) Buffers() (now, high int64) {
	d.bufMu.Lock()
	defer d.bufMu.Unlock()
	return d.bufNow, d.bufHigh
}

func (d *Destination) alloc(n int64) []byte {
	d.bufMu.Lock()
	d.bufNow += n
	d.bufHigh = max(d.bufHigh, d.bufNow)
	held := d.bufNow
	d.bufMu.Unlock()
	if d.onAlloc != nil {
		d.onAlloc(held)
	}
	return make([]byte, n)
}

func (d *Destination) free(b []byte) {
	if b == nil {
		return
	}
	d.bufMu.Lock()
	d.bufNow -= int64(len(b))
	d.bufMu.Unlock()
}

// CreateFile starts an object: a small one (up to the part size) is
// held whole and PUT at Close; a large one goes up in parts as they
// fill (see layout). The buffers are allocated as the bytes come, in
// the room engine/restore reserved for FileBuffer.
func (d *Destination) CreateFile(ctx context.Context, path string, n *tree.Node) (restore.FileWriter, error) {
	f := &s3File{d: d, ctx: ctx, key: d.c.opt.Prefix + path[1:], n: n, h: d.headers(n), size: int64(n.Size)}
	part := d.layout(n)
	if part == 0 {
		if f.size > 0 {
			f.buf = d.alloc(f.size)
		}
		return f, nil
	}
	f.part = part
	f.parts = map[int64]*partBuf{}
	in := &s3.CreateMultipartUploadInput{Bucket: &d.c.opt.Bucket, Key: &f.key,
		ContentType: f.h.contentType, ContentEncoding: f.h.contentEncoding, ContentLanguage: f.h.contentLanguage,
		CacheControl: f.h.cacheControl, ContentDisposition: f.h.contentDisposition, WebsiteRedirectLocation: f.h.redirect,
		Metadata: f.h.metadata, Tagging: f.h.tagging, StorageClass: f.h.class}
	in.ServerSideEncryption, in.SSEKMSKeyId = d.c.sse()
	mp, err := d.c.startMultipartWith(ctx, in, expiresOption(f.h.expires))
	if err != nil {
		d.free(f.buf)
		return nil, err
	}
	f.mp = mp
	return f, nil
}

// WriteAt may be called concurrently for disjoint ranges, in any order.
// A large object's part goes up as soon as all its bytes are there and
// its buffer is dropped, so memory holds only the parts still being
// filled: one when the bytes come in ascending order, as
// engine/restore writes them when it reserves memory (FileBuffer).
func (f *s3File) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > f.size {
		return 0, fmt.Errorf("s3io: write %s: range %d+%d beyond the object's %d bytes", f.key, off, len(p), f.size)
	}
	if f.mp == nil {
		n := copy(f.buf[off:], p)
		f.mu.Lock()
		f.got += int64(n)
		f.mu.Unlock()
		return n, nil
	}
	written := 0
	for len(p) > 0 {
		idx := off / f.part
		start := idx * f.part
		plen := min(f.part, f.size-start)
		f.mu.Lock()
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return written, err
		}
		pb := f.parts[idx]
		if pb == nil {
			pb = &partBuf{data: f.d.alloc(plen)}
			f.parts[idx] = pb
		}
		f.mu.Unlock()
		n := copy(pb.data[off-start:], p)
		f.mu.Lock()
		pb.got += int64(n)
		full := pb.got == plen
		if full {
			delete(f.parts, idx)
		}
		f.mu.Unlock()
		if full {
			err := f.mp.upload(f.ctx, int32(idx+1), pb.data)
			f.d.free(pb.data)
			f.mu.Lock()
			if err != nil && f.err == nil {
				f.err = err
			}
			if err == nil {
				f.done++
			}
			f.mu.Unlock()
			if err != nil {
				return written + n, err
			}
		}
		written += n
		p = p[n:]
		off += int64(n)
	}
	return written, nil
}

// release drops the buffers still held.
func (f *s3File) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.d.free(f.buf)
	f.buf = nil
	for k, pb := range f.parts {
		f.d.free(pb.data)
		delete(f.parts, k)
	}
}

func (f *s3File) Close(abort bool) error {
	defer f.release()
	if f.mp != nil {
		if abort {
			f.mp.abort()
			return nil
		}
		nparts := (f.size + f.part - 1) / f.part
		if f.err != nil || f.done != nparts {
			f.mp.abort()
			if f.err != nil {
				return f.err
			}
			return fmt.Errorf("s3io: restore %s: %d of %d parts written", f.key, f.done, nparts)
		}
		return f.mp.complete(f.ctx)
	}
	if abort {
		return nil
	}
	if f.got != f.size {
		return fmt.Errorf("s3io: restore %s: %d of %d bytes written", f.key, f.got, f.size)
	}
	in := &s3.PutObjectInput{Bucket: &f.d.c.opt.Bucket, Key: &f.key, Body: bytes.NewReader(f.buf),
		ContentLength: aws.Int64(f.size),
		ContentType:   f.h.contentType, ContentEncoding: f.h.contentEncoding, ContentLanguage: f.h.contentLanguage,
		CacheControl: f.h.cacheControl, ContentDisposition: f.h.contentDisposition, WebsiteRedirectLocation: f.h.redirect,
		Metadata: f.h.metadata, Tagging: f.h.tagging, StorageClass: f.h.class}
	in.ServerSideEncryption, in.SSEKMSKeyId = f.d.c.sse()
	_, err := f.d.c.s3.PutObject(f.ctx, in, expiresOption(f.h.expires))
	return classify(err, "restore", "s3:PutObject", f.d.c.opt.Bucket, f.key)
}

// etagParts is the part count of a multipart upload's ETag ("…-N"), or 0.
func etagParts(etag string) int64 {
	_, n, ok := strings.Cut(strings.Trim(etag, `"`), "-")
	if !ok {
		return 0
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v < 1 || v > 10000 {
		return 0
	}
	return v
}

// commonPartSizes are the part sizes of the usual uploaders: the aws CLI
// and the SDKs' transfer managers (8 MiB), rclone (5 MiB), s3cmd (15 MiB)
// and round figures.
var commonPartSizes = []int64{8 << 20, 5 << 20, 16 << 20, 15 << 20, 10 << 20, 32 << 20, 64 << 20, 100 << 20, 128 << 20}

// maxSourcePart bounds a part taken from the source, which the
// destination holds in memory while it fills.
const maxSourcePart = 512 << 20

// sourcePartSize guesses the part size of an object uploaded in parts
// parts, so that its restored copy, cut the same way, gets the same ETag
// (the MD5 of its parts' MD5s): the first common size that gives that
// many parts, else the even split rounded up to a MiB. 0: not multipart,
// or no part size fits.
func sourcePartSize(size, parts int64) int64 {
	if parts == 0 || size == 0 {
		return 0
	}
	fits := func(p int64) bool {
		return p <= maxSourcePart && (parts == 1 || p >= 5<<20) && (size+p-1)/p == parts
	}
	for _, p := range commonPartSizes {
		if fits(p) {
			return p
		}
	}
	p := (size + parts - 1) / parts
	if parts > 1 {
		p = (p + 1<<20 - 1) &^ (1<<20 - 1)
	}
	if fits(p) {
		return p
	}
	return 0
}
