package fusefs

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/engine/object"
)

// The attributes of a live object are those a snapshot of it holds, under
// the same names (user.s3.etag, user.s3.content_type, user.s3.meta.*,
// user.s3.tag.*, …: s3io/attrs.go), fetched when first asked for (a HEAD,
// and the object's tags if it has some) and kept for the mount's TTL.
// Other namespaces answer as on the snapshot mount (xattrUnsupported),
// without asking the bucket.

// xattrs returns the object's attributes, fetched if those kept are
// stale or of another version.
func (f *liveFile) xattrs(ctx context.Context) ([]object.LiveAttr, syscall.Errno) {
	e := f.entry()
	o := e.Object(f.key)
	f.mu.Lock()
	if f.attrsOf == o && f.fsys.fresh(f.attrsAt) {
		a := f.attrs
		f.mu.Unlock()
		return a, 0
	}
	f.mu.Unlock()
	// Not cut short by an interrupt: a Go caller is sent signals all
	// the time (goroutine preemption), and getxattr and listxattr are not
	// restarted after one (EINTR); the answer is kept for the next ask.
	a, err := f.fsys.t.Attrs(context.WithoutCancel(ctx), o)
	if err != nil {
		if errors.Is(err, object.ErrChanged) {
			f.dir.forget(f.name)
		}
		return nil, f.fsys.errno("getxattr", f.key, err)
	}
	f.mu.Lock()
	f.attrs, f.attrsOf, f.attrsAt = a, o, time.Now()
	f.mu.Unlock()
	return a, 0
}

// Getxattr returns attribute user.s3.<key>.
func (f *liveFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	key, ok := strings.CutPrefix(attr, xattrPrefix)
	if !ok {
		return 0, xattrUnsupported(attr)
	}
	attrs, errno := f.xattrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return getXattr(attrs, key, dest)
}

// Listxattr lists user.s3.<key> for every attribute, NUL-terminated.
func (f *liveFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	attrs, errno := f.xattrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return listXattrs(attrs, dest)
}
