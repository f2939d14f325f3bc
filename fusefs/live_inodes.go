package fusefs

// The node bound of the live mount: the same as the snapshot mount's
// (inodes.go), with the same default. Every node a lookup makes below
// the root (folders, objects, folders of versions and the versions and
// delete markers in them) takes a slot of the ring; a lookup or listing of a node the
// kernel has marks it used; the opening of a folder sends the pending
// evictions; go-fuse's forget frees the slot.

// OnForget: go-fuse lets the node go (the kernel forgot it).
func (d *liveDir) OnForget() { d.fsys.inodes.forgotten(d) }

func (f *liveFile) OnForget() { f.fsys.inodes.forgotten(f) }

func (v *liveVersions) OnForget() { v.fsys.inodes.forgotten(v) }

func (m *liveMarker) OnForget() { m.fsys.inodes.forgotten(m) }

// Inodes returns how many nodes the mount holds for the kernel now, and
// how many entries it asked the kernel to drop to keep to
// LiveOptions.MaxInodes (0, 0 without a bound).
func (f *LiveFS) Inodes() (held, invalidated int64) { return f.inodes.counts() }
