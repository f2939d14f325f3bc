package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/keymap"
	"github.com/coffer-backup/coffer/engine/object"
)

// verTree reads versions: the bytes of a version are "key@version";
// archived keys are not restored.
type verTree struct {
	mu       sync.Mutex
	reads    []object.LiveObject
	archived map[string]bool
}

func (v *verTree) List(ctx context.Context, prefix, token string) (object.LivePage, error) {
	return object.LivePage{}, errors.New("not a level tree")
}

func (v *verTree) Stat(ctx context.Context, prefix, name string) (*object.LiveEntry, bool, error) {
	return nil, false, errors.New("not a level tree")
}

func (v *verTree) ReadRange(ctx context.Context, o object.LiveObject, off, n int64) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reads = append(v.reads, o)
	if v.archived[o.Key] {
		return nil, fmt.Errorf("%w: restore %s first", object.ErrNotRestored, o.Key)
	}
	return []byte(o.Key + "@" + o.VersionID)[off : off+n], nil
}

func (v *verTree) Attrs(ctx context.Context, o object.LiveObject) ([]object.LiveAttr, error) {
	return []object.LiveAttr{{Key: "version_id", Value: []byte(o.VersionID)}}, nil
}

func version(key, id string, sec int64) object.LiveEntry {
	return object.LiveEntry{Name: key, Size: int64(len(key + "@" + id)), MTime: time.Unix(1.8e9+sec, 0), ETag: `"` + id + `"`, VersionID: id}
}

func readAll(t *testing.T, f *liveFile) string {
	t.Helper()
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	buf := make([]byte, 1000)
	res, errno := f.Read(context.Background(), fh, buf, 0)
	if errno != 0 {
		t.Fatalf("read %s: %v", f.key, errno)
	}
	b, _ := res.Bytes(nil)
	return string(b)
}

func listNames(t *testing.T, d *liveDir) []string {
	t.Helper()
	names, err := d.list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range names {
		got = append(got, n.local)
	}
	return got
}

// TestLiveVersions: a flat tree of every version (--versions) shows each
// object's latest version under its name and every version in the
// hidden folder beside it, "<time>_<versionId>", read by version id; an
// object whose latest version is a delete marker shows its versions
// alone; keys that look like folders of versions keep their own names
// (the mapping escapes them), so nothing collides; and a lookup of a
// folder of versions before any listing finds it.
func TestLiveVersions(t *testing.T) {
	base := &verTree{}
	a := object.LiveEntry{}
	a = version("a", "v3", 30)
	marker := func(key, id string, sec int64) object.LiveEntry {
		return object.LiveEntry{Name: key, MTime: time.Unix(1.8e9+sec, 0), VersionID: id, Deleted: true}
	}
	// A delete marker between versions, and a version whose id ends
	// like a marker's name.
	a.Versions = []object.LiveEntry{version("a", "v3", 30), marker("a", "m", 25), version("a", "v2/x%", 20), version("a", "v1.deleted", 10)}
	gone := object.LiveEntry{Name: "gone", Deleted: true, Versions: []object.LiveEntry{marker("gone", "gm", 6), version("gone", "g1", 5)}}
	odd1, odd2 := version(".a%versions", "o1", 1), version(".a%25%versions", "o2", 2)
	odd1.Versions, odd2.Versions = []object.LiveEntry{odd1}, []object.LiveEntry{odd2}
	de := version("d/e", "e1", 3)
	de.Versions = []object.LiveEntry{de}
	ents := []object.LiveEntry{gone, de, a, odd1, odd2}
	lists := 0
	flat := object.NewFlatLive(func(ctx context.Context) ([]object.LiveEntry, error) {
		lists++
		return slices.Clone(ents), nil
	}, base, time.Hour)
	f := NewLive(flat, LiveOptions{TTL: time.Hour, ReadAhead: -1})
	defer f.Close()
	ctx := context.Background()

	// A lookup of a's versions before a listing: no listing of the
	// level by fusefs (the flat tree lists once, for all).
	root := &liveDir{fsys: f}
	n, err := root.find(ctx, ".a%25%versions")
	if err != nil || n == nil || !n.versions || len(n.e.Versions) != 4 {
		t.Fatalf("lookup of .a%%25%%versions: %+v, %v", n, err)
	}
	want := []string{".a%2525%25versions", "..a%2525%25versions%25%versions", ".a%versions", "..a%versions%25%versions",
		"a", ".a%25%versions", "d", ".gone%25%versions"}
	got := listNames(t, root)
	if !slices.Equal(got, want) {
		t.Fatalf("root lists %q, want %q", got, want)
	}
	if lists != 1 {
		t.Fatalf("%d flat listings, want 1", lists)
	}
	// Every name is distinct, and no folder of versions is a key's name.
	seen := map[string]bool{}
	for _, name := range got {
		if seen[name] {
			t.Fatalf("%q listed twice", name)
		}
		seen[name] = true
		seg, beside, err := keymap.SegmentFromLocal(name)
		isKey := err == nil && keymap.LocalName(seg, beside) == name
		if _, v := versionsOf(name); v == isKey {
			t.Fatalf("%q: a folder of versions %v, a key's name %v", name, v, isKey)
		}
	}
	// The versions of a, newest first, read by version id.
	vd := &liveVersions{fsys: f, dir: root, name: n.local, key: "a"}
	vd.set(n.e)
	ds, errno := vd.Readdir(ctx)
	if errno != 0 {
		t.Fatal(errno)
	}
	var files []string
	for ds.HasNext() {
		e, _ := ds.Next()
		files = append(files, e.Name)
	}
	if w := []string{".", "..", "2027-01-15T08-00-30.000Z_v3", "2027-01-15T08-00-25.000Z_m.deleted", "2027-01-15T08-00-20.000Z_v2%2Fx%25",
		"2027-01-15T08-00-10.000Z_v1%2Edeleted"}; !slices.Equal(files, w) {
		t.Fatalf("versions of a are named %q, want %q", files, w)
	}
	for _, v := range n.e.Versions {
		if v.Deleted {
			continue
		}
		vf := &liveFile{fsys: f, dir: root, name: "a", key: "a"}
		vf.set(v)
		if got := readAll(t, vf); got != "a@"+v.VersionID {
			t.Fatalf("version %s reads %q", v.VersionID, got)
		}
	}
	// The current a reads its latest version.
	cur, _ := root.find(ctx, "a")
	cf := &liveFile{fsys: f, dir: root, name: "a", key: "a"}
	cf.set(cur.e)
	if got := readAll(t, cf); got != "a@v3" {
		t.Fatalf("a reads %q", got)
	}
	// A deleted object: no file, its versions remain.
	if n, err := root.find(ctx, "gone"); err != nil || n != nil {
		t.Fatalf("lookup of a deleted object: %+v, %v", n, err)
	}
	// A fresh folder (not listed) finds names through Stat.
	d := &liveDir{fsys: f, prefix: "d/"}
	if n, err := d.find(ctx, ".e%25%versions"); err != nil || n == nil || len(n.e.Versions) != 1 {
		t.Fatalf("lookup of d/.e%%25%%versions: %+v, %v", n, err)
	}
	if n, err := d.find(ctx, ".e%versions"); err != nil || n != nil {
		t.Fatalf("lookup of d/.e%%versions: %+v, %v", n, err)
	}
}

// TestLiveFlatList: the flat tree's levels equal a delimiter LIST's,
// over keys that sort around "/" ("a", "a+b", "a/c", "a0").
func TestLiveFlatList(t *testing.T) {
	m := newMemLive(2)
	for _, k := range []string{"a", "a+b", "a/c", "a/d/e", "a0", "b//c", "z"} {
		m.put(k, []byte(k))
	}
	flat := object.NewFlatLive(func(ctx context.Context) ([]object.LiveEntry, error) {
		var ents []object.LiveEntry
		for k, d := range m.objs {
			ents = append(ents, object.LiveEntry{Name: k, Size: int64(len(d)), ETag: m.etags[k]})
		}
		return ents, nil
	}, m, time.Hour)
	ctx := context.Background()
	for _, prefix := range []string{"", "a/", "a/d/", "b/", "b//", "none/"} {
		var want, got []string
		for tok := "start"; tok != ""; {
			if tok == "start" {
				tok = ""
			}
			pg, _ := m.List(ctx, prefix, tok)
			for _, e := range pg.Entries {
				want = append(want, fmt.Sprint(e.Name, e.Dir))
			}
			tok = pg.Next
		}
		pg, err := flat.List(ctx, prefix, "")
		if err != nil || pg.Next != "" {
			t.Fatal(err)
		}
		for _, e := range pg.Entries {
			got = append(got, fmt.Sprint(e.Name, e.Dir))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("level %q: flat %q, delimiter LIST %q", prefix, got, want)
		}
	}
	for _, c := range []struct {
		prefix, name string
		obj, dir     bool
	}{{"", "a", true, true}, {"", "a0", true, false}, {"a/", "d", false, true}, {"b/", "", false, true}, {"", "q", false, false}} {
		obj, dir, err := flat.Stat(ctx, c.prefix, c.name)
		if err != nil || (obj != nil) != c.obj || dir != c.dir || obj != nil && obj.Name != c.name {
			t.Fatalf("stat %q %q: %+v %v %v", c.prefix, c.name, obj, dir, err)
		}
	}
}

// TestLiveXattrs: user.s3.* come from one Attrs call kept for the TTL;
// other namespaces never ask the tree; a rewritten object's are asked
// again.
func TestLiveXattrs(t *testing.T) {
	m := newMemLive(100)
	m.put("k", []byte("hello"))
	f := NewLive(m, LiveOptions{TTL: time.Hour})
	defer f.Close()
	ctx := context.Background()
	root := &liveDir{fsys: f}
	n, _ := root.find(ctx, "k")
	file := &liveFile{fsys: f, dir: root, name: "k", key: "k"}
	file.set(n.e)
	buf := make([]byte, 100)
	for _, name := range []string{"security.selinux", "system.posix_acl_access"} {
		if _, errno := file.Getxattr(ctx, name, buf); errno != syscall.EOPNOTSUPP {
			t.Fatalf("%s: %v", name, errno)
		}
	}
	if m.attrs != 0 {
		t.Fatalf("other namespaces asked the tree %d times", m.attrs)
	}
	k, errno := file.Listxattr(ctx, buf)
	if errno != 0 || string(buf[:k]) != "user.s3.etag\x00user.s3.meta.len\x00" {
		t.Fatalf("listxattr: %q %v", buf[:k], errno)
	}
	if k, errno := file.Getxattr(ctx, "user.s3.meta.len", buf); errno != 0 || string(buf[:k]) != "5" {
		t.Fatalf("user.s3.meta.len: %q %v", buf[:k], errno)
	}
	if _, errno := file.Getxattr(ctx, "user.s3.etag", buf[:2]); errno != syscall.ERANGE {
		t.Fatalf("short buffer: %v", errno)
	}
	if _, errno := file.Getxattr(ctx, "user.s3.nope", buf); errno != syscall.ENODATA {
		t.Fatalf("missing: %v", errno)
	}
	if m.attrs != 1 {
		t.Fatalf("%d Attrs calls, want 1", m.attrs)
	}
	// Rewritten: the kept ETag is refused (ESTALE), the next lookup
	// asks again, and the new object's attributes come.
	m.put("k", []byte("longer now"))
	if _, errno := file.Getxattr(ctx, "user.s3.etag", buf); errno != 0 {
		t.Fatalf("kept attributes: %v", errno) // still within the TTL
	}
	file.mu.Lock()
	file.attrsAt = time.Time{}
	file.mu.Unlock()
	if _, errno := file.Getxattr(ctx, "user.s3.etag", buf); errno != syscall.ESTALE {
		t.Fatalf("attributes of a changed object: %v, want ESTALE", errno)
	}
	n, _ = root.find(ctx, "k")
	file.set(n.e)
	if k, errno := file.Getxattr(ctx, "user.s3.meta.len", buf); errno != 0 || string(buf[:k]) != "10" {
		t.Fatalf("after the rewrite: %q %v", buf[:k], errno)
	}
}

// TestLiveNotRestored: an archived object lists with its size; reading
// it fails with EREMOTE every time, with one log line.
func TestLiveNotRestored(t *testing.T) {
	base := &verTree{archived: map[string]bool{"cold": true}}
	cold := version("cold", "c1", 1)
	cold.Class = "DEEP_ARCHIVE"
	flat := object.NewFlatLive(func(ctx context.Context) ([]object.LiveEntry, error) {
		return []object.LiveEntry{cold}, nil
	}, base, time.Hour)
	var logged bytes.Buffer
	f := NewLive(flat, LiveOptions{TTL: time.Hour, Log: log.New(&logged, "", 0)})
	defer f.Close()
	ctx := context.Background()
	root := &liveDir{fsys: f}
	n, err := root.find(ctx, "cold")
	if err != nil || n == nil || n.e.Size != cold.Size {
		t.Fatalf("lookup: %+v %v", n, err)
	}
	file := &liveFile{fsys: f, dir: root, name: "cold", key: "cold"}
	file.set(n.e)
	for range 3 {
		fh, _, _ := file.Open(ctx, syscall.O_RDONLY)
		if _, errno := file.Read(ctx, fh, make([]byte, 10), 0); errno != syscall.EREMOTE {
			t.Fatalf("read of an archived object: %v, want EREMOTE", errno)
		}
	}
	if lines := strings.Count(logged.String(), "\n"); lines != 1 || !strings.Contains(logged.String(), "restore cold first") {
		t.Fatalf("log: %q", logged.String())
	}
}
