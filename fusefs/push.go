package fusefs

import (
	"context"
	"strings"
	"sync"
	"syscall"

	"github.com/coffer-backup/coffer/engine/keymap"
	"github.com/coffer-backup/coffer/engine/tree"
)

// Small files read in order are pushed into the kernel's page cache
// ahead of the reader (FUSE's NOTIFY_STORE), so that a program reading a
// folder's files one after the other (grep -r, cp -r, tar) finds them
// there and waits for no request: reading a small file through FUSE is
// a round trip to the mount per file, in which the reader waits while
// the mount cuts, decrypts and decompresses the blob. The mount does
// that work ahead, on the other core, while the reader reads.
//
// The kernel does not tell the mount about reads its cache serves, so
// the mount sees the reader only when it reaches a file not pushed yet:
// as with the kernel's read-ahead, each read in order through FUSE
// doubles how far ahead the next push goes (pushFirst, then up to
// pushMax entries), and a read out of order pushes nothing. A listing
// that ends while small files are being read (smallFiles.fetch) pushes
// the folder's first pushFirst entries. A snapshot's files never
// change and the kernel keeps the cache between opens (no-open, or
// FOPEN_KEEP_CACHE), so what is pushed stays valid; the pages are the
// kernel's, which evicts them under pressure like any file's, and do not
// count in the mount's memory.
const (
	pushFirst = 8   // entries pushed ahead of a first read in order
	pushMax   = 256 // at most this many entries ahead
)

// pusher is a folder's push state. Positions count the folder's entries
// from 1.
type pusher struct {
	mu      sync.Mutex
	last    uint64 // the last small file read through FUSE; 0: none
	ahead   uint64 // how far the last push went ahead of it
	next    uint64 // the first entry neither pushed nor passed
	want    uint64 // push the entries before this one
	running bool   // a goroutine is pushing
}

// smallRead notes that the reader read the small file at pos through
// FUSE (it was not in the kernel's cache), and pushes the entries after
// it if the reads are in order.
func (d *dirNode) smallRead(pos uint64) {
	p := &d.push
	p.mu.Lock()
	if pos > p.last && pos <= p.last+p.ahead+pushFirst {
		p.ahead = min(max(2*p.ahead, pushFirst), pushMax)
	} else {
		p.ahead = 0
	}
	p.last = pos
	p.next = max(p.next, pos+1)
	p.want = max(p.want, pos+1+p.ahead)
	start := d.startLocked()
	p.mu.Unlock()
	if start {
		d.fsys.pushing.Add(1)
		go d.pushRun()
	}
}

// pushListed pushes the first entries of d: it was just listed while
// small files are being read.
func (d *dirNode) pushListed() {
	p := &d.push
	p.mu.Lock()
	if p.last == 0 {
		p.ahead = pushFirst
		p.next = max(p.next, 1)
		p.want = max(p.want, 1+pushFirst)
	}
	start := d.startLocked()
	p.mu.Unlock()
	if start {
		d.fsys.pushing.Add(1)
		go d.pushRun()
	}
}

// startLocked says whether a push should start, and marks it running.
// d.push.mu must be held.
func (d *dirNode) startLocked() bool {
	p := &d.push
	if p.running || p.next >= p.want || d.fsys.noPush.Load() || d.fsys.baseCtx.Err() != nil {
		return false
	}
	p.running = true
	return true
}

// pushRun pushes entries until none are wanted.
func (d *dirNode) pushRun() {
	defer d.fsys.pushing.Add(-1)
	p := &d.push
	ctx := d.fsys.baseCtx
	for {
		p.mu.Lock()
		if p.next >= p.want || ctx.Err() != nil {
			p.running = false
			p.mu.Unlock()
			return
		}
		from := p.next
		p.mu.Unlock()
		if !d.pushFrom(ctx, from) {
			p.mu.Lock()
			p.want = p.next // the end of the folder, or an error
			p.running = false
			p.mu.Unlock()
			return
		}
	}
}

// pushFrom pushes the small files from entry from until the wanted ones
// are done, skipping those the reader passed meanwhile. It returns false
// at the end of the folder or on an error (a read will say what).
func (d *dirNode) pushFrom(ctx context.Context, from uint64) bool {
	f := d.fsys
	dir, err := d.load(ctx)
	if err != nil {
		return false
	}
	it := f.repo.Iter(dir)
	if err := it.SeekPos(ctx, from-1); err != nil {
		return false
	}
	p := &d.push
	for pos := from; ; pos++ {
		p.mu.Lock()
		if pos >= p.want {
			p.mu.Unlock()
			return true
		}
		if pos < p.next {
			p.mu.Unlock()
			return true // the reader went past: resume after it
		}
		p.next = pos + 1
		p.mu.Unlock()
		n, ok, err := it.Next(ctx)
		if !ok || err != nil {
			return false
		}
		d.pushFile(ctx, n)
	}
}

// pushFile pushes the content of entry n of d into the kernel's cache
// if it is a small file of one chunk that the kernel knows and that was
// not pushed before.
func (d *dirNode) pushFile(ctx context.Context, n *tree.Node) {
	f := d.fsys
	if n.Type != tree.TypeFile || len(n.Chunks) != 1 || int64(n.Size) > f.small {
		return
	}
	name := keymap.LocalName(n.Name, false)
	if strings.Contains(name, "/") {
		return // in a piece folder
	}
	in := d.GetChild(name)
	if in == nil {
		return // not looked up, or forgotten: the kernel has no inode to cache it in
	}
	fn, ok := in.Operations().(*fileNode)
	if !ok || fn.pushed.Load() || len(fn.n.Chunks) != 1 || fn.n.Chunks[0].ID != n.Chunks[0].ID {
		return
	}
	// The content of the inode's own entry (the same as n's).
	data, err := f.chunks.GetHere(fn.n.Chunks[0].ID)
	if err != nil || uint64(len(data)) != fn.n.Size {
		return // a read will say why
	}
	switch in.WriteCache(0, data) {
	case 0:
		fn.pushed.Store(true)
		f.pushed.Add(1)
	case syscall.ENOSYS:
		f.noPush.Store(true) // a kernel without NOTIFY_STORE
	}
}
