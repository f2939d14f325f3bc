package s3io

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// getRange GETs key from off (length < 0: to the end), pinned to etag
// when it is known.
func (c *Client) getRange(ctx context.Context, key, etag string, off, length int64) (*s3.GetObjectOutput, error) {
	return c.getVersionRange(ctx, key, "", etag, off, length)
}

// getVersionRange is getRange of one version of key ("" the current).
func (c *Client) getVersionRange(ctx context.Context, key, version, etag string, off, length int64) (*s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: &c.opt.Bucket, Key: &key}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	if off == 0 && length < 0 {
		// The whole object: S3 sends its checksums (kept in the
		// snapshot) and the SDK checks the body against them.
		in.ChecksumMode = types.ChecksumModeEnabled
	}
	if etag != "" {
		in.IfMatch = aws.String(etag)
	}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	case off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := c.s3.GetObject(ctx, in)
	if err != nil {
		return nil, classify(err, "get", "s3:GetObject", c.opt.Bucket, key)
	}
	return out, nil
}

// getRangeInto fills buf with the len(buf) bytes of key at off, pinned
// to etag when it is known, and GETs them again when the body breaks off
// (the SDK retries a request only until its headers arrive). It returns
// the response whose body filled buf (its body closed).
func (c *Client) getRangeInto(ctx context.Context, key, version, etag string, off int64, buf []byte) (*s3.GetObjectOutput, error) {
	var last error
	for attempt := 0; attempt < bodyAttempts; attempt++ {
		out, err := c.getVersionRange(ctx, key, version, etag, off, int64(len(buf)))
		if err != nil {
			return nil, err
		}
		_, err = io.ReadFull(out.Body, buf)
		out.Body.Close()
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = err
	}
	return nil, fmt.Errorf("s3io: get %s: bytes %d-%d: %w", arn(c.opt.Bucket, key), off, off+int64(len(buf))-1, last)
}

// objectReader streams an object with one GET, and when the body breaks
// off, resumes with a ranged GET from where it stopped.
type objectReader struct {
	c       *Client
	ctx     context.Context
	key     string
	etag    string
	size    int64
	body    io.ReadCloser
	pos     int64
	meta    objMeta
	retries int
}

func (r *objectReader) get(from int64) error {
	out, err := r.c.getRange(r.ctx, r.key, r.etag, from, -1)
	if err != nil {
		return err
	}
	if from == 0 {
		r.meta = getMeta(out)
	}
	r.body = out.Body
	return nil
}

func (r *objectReader) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if err == nil || n > 0 {
			return n, nil
		}
		if err == io.EOF && r.pos >= r.size {
			return 0, io.EOF
		}
		if cerr := r.ctx.Err(); cerr != nil {
			return 0, cerr
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if r.retries++; r.retries > bodyAttempts {
			return 0, fmt.Errorf("s3io: get %s: %w", arn(r.c.opt.Bucket, r.key), err)
		}
		r.body.Close()
		if gerr := r.get(r.pos); gerr != nil {
			return 0, gerr
		}
	}
}

func (r *objectReader) Close() error {
	if r.body != nil {
		return r.body.Close()
	}
	return nil
}

// partReader reads a large object as ranged GETs of part bytes, several
// in flight ahead of the reader, delivered in order. Each part's buffer
// comes from the client's Memory before its GET starts and goes back
// once read, so the parts ahead are as many as the budget allows (up to
// the window). Parts are asked of the budget in order, and the budget
// serves in order, so the part the reader waits for is never behind one
// it has yet to read.
type partReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	c      *Client
	key    string
	etag   string
	size   int64
	part   int64
	window int

	pending  []chan partResult // launched, not yet consumed, in order
	launched int
	nparts   int
	buf      []byte // the part being read, to give back
	cur      []byte // what is left of it
	err      error
	peeked   *partResult
	// asked orders the launched parts' requests to the budget.
	asked chan struct{}
}

type partResult struct {
	data []byte
	meta objMeta
	err  error
}

func newPartReader(ctx context.Context, c *Client, key, etag string, size, part int64) *partReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &partReader{ctx: ctx, cancel: cancel, c: c, key: key, etag: etag, size: size, part: part,
		window: min(4, c.opt.concurrency()), nparts: int((size + part - 1) / part)}
	r.asked = make(chan struct{}, 1)
	r.asked <- struct{}{}
	for r.launched < r.nparts && len(r.pending) < r.window {
		r.launch()
	}
	return r
}

func (r *partReader) launch() {
	i := r.launched
	r.launched++
	ch := make(chan partResult, 1)
	r.pending = append(r.pending, ch)
	off := int64(i) * r.part
	length := min(r.part, r.size-off)
	// Each goroutine asks the budget after the previous one has asked
	// (turn passes the token on), so the parts are served in order.
	turn := make(chan struct{}, 1)
	prev := r.asked
	r.asked = turn
	go func() {
		<-prev
		buf, err := r.c.opt.Memory.Get(r.ctx, int(length))
		turn <- struct{}{}
		if err != nil {
			ch <- partResult{err: err}
			return
		}
		res := r.fetch(buf, off, length)
		if res.err != nil {
			r.c.opt.Memory.Put(buf)
		}
		ch <- res
	}()
}

func (r *partReader) fetch(buf []byte, off, length int64) partResult {
	out, err := r.c.getRangeInto(r.ctx, r.key, "", r.etag, off, buf[:length])
	if err != nil {
		return partResult{err: err}
	}
	return partResult{data: buf, meta: getMeta(out)}
}

// next takes the next part in order and launches one more.
func (r *partReader) next() partResult {
	if r.peeked != nil {
		p := *r.peeked
		r.peeked = nil
		return p
	}
	ch := r.pending[0]
	r.pending = r.pending[1:]
	var res partResult
	select {
	case res = <-ch:
	case <-r.ctx.Done():
		r.drain(ch)
		res = partResult{err: r.ctx.Err()}
	}
	if r.launched < r.nparts {
		r.launch()
	}
	return res
}

// first returns the headers of the first part's response.
func (r *partReader) first() (objMeta, error) {
	res := r.next()
	r.peeked = &res
	return res.meta, res.err
}

func (r *partReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		r.c.opt.Memory.Put(r.buf)
		r.buf = nil
		if r.err != nil {
			return 0, r.err
		}
		if r.peeked == nil && len(r.pending) == 0 {
			return 0, io.EOF
		}
		res := r.next()
		if res.err != nil {
			r.err = res.err
			return 0, res.err
		}
		r.buf, r.cur = res.data, res.data
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// drain gives the buffer of a part still coming back to the budget once
// its goroutine ends (they end soon after the context is cancelled).
func (r *partReader) drain(ch chan partResult) {
	go func() { r.c.opt.Memory.Put((<-ch).data) }()
}

func (r *partReader) Close() error {
	r.cancel()
	r.c.opt.Memory.Put(r.buf)
	r.buf, r.cur = nil, nil
	if r.peeked != nil {
		r.c.opt.Memory.Put(r.peeked.data)
		r.peeked = nil
	}
	for _, ch := range r.pending {
		r.drain(ch)
	}
	r.pending = nil
	return nil
}
