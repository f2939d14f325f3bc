package store

import (
	"fmt"
	"strings"
)

// Kind is the type of a stored object. It decides where the object lives
// (the layout below) and lets decorators treat kinds differently: S3
// puts only data packs in a cold storage class, the disk cache keeps
// only metadata.
type Kind uint8

const (
	KindConfig   Kind = iota + 1 // the store's config: format version, parameters, key slots
	KindDataPack                 // a pack of file-content blobs
	KindTreePack                 // a pack of tree blobs (directories, pages, chunk lists)
	KindIndex                    // an index file
	KindSnapshot                 // a snapshot object
	KindLock                     // a lock
)

// Kinds lists every kind, in layout order.
var Kinds = []Kind{KindConfig, KindDataPack, KindTreePack, KindIndex, KindSnapshot, KindLock}

func (k Kind) String() string {
	switch k {
	case KindConfig:
		return "config"
	case KindDataPack:
		return "data pack"
	case KindTreePack:
		return "tree pack"
	case KindIndex:
		return "index"
	case KindSnapshot:
		return "snapshot"
	case KindLock:
		return "lock"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Handle names one stored object: its kind, and its name within the
// kind (the hex of a content hash for packs, index files and snapshots;
// empty for the config).
type Handle struct {
	Kind Kind
	Name string
}

// ConfigHandle is the handle of the store's config.
var ConfigHandle = Handle{Kind: KindConfig}

func (h Handle) String() string { return ObjectName(h) }

// The layout: where each kind lives under the store's root.
//
//	config
//	packs/d/<first two hex digits>/<id>   data packs
//	packs/m/<first two hex digits>/<id>   tree packs
//	index/<id>
//	snapshots/<id>
//	locks/<name>
//
// This file is the only place in coffer that spells these names.
func dirOf(k Kind) string {
	switch k {
	case KindDataPack:
		return "packs/d/"
	case KindTreePack:
		return "packs/m/"
	case KindIndex:
		return "index/"
	case KindSnapshot:
		return "snapshots/"
	case KindLock:
		return "locks/"
	}
	return ""
}

// Prefix is the object-name prefix under which every object of kind k
// lives (for KindConfig, its whole name).
func Prefix(k Kind) string {
	if k == KindConfig {
		return "config"
	}
	return dirOf(k)
}

// hashed kinds are named by a 64-digit hex content hash.
func hashed(k Kind) bool {
	return k == KindDataPack || k == KindTreePack || k == KindIndex || k == KindSnapshot
}

// Valid checks that h names an object the layout can place.
func (h Handle) Valid() error {
	switch {
	case h.Kind == KindConfig:
		if h.Name != "" {
			return fmt.Errorf("store: the config handle has no name (got %q)", h.Name)
		}
	case hashed(h.Kind):
		if !isHexID(h.Name) {
			return fmt.Errorf("store: %s name %q is not a 64-digit hex id", h.Kind, h.Name)
		}
	case h.Kind == KindLock:
		if h.Name == "" || strings.ContainsAny(h.Name, "/\\") || strings.HasPrefix(h.Name, ".") {
			return fmt.Errorf("store: invalid lock name %q", h.Name)
		}
	default:
		return fmt.Errorf("store: unknown object kind %d", uint8(h.Kind))
	}
	return nil
}

// ObjectName is the name (a slash-separated path under the store's root)
// of the object h. h must be Valid.
func ObjectName(h Handle) string {
	switch {
	case h.Kind == KindConfig:
		return "config"
	case h.Kind == KindDataPack || h.Kind == KindTreePack:
		if len(h.Name) < 2 {
			return dirOf(h.Kind) + h.Name
		}
		return dirOf(h.Kind) + h.Name[:2] + "/" + h.Name
	}
	return dirOf(h.Kind) + h.Name
}

// ParseObjectName is ObjectName's inverse; ok is false for a name that
// no handle maps to (a temp file, a stranger's object).
func ParseObjectName(name string) (h Handle, ok bool) {
	if name == "config" {
		return ConfigHandle, true
	}
	for _, k := range Kinds[1:] {
		rest, found := strings.CutPrefix(name, dirOf(k))
		if !found {
			continue
		}
		if k == KindDataPack || k == KindTreePack {
			sub, id, found := strings.Cut(rest, "/")
			if !found || len(id) < 2 || sub != id[:2] {
				return Handle{}, false
			}
			rest = id
		}
		h = Handle{Kind: k, Name: rest}
		return h, h.Valid() == nil
	}
	return Handle{}, false
}

// isHexID reports whether s is 64 lower-case hex digits (it runs on every
// Get and Put: no allocation).
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
