package tree

import (
	"fmt"
	"sort"
	"strings"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
)

// NodeType is the kind of a tree entry.
type NodeType uint8

const (
	TypeFile    NodeType = 1
	TypeDir     NodeType = 2
	TypeSymlink NodeType = 3
)

func (t NodeType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", t)
}

// Chunk is one piece of a file's content.
type Chunk struct {
	ID   crypto.ID
	Size uint32
}

// Attr is a source-specific attribute (for S3: etag, content type, user
// metadata); a node's attrs are sorted by key.
type Attr struct {
	Key   string
	Value []byte
}

// Node is one entry of a directory: what the source told about it.
type Node struct {
	Name   string
	Type   NodeType
	Mode   uint32 // permission bits, with setuid, setgid and sticky (07777)
	MTime  int64  // Unix nanoseconds
	Size   uint64 // file: content length
	UID    uint32
	GID    uint32
	Inode  uint64 // for change detection only
	CTime  int64  // Unix nanoseconds; for change detection only
	Target string // symlink target

	Subtree crypto.ID // dir: the directory blob

	// File content: the chunks inline, or (for files of many chunks) the
	// id of a chunk-list blob holding them.
	Chunks    []Chunk
	ChunkList crypto.ID

	Attrs []Attr
}

// SortKey orders the entries of a directory: a directory sorts as its name
// followed by "/", anything else as its name. With this order a flat,
// lexicographic listing of S3 keys is already a depth-first walk, and a
// file and a directory may share a name.
func (n *Node) SortKey() string {
	if n.Type == TypeDir {
		return n.Name + "/"
	}
	return n.Name
}

// Attr returns the value of attribute key.
func (n *Node) Attr(key string) ([]byte, bool) {
	i := sort.Search(len(n.Attrs), func(i int) bool { return n.Attrs[i].Key >= key })
	if i < len(n.Attrs) && n.Attrs[i].Key == key {
		return n.Attrs[i].Value, true
	}
	return nil, false
}

// maxInlineChunks is the most chunks a file entry holds inline; beyond it
// the list goes into a chunk-list blob of its own.
const MaxInlineChunks = 64

const (
	ContentInline = 0
	ContentList   = 1
)

func EncodeNode(e *format.Encoder, n *Node) {
	e.Byte(byte(n.Type))
	e.Str(n.Name)
	e.Uvarint(uint64(n.Mode))
	e.Varint(n.MTime)
	e.Uvarint(n.Size)
	e.Uvarint(uint64(n.UID))
	e.Uvarint(uint64(n.GID))
	e.Uvarint(n.Inode)
	e.Varint(n.CTime)
	switch n.Type {
	case TypeFile:
		if !n.ChunkList.IsZero() {
			e.Byte(ContentList)
			e.ID(n.ChunkList)
		} else {
			e.Byte(ContentInline)
			EncodeChunks(e, n.Chunks)
		}
	case TypeDir:
		e.ID(n.Subtree)
	case TypeSymlink:
		e.Str(n.Target)
	}
	e.Uvarint(uint64(len(n.Attrs)))
	for _, a := range n.Attrs {
		e.Str(a.Key)
		e.Bytes(a.Value)
	}
}

func EncodeChunks(e *format.Encoder, cs []Chunk) {
	e.Uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.ID(c.ID)
		e.Uvarint(uint64(c.Size))
	}
}

func DecodeChunks(d *format.Decoder) []Chunk {
	n := d.Count(33)
	cs := make([]Chunk, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		id := d.ID()
		cs = append(cs, Chunk{ID: id, Size: format.Uint32v(d, d.Uvarint())})
	}
	return cs
}

// minNodeSize is the smallest encoding of a node: a symlink with an empty
// name and target and every number zero.
const MinNodeSize = 11

func DecodeNode(d *format.Decoder) Node {
	var n Node
	n.Type = NodeType(d.Byte())
	n.Name = d.Str()
	n.Mode = format.Uint32v(d, d.Uvarint())
	n.MTime = d.Varint()
	n.Size = d.Uvarint()
	n.UID = format.Uint32v(d, d.Uvarint())
	n.GID = format.Uint32v(d, d.Uvarint())
	n.Inode = d.Uvarint()
	n.CTime = d.Varint()
	switch n.Type {
	case TypeFile:
		switch d.Byte() {
		case ContentInline:
			n.Chunks = DecodeChunks(d)
			var sum uint64
			for _, c := range n.Chunks {
				sum += uint64(c.Size)
			}
			if d.Err == nil && sum != n.Size {
				d.Fail("file chunks (sizes do not add up to the file size)")
			}
		case ContentList:
			n.ChunkList = d.ID()
			if d.Err == nil && n.ChunkList.IsZero() {
				d.Fail("chunk list id (zero)")
			}
		default:
			d.Fail("file content kind")
		}
	case TypeDir:
		n.Subtree = d.ID()
	case TypeSymlink:
		n.Target = d.Str()
	default:
		d.Fail("node type")
	}
	na := d.Count(2)
	if na > 0 {
		n.Attrs = make([]Attr, 0, na)
	}
	for i := 0; i < na && d.Err == nil; i++ {
		n.Attrs = append(n.Attrs, Attr{Key: d.Str(), Value: d.Bytes()})
		if i > 0 && d.Err == nil && n.Attrs[i-1].Key >= n.Attrs[i].Key {
			d.Fail("attrs (not sorted)")
		}
	}
	if d.Err == nil && (n.Mode > 0o7777 || strings.Contains(n.Name, "/")) {
		d.Fail("node name or mode")
	}
	return n
}
