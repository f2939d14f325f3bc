package fusefs

import (
	"fmt"
	"log"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions are how a tree is mounted.
type MountOptions struct {
	// AllowOther lets other users than the one mounting read the tree
	// (for a non-root user, /etc/fuse.conf must have user_allow_other).
	// The kernel checks each entry's mode and owner either way.
	AllowOther bool
	// FsName shows in /proc/mounts and df as the source: the store.
	FsName string
	// Debug logs every FUSE request.
	Debug bool
	// debugLog, if set, receives what Debug logs (tests count requests).
	debugLog *log.Logger
	// NeedOpen makes every open of a file reach the mount (with a
	// handle of its own), as a test of the handle path does; by
	// default the kernel opens files by itself when it can.
	NeedOpen bool
}

// Root is the root node of a tree to mount: what SnapshotsRoot and
// SubtreeRoot return and Mount takes. It is an alias so that callers
// (cmd/coffer) can hold one without importing go-fuse, which only fusefs
// does.
type Root = fs.InodeEmbedder

// Mount mounts root read-only at dir and returns the server, which is
// already serving. Unmount it with its Unmount method or fusermount3 -u;
// its Wait method returns once it is unmounted.
func Mount(dir string, root fs.InodeEmbedder, mo MountOptions) (*fuse.Server, error) {
	timeout := Timeout
	if l, ok := root.(interface{ liveFS() *LiveFS }); ok {
		timeout = l.liveFS().kernelTimeout() // a live bucket changes
	}
	opts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &fs.StableAttr{Ino: 1},
		MountOptions: fuse.MountOptions{
			AllowOther: mo.AllowOther,
			// ro: nothing can be written; default_permissions: the kernel
			// enforces the snapshot's modes and owners, which matters
			// with allow_other.
			Options:      []string{"ro", "default_permissions"},
			FsName:       mo.FsName,
			Name:         "coffer",
			MaxReadAhead: 128 << 10,
			MaxWrite:     1 << 20, // also the largest read request
			// Replies come from memory: splicing them costs a pipe and
			// three system calls where one writev does (go-fuse tries
			// a splice for every read reply, and gives up on bytes).
			DisableSplice: true,
			Debug:         mo.Debug || mo.debugLog != nil,
			Logger:        mo.debugLog,
		},
	}
	if opts.FsName == "" {
		opts.FsName = "coffer"
	}
	srv, err := fs.Mount(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if o, ok := root.(interface{ owner() *FS }); ok && !mo.NeedOpen {
		// The kernel may open files without asking (fileNode.Open).
		ks := srv.KernelSettings()
		o.owner().noOpen.Store(ks != nil && ks.Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0)
	}
	return srv, nil
}

// unmountRetry is how long Unmount keeps trying while the mount is busy.
var unmountRetry = 2 * time.Second

// Unmount unmounts srv, retrying for a moment while it is busy.
func Unmount(srv *fuse.Server) error {
	deadline := time.Now().Add(unmountRetry)
	for {
		err := srv.Unmount()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
