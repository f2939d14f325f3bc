package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/check"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/restore"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
)

// qaRand returns n pseudo-random bytes from seed (fast, reproducible).
func qaRand(seed uint64, n int) []byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	mrand.NewChaCha8(s).Read(b)
	return b
}

// qaListing describes every entry under dir: type, size, mode, mtime and
// a hash of file contents, so that any write shows.
func qaListing(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// qaCopyDir copies the regular files and folders under src to dst.
func qaCopyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(q, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(q, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// qaStoreWithData is a store holding one small snapshot.
func qaStoreWithData(t testing.TB) (*engine.Repo, string) {
	t.Helper()
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.bin"), qaRand(1, 300<<10))
	writeFile(t, filepath.Join(src, "d", "b.txt"), textBytes(2, 100<<10))
	backupDir(t, r, src, backup.Options{})
	return r, storeDir
}

func TestWrongPassphraseWritesNothing(t *testing.T) {
	_, storeDir := qaStoreWithData(t)
	ctx := context.Background()
	before := qaListing(t, storeDir)
	for _, pass := range []string{"wrong", "test passphrase ", "test passphras", "Test passphrase", "\x00"} {
		st, err := store.NewFolder(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := engine.Open(ctx, st, []byte(pass))
		if !errors.Is(err, engine.ErrWrongPassphrase) {
			t.Errorf("Open with %q: %v, want ErrWrongPassphrase", pass, err)
		}
		if r != nil {
			t.Errorf("Open with %q returned a repo", pass)
		}
	}
	if after := qaListing(t, storeDir); !reflect.DeepEqual(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("store entry %s changed: %q → %q", k, before[k], v)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				t.Errorf("store entry %s disappeared", k)
			}
		}
	}
	// The right passphrase still works.
	reopen(t, storeDir)
}

// qaEditConfig rewrites the store's config through edit, which receives
// the config's JSON as a generic map.
func qaEditConfig(t testing.TB, storeDir string, edit func(cfg map[string]any)) {
	t.Helper()
	p := qaConfigPath(storeDir)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	_, storeDir := qaStoreWithData(t)
	ctx := context.Background()
	qaEditConfig(t, storeDir, func(cfg map[string]any) {
		cfg["params"].(map[string]any)["version"] = engine.FormatVersion + 1
	})
	// The version is checked before any passphrase is tried: a wrong one
	// gets the same answer, not ErrWrongPassphrase.
	for _, pass := range []string{"test passphrase", "wrong"} {
		st, _ := store.NewFolder(storeDir)
		r, err := engine.Open(ctx, st, []byte(pass))
		var nf *engine.NewerFormatError
		if !errors.As(err, &nf) {
			t.Fatalf("Open (%q) of a format %d store: %v, want a NewerFormatError", pass, engine.FormatVersion+1, err)
		}
		if r != nil {
			t.Fatal("Open returned a repo with an error")
		}
		if nf.Have != engine.FormatVersion+1 || nf.Want != engine.FormatVersion {
			t.Errorf("NewerFormatError%+v, want Have %d Want %d", *nf, engine.FormatVersion+1, engine.FormatVersion)
		}
		if msg := err.Error(); !strings.Contains(msg, "upgrade") || !strings.Contains(msg, fmt.Sprint(engine.FormatVersion+1)) {
			t.Errorf("message %q does not say to upgrade and which version", msg)
		}
	}
}

func TestGarbageConfigRefused(t *testing.T) {
	_, storeDir := qaStoreWithData(t)
	ctx := context.Background()
	good, err := os.ReadFile(qaConfigPath(storeDir))
	if err != nil {
		t.Fatal(err)
	}
	var cf engine.ConfigFile
	if err := json.Unmarshal(good, &cf); err != nil {
		t.Fatal(err)
	}
	garbage := map[string][]byte{
		"empty":           {},
		"text":            []byte("this is not a coffer config"),
		"binary":          qaRand(3, 4096),
		"truncated":       good[:len(good)/2],
		"null":            []byte("null"),
		"array":           []byte("[1,2,3]"),
		"object":          []byte("{}"),
		"params string":   []byte(`{"params":"v1","keys":[]}`),
		"version string":  []byte(`{"params":{"version":"1"},"keys":[]}`),
		"version zero":    bytes.Replace(good, []byte(fmt.Sprintf(`"version": %d`, engine.FormatVersion)), []byte(`"version": 0`), 1),
		"no key slots":    []byte(`{"params":` + string(cf.Params) + `,"keys":[]}`),
		"keys not a list": []byte(`{"params":` + string(cf.Params) + `,"keys":{}}`),
		"huge number":     []byte(`{"params":{"version":1e999},"keys":[]}`),
		"deep nesting":    []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)),
	}
	if bytes.Equal(garbage["version zero"], good) {
		t.Fatalf("test setup: the config has no `\"version\": %d` to replace", engine.FormatVersion)
	}
	for name, data := range garbage {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(qaConfigPath(storeDir), data, 0o600); err != nil {
				t.Fatal(err)
			}
			st, _ := store.NewFolder(storeDir)
			r, err := engine.Open(ctx, st, []byte("test passphrase"))
			if err == nil || r != nil {
				t.Fatalf("Open of a garbage config: %v, %v", r, err)
			}
			if errors.Is(err, engine.ErrWrongPassphrase) {
				t.Fatalf("garbage config reported as a wrong passphrase: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "config") {
				t.Errorf("error %q does not say the config is at fault", err)
			}
		})
	}
}

// qaCorpus is a multi-pack store and what went into it.
type qaCorpus struct {
	r        *engine.Repo
	storeDir string
	src      string
	files    map[string][]byte // relative path → content
	snaps    []*engine.Snapshot
}

// qaBuildCorpus backs up distinct random files (two with the same content,
// one big enough for a chunk list), and a compressible file, three times
// with additions, so the store has many data packs and one tree pack per
// backup.
func qaBuildCorpus(t testing.TB) *qaCorpus {
	t.Helper()
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	c := &qaCorpus{r: r, storeDir: storeDir, src: filepath.Join(t.TempDir(), "src"), files: map[string][]byte{}}
	add := func(rel string, data []byte) {
		writeFile(t, filepath.Join(c.src, filepath.FromSlash(rel)), data)
		c.files[rel] = data
	}
	for i := range 6 {
		add(fmt.Sprintf("files/r%02d.bin", i), qaRand(uint64(100+i), 60<<10+i*50<<10))
	}
	dup := qaRand(200, 200<<10)
	add("files/dup-a.bin", dup)
	add("other/dup-b.bin", dup)
	add("big/huge.bin", qaRand(300, 5<<20))
	add("text/notes.txt", textBytes(7, 300<<10))
	add("tiny", []byte("x"))
	c.snaps = append(c.snaps, backupDir(t, r, c.src, backup.Options{}))
	add("later/new1.bin", qaRand(400, 150<<10))
	c.snaps = append(c.snaps, backupDir(t, r, c.src, backup.Options{}))
	add("later2/new2.bin", qaRand(500, 150<<10))
	c.snaps = append(c.snaps, backupDir(t, r, c.src, backup.Options{}))
	return c
}

// qaPackBlobs groups the index by pack, each pack's blobs by offset.
func qaPackBlobs(r *engine.Repo) map[crypto.ID][]format.BlobLoc {
	m := map[crypto.ID][]format.BlobLoc{}
	r.Index.Each(func(b format.BlobLoc, pack crypto.ID) { m[pack] = append(m[pack], b) })
	for _, bs := range m {
		sort.Slice(bs, func(i, j int) bool { return bs[i].Offset < bs[j].Offset })
	}
	return m
}

func TestIndexMatchesTrailers(t *testing.T) {
	c := qaBuildCorpus(t)
	ctx := context.Background()
	r := reopen(t, c.storeDir) // the index as stored, not as built in memory
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	packs := r.Index.Packs()
	kinds := map[format.BlobKind]int{}
	for _, k := range packs {
		kinds[k]++
	}
	if kinds[format.BlobData] < 2 || kinds[format.BlobTree] < 2 {
		t.Fatalf("want several packs of each kind, have %v", kinds)
	}
	// What the index files say about each pack.
	inFiles := map[crypto.ID]format.IndexPack{}
	err := r.Storage().List(ctx, store.KindIndex, func(o store.ObjectInfo) error {
		ips, err := r.ReadIndexFile(ctx, o.Handle)
		if err != nil {
			return err
		}
		for _, ip := range ips {
			if _, dup := inFiles[ip.ID]; dup {
				t.Errorf("pack %s is in two index entries", ip.ID.Short())
			}
			inFiles[ip.ID] = ip
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inFiles) != len(packs) {
		t.Errorf("index files name %d packs, the loaded index %d", len(inFiles), len(packs))
	}
	trailers := map[crypto.ID][]format.BlobLoc{}
	for id, kind := range packs {
		tr, err := r.ReadTrailer(ctx, kind, id)
		if err != nil {
			t.Errorf("pack %s: %v", id.Short(), err)
			continue
		}
		trailers[id] = tr
		ip := inFiles[id]
		if ip.Kind != kind || !reflect.DeepEqual(tr, ip.Blobs) {
			t.Errorf("pack %s (%v): trailer %+v\nindex file (%v) %+v", id.Short(), kind, tr, ip.Kind, ip.Blobs)
		}
		for _, b := range tr {
			if b.Kind != kind {
				t.Errorf("pack %s (%v) holds a %v blob", id.Short(), kind, b.Kind)
			}
		}
	}
	// Every location the loaded index answers with is its pack's trailer
	// entry.
	r.Index.Each(func(b format.BlobLoc, pack crypto.ID) {
		for _, x := range trailers[pack] {
			if x.ID == b.ID {
				if x != b {
					t.Errorf("blob %s: index %+v, trailer %+v", b.ID.Short(), b, x)
				}
				return
			}
		}
		t.Errorf("blob %s: the index puts it in pack %s, whose trailer does not list it", b.ID.Short(), pack.Short())
	})
	// Every pack file is indexed, under the directory of its kind, and
	// named by the hash of its bytes.
	seen := map[crypto.ID]bool{}
	for _, kind := range []format.BlobKind{format.BlobData, format.BlobTree} {
		err := r.Storage().List(ctx, engine.PackKind(kind), func(o store.ObjectInfo) error {
			id, err := crypto.ParseID(o.Handle.Name)
			if err != nil {
				return err
			}
			seen[id] = true
			if k, ok := packs[id]; !ok || k != kind {
				t.Errorf("pack file %s: indexed %v as %v", o.Handle, ok, k)
			}
			data, err := r.Storage().Get(ctx, o.Handle, 0, -1)
			if err != nil {
				return err
			}
			if crypto.Hash(data) != id {
				t.Errorf("pack file %s does not hash to its name", o.Handle)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != len(packs) {
		t.Errorf("%d pack files, %d indexed packs", len(seen), len(packs))
	}
}

// qaFileChunks maps every data blob of the corpus to the snapshot paths
// ("/" + relative path) of the files holding it, read through the tree of
// the last snapshot (which holds every file).
func qaFileChunks(t testing.TB, c *qaCorpus) map[crypto.ID]map[string]bool {
	t.Helper()
	ctx := context.Background()
	m := map[crypto.ID]map[string]bool{}
	sn := c.snaps[len(c.snaps)-1]
	for rel, data := range c.files {
		n, err := c.r.ResolvePath(ctx, sn, "/"+rel, true)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := c.r.FileChunks(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var total uint64
		for _, ch := range cs {
			if m[ch.ID] == nil {
				m[ch.ID] = map[string]bool{}
			}
			m[ch.ID]["/"+rel] = true
			total += uint64(ch.Size)
		}
		if total != uint64(len(data)) {
			t.Fatalf("%s: chunks of %d bytes for %d", rel, total, len(data))
		}
	}
	return m
}

// qaTreeOwners maps every tree blob of sn to the path check names when it
// is bad: "/dir/" for a directory blob (or page), "/dir/file" for a chunk
// list.
func qaTreeOwners(t testing.TB, r *engine.Repo, sn *engine.Snapshot) map[crypto.ID]string {
	t.Helper()
	ctx := context.Background()
	m := map[crypto.ID]string{}
	var walk func(id crypto.ID, path string)
	walk = func(id crypto.ID, path string) {
		m[id] = path
		d, err := r.LoadDir(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.PageIDs(ctx, d, func(id crypto.ID) { m[id] = path }); err != nil {
			t.Fatal(err)
		}
		it := r.Iter(d)
		for {
			n, ok, err := it.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return
			}
			switch {
			case n.Type == tree.TypeDir:
				walk(n.Subtree, path+n.Name+"/")
			case n.Type == tree.TypeFile && !n.ChunkList.IsZero():
				m[n.ChunkList] = path + n.Name
			}
		}
	}
	walk(sn.Root, "/")
	return m
}

// qaFlipTrial is one corrupted byte.
type qaFlipTrial struct {
	name string
	kind format.BlobKind
	pack crypto.ID
	pos  int64
}

func TestFlippedByteInPack(t *testing.T) {
	c := qaBuildCorpus(t)
	ctx := context.Background()
	r := c.r
	packs := r.Index.Packs()
	byPack := qaPackBlobs(r)
	chunkFiles := qaFileChunks(t, c)
	last := c.snaps[len(c.snaps)-1]
	owners := make([]map[crypto.ID]string, len(c.snaps))
	for i, sn := range c.snaps {
		owners[i] = qaTreeOwners(t, r, sn)
	}
	packSize := func(kind format.BlobKind, id crypto.ID) int64 {
		fi, err := os.Stat(qaPackPath(c.storeDir, kind, id))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	loc := func(id crypto.ID) (format.BlobLoc, crypto.ID) {
		b, pack, ok := r.Index.Lookup(id)
		if !ok {
			t.Fatalf("blob %s not indexed", id.Short())
		}
		return b, pack
	}
	chunkOf := func(rel string, i int) crypto.ID {
		n, err := r.ResolvePath(ctx, last, "/"+rel, true)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := r.FileChunks(ctx, n)
		if err != nil || len(cs) <= i {
			t.Fatalf("%s: %d chunks, %v", rel, len(cs), err)
		}
		return cs[i].ID
	}
	huge, err := r.ResolvePath(ctx, last, "/big/huge.bin", true)
	if err != nil {
		t.Fatal(err)
	}
	if huge.ChunkList.IsZero() {
		t.Fatal("test setup: big/huge.bin has no chunk list")
	}
	filesDir, err := r.ResolvePath(ctx, last, "/files", false)
	if err != nil {
		t.Fatal(err)
	}
	var dataPack, treePack crypto.ID
	for id, k := range packs {
		if k == format.BlobData && (dataPack.IsZero() || id.String() < dataPack.String()) {
			dataPack = id
		}
		if k == format.BlobTree && (treePack.IsZero() || id.String() < treePack.String()) {
			treePack = id
		}
	}
	trailerStart := func(pack crypto.ID) int64 {
		bs := byPack[pack]
		return int64(bs[len(bs)-1].Offset + bs[len(bs)-1].Length)
	}
	inBlob := func(name string, id crypto.ID, at func(b format.BlobLoc) int64) qaFlipTrial {
		b, pack := loc(id)
		return qaFlipTrial{name, b.Kind, pack, int64(b.Offset) + at(b)}
	}
	mid := func(b format.BlobLoc) int64 { return int64(b.Length / 2) }
	trials := []qaFlipTrial{
		inBlob("data blob shared by two files", chunkOf("files/dup-a.bin", 1), mid),
		inBlob("data blob nonce", chunkOf("files/r03.bin", 0), func(format.BlobLoc) int64 { return 3 }),
		inBlob("data blob tag", chunkOf("files/r05.bin", 2), func(b format.BlobLoc) int64 { return int64(b.Length) - 1 }),
		inBlob("data blob of the chunk-listed file", chunkOf("big/huge.bin", 70), mid),
		inBlob("compressed data blob", chunkOf("text/notes.txt", 0), mid),
		{"data pack trailer", format.BlobData, dataPack, trailerStart(dataPack) + 30},
		{"data pack trailer length, low byte", format.BlobData, dataPack, packSize(format.BlobData, dataPack) - 4},
		{"data pack trailer length, high byte", format.BlobData, dataPack, packSize(format.BlobData, dataPack) - 1},
		inBlob("root directory", last.Root, mid),
		inBlob("subdirectory", filesDir.Subtree, mid),
		inBlob("chunk list", huge.ChunkList, mid),
		{"tree pack trailer", format.BlobTree, treePack, trailerStart(treePack) + 1},
		{"tree pack trailer length", format.BlobTree, treePack, packSize(format.BlobTree, treePack) - 2},
	}
	// Random ones, reproducible from the seed.
	seed := uint64(20261125)
	if v := os.Getenv("COFFER_FLIP_SEED"); v != "" { // to explore other seeds
		if _, err := fmt.Sscan(v, &seed); err != nil {
			t.Fatalf("COFFER_FLIP_SEED=%q: %v", v, err)
		}
	}
	t.Logf("random trials use seed %d (set COFFER_FLIP_SEED to change it)", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))
	var ids []crypto.ID
	for id := range packs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for i := range 16 {
		id := ids[rng.IntN(len(ids))]
		if i%3 == 0 { // tree packs are few; give them their share
			id = treePack
			for _, x := range ids {
				if packs[x] == format.BlobTree && rng.IntN(2) == 0 {
					id = x
				}
			}
		}
		pos := rng.Int64N(packSize(packs[id], id))
		trials = append(trials, qaFlipTrial{fmt.Sprintf("random %d (seed %d)", i, seed), packs[id], id, pos})
	}

	for _, tr := range trials {
		t.Run(tr.name, func(t *testing.T) {
			t.Logf("flipping byte %d of %v pack %s", tr.pos, tr.kind, tr.pack.Short())
			// Where did it land?
			var hit *format.BlobLoc
			for i, b := range byPack[tr.pack] {
				if tr.pos >= int64(b.Offset) && tr.pos < int64(b.Offset+b.Length) {
					hit = &byPack[tr.pack][i]
				}
			}
			// What should be lost: files of the last snapshot (relative
			// paths), and the paths check should name.
			lost := map[string]bool{}
			named := map[string]bool{}
			switch {
			case hit == nil:
				t.Logf("outside every blob (trailer area)")
			case hit.Kind == format.BlobData:
				named = chunkFiles[hit.ID]
				if len(named) == 0 {
					t.Fatalf("data blob %s belongs to no file", hit.ID.Short())
				}
				for p := range named {
					lost[strings.TrimPrefix(p, "/")] = true
				}
				t.Logf("in data blob %s of %v", hit.ID.Short(), named)
			default:
				for _, o := range owners {
					if p, ok := o[hit.ID]; ok {
						named[p] = true
					}
				}
				if len(named) == 0 {
					t.Fatalf("tree blob %s belongs to no snapshot", hit.ID.Short())
				}
				if p, ok := owners[len(owners)-1][hit.ID]; ok {
					for rel := range c.files {
						if "/"+rel == p || (strings.HasSuffix(p, "/") && strings.HasPrefix("/"+rel, p)) {
							lost[rel] = true
						}
					}
				}
				t.Logf("in tree blob %s of %v", hit.ID.Short(), named)
			}

			dir := filepath.Join(t.TempDir(), "store")
			qaCopyDir(t, c.storeDir, dir)
			pp := qaPackPath(dir, tr.kind, tr.pack)
			data, err := os.ReadFile(pp)
			if err != nil {
				t.Fatal(err)
			}
			data[tr.pos] ^= 0xff
			if err := os.WriteFile(pp, data, 0o600); err != nil {
				t.Fatal(err)
			}

			cr := reopen(t, dir)
			res, err := check.Run(ctx, cr, check.Options{})
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if res.OK() {
				t.Fatal("check found nothing wrong")
			}
			packNamed := false
			gotNamed := map[string]bool{}
			for _, p := range res.Problems {
				t.Logf("problem: %+v", p)
				if p.Pack == tr.pack.Short() && p.Path == "" {
					packNamed = true
					continue
				}
				if p.Path == "" {
					t.Errorf("problem names neither the pack nor a path: %+v", p)
					continue
				}
				gotNamed[p.Path] = true
				if hit != nil && hit.Kind == format.BlobData && p.Blob != hit.ID.Short() {
					t.Errorf("problem names blob %q, want %s: %+v", p.Blob, hit.ID.Short(), p)
				}
			}
			if !packNamed {
				t.Errorf("no problem names pack %s", tr.pack.Short())
			}
			if !reflect.DeepEqual(gotNamed, named) && !(len(gotNamed) == 0 && len(named) == 0) {
				t.Errorf("check named paths %v, want exactly %v", gotNamed, named)
			}
			if hit != nil && hit.Kind == format.BlobTree {
				for p := range gotNamed {
					if !strings.HasSuffix(p, "/") && p != "/big/huge.bin" {
						t.Errorf("tree damage named %q, neither a directory nor the chunk-listed file", p)
					}
				}
			}

			// Restore the last snapshot from the damaged store.
			sn, err := cr.LoadSnapshot(ctx, last.ID)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			dst, err := restore.NewFolder(out)
			if err != nil {
				t.Fatal(err)
			}
			warned := map[string]bool{}
			_, err = restore.Restore(ctx, cr, sn.RootNode(), dst, restore.Options{Warn: func(p string, err error) { warned[p] = true }})
			var re *restore.Error
			if len(lost) > 0 {
				if !errors.As(err, &re) {
					t.Fatalf("restore: %v, want a RestoreError", err)
				}
			} else if err != nil {
				t.Fatalf("restore of an undamaged snapshot: %v (warned %v)", err, warned)
			}
			wantWarned := map[string]bool{} // restore names entries "/rel"
			for rel := range lost {
				wantWarned["/"+rel] = true
			}
			if hit != nil && hit.Kind == format.BlobData && !reflect.DeepEqual(warned, wantWarned) {
				t.Errorf("restore warned about %v, want %v", warned, wantWarned)
			}
			for rel, want := range c.files {
				got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(rel)))
				if lost[rel] {
					if err == nil {
						t.Errorf("%s: restored (%d bytes) from a damaged blob", rel, len(got))
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: not restored: %v", rel, err)
				} else if !bytes.Equal(got, want) {
					t.Errorf("%s: restored content differs", rel)
				}
			}
		})
	}
}

// qaSecretNeedles are the forms in which a secret could leak into stored
// bytes: itself, hex, and base64 at each of the three alignments (the
// middle of an encoding does not depend on what surrounds it).
func qaSecretNeedles(secret string) map[string][]byte {
	m := map[string][]byte{
		"raw":       []byte(secret),
		"hex":       []byte(hex.EncodeToString([]byte(secret))),
		"HEX":       []byte(strings.ToUpper(hex.EncodeToString([]byte(secret)))),
		"utf16":     nil,
		"lowercase": []byte(strings.ToLower(secret)),
	}
	var u16 []byte
	for _, c := range []byte(secret) {
		u16 = append(u16, c, 0)
	}
	m["utf16"] = u16
	for shift := range 3 {
		for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64url": base64.URLEncoding} {
			s := enc.EncodeToString(append(bytes.Repeat([]byte{0}, shift), secret...))
			// Drop the characters that mix in the padding or the prefix.
			core := s[4 : len(s)-4]
			m[fmt.Sprintf("%s+%d", name, shift)] = []byte(core)
		}
	}
	return m
}

// qaFindSecrets returns where any needle occurs in a file under dir (or in
// a name under dir).
func qaFindSecrets(t testing.TB, dir string, secrets []string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var data []byte
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			data, err = io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
		}
		for _, s := range secrets {
			for form, needle := range qaSecretNeedles(s) {
				if bytes.Contains(data, needle) {
					found = append(found, fmt.Sprintf("%s: content holds %q as %s", rel, s, form))
				}
				if strings.Contains(rel, string(needle)) {
					found = append(found, fmt.Sprintf("%s: name holds %q as %s", rel, s, form))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestNoPlaintextInStore(t *testing.T) {
	const marker = "COFFER-MARKER-7f3a9c"
	const dirName = "secret-dir-name-4242"
	const fileName = "secret-file-name-9191.txt"
	secrets := []string{marker, dirName, fileName}
	r, storeDir := newTestRepo(t, engine.CreateOptions{Chunker: testChunker, PackSize: 256 << 10})
	src := filepath.Join(t.TempDir(), "src")
	// Compressible: the marker alone, and text with markers.
	writeFile(t, filepath.Join(src, dirName, fileName), bytes.Repeat([]byte(marker+"\n"), 20000))
	text := textBytes(11, 400<<10)
	for i := 1000; i+len(marker) < len(text); i += 7919 {
		copy(text[i:], marker)
	}
	writeFile(t, filepath.Join(src, "logs", "app.log"), text)
	// Incompressible: random data with markers.
	rnd := qaRand(12, 600<<10)
	for i := 333; i+len(marker) < len(rnd); i += 10007 {
		copy(rnd[i:], marker)
	}
	writeFile(t, filepath.Join(src, dirName, "random.bin"), rnd)
	writeFile(t, filepath.Join(src, marker+".txt"), []byte("a file named after the marker"))
	if err := os.Symlink("../"+marker+"/target", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	// The control: the source itself does hold the secrets in every form
	// the search looks for raw bytes.
	if found := qaFindSecrets(t, src, secrets); len(found) == 0 {
		t.Fatal("the search does not find the marker in the source")
	}
	sn := backupDir(t, r, src, backup.Options{Tags: []string{marker}, Host: dirName})
	if sn.Stats.Files != 4 {
		t.Fatalf("backed up %d files, want 4", sn.Stats.Files)
	}
	if found := qaFindSecrets(t, storeDir, secrets); len(found) > 0 {
		t.Errorf("plaintext in the store:\n%s", strings.Join(found, "\n"))
	}
	// And the data really is in there.
	out := filepath.Join(t.TempDir(), "out")
	if err := restoreAll(t, reopen(t, storeDir), sn, out); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, out)
}

// TestKeySlots: a second passphrase opens the store to the same data; the
// last slot cannot be removed; a removed passphrase no longer opens it.
func TestKeySlots(t *testing.T) {
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	ctx := t.Context()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("slots"))
	sn := backupDir(t, r, src, backup.Options{})
	slot, err := r.AddKeySlot(ctx, []byte("second"), cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.NewFolder(path)
	r2, err := engine.Open(ctx, st, []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if r2.SlotID() != slot.ID {
		t.Fatalf("opened by slot %s, want %s", r2.SlotID(), slot.ID)
	}
	if _, err := r2.FindSnapshot(ctx, sn.ID.String()); err != nil {
		t.Fatal(err)
	}
	if err := r2.RemoveKeySlot(ctx, r.SlotID()); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Open(ctx, st, []byte("test passphrase")); !errors.Is(err, engine.ErrWrongPassphrase) {
		t.Fatalf("removed passphrase: %v", err)
	}
	if err := r2.RemoveKeySlot(ctx, slot.ID); err == nil || !strings.Contains(err.Error(), "only one") {
		t.Fatalf("removing the last slot: %v", err)
	}
}

// damagedCache serves a damaged copy of every range until told it failed,
// as a cache whose file went bad on disk would.
type damagedCache struct {
	store.Storage
	mu      sync.Mutex
	dropped map[string]bool
}

func (c *damagedCache) Get(ctx context.Context, name store.Handle, off, n int64) ([]byte, error) {
	data, err := c.Storage.Get(ctx, name, off, n)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && name != store.ConfigHandle && !c.dropped[fmt.Sprint(name, off, n)] && len(data) > 0 {
		data[len(data)/2] ^= 1
	}
	return data, err
}

func (c *damagedCache) Invalidate(name store.Handle, off, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropped[fmt.Sprint(name, off, n)] = true
}

// TestInvalidateDamagedCache: a blob or object whose cached bytes fail
// authentication is read again from the store, not reported lost.
func TestInvalidateDamagedCache(t *testing.T) {
	r, path := newTestRepo(t, engine.CreateOptions{Chunker: testChunker})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), textBytes(3, 100<<10))
	sn := backupDir(t, r, src, backup.Options{})
	st, _ := store.NewFolder(path)
	dc := &damagedCache{Storage: st, dropped: map[string]bool{}}
	r2, err := engine.Open(t.Context(), dc, []byte("test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	sn2, err := r2.LoadSnapshot(t.Context(), sn.ID)
	if err != nil {
		t.Fatal(err)
	}
	n, err := r2.ResolvePath(t.Context(), sn2, "/f", true)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r2.WriteFileTo(t.Context(), n, &buf, 2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), textBytes(3, 100<<10)) {
		t.Fatal("content differs")
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if len(dc.dropped) == 0 {
		t.Fatal("nothing was invalidated")
	}
}

// qaConfigPath is where a folder store at root keeps its config.
func qaConfigPath(root string) string {
	return filepath.Join(root, filepath.FromSlash(store.ObjectName(store.ConfigHandle)))
}

// qaPackPath is where a folder store at root keeps a pack.
func qaPackPath(root string, kind format.BlobKind, id crypto.ID) string {
	return filepath.Join(root, filepath.FromSlash(store.ObjectName(engine.PackHandle(kind, id))))
}

// TestCheckWalksAheadOfBadIndexPage damages, in a copy of the format-2
// fixture (test/testdata/store-v2), the last index page of /many and the
// data of a file listed before it: check names the directory as partly
// unreadable and still names the damaged file, which it reaches before
// the bad index page.
func TestCheckWalksAheadOfBadIndexPage(t *testing.T) {
	ctx := context.Background()
	fixture := filepath.Join("..", "test", "testdata", "store-v2")
	pass, err := os.ReadFile(fixture + ".passphrase")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	qaCopyDir(t, fixture, dir)
	open := func() *engine.Repo {
		st, err := store.NewFolder(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := engine.Open(ctx, st, bytes.TrimSpace(pass))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := open()
	sn, err := r.FindSnapshot(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.ResolvePath(ctx, sn, "/many", false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.LoadDir(ctx, n.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if d.Height < 1 || len(d.Pages) < 2 {
		t.Fatalf("/many: height %d, %d references; the fixture should give it index pages", d.Height, len(d.Pages))
	}
	badIndex := d.Pages[len(d.Pages)-1]
	var file *tree.Node
	it := r.Iter(d)
	for file == nil {
		nd, ok, err := it.Next(ctx)
		if err != nil || !ok || nd.SortKey() >= badIndex.First {
			t.Fatalf("no non-empty file ahead of the last index page of /many (%v)", err)
		}
		if nd.Type == tree.TypeFile && nd.Size > 0 && nd.ChunkList.IsZero() {
			file = nd
		}
	}
	damage := func(id crypto.ID) {
		t.Helper()
		loc, pack, ok := r.Index.Lookup(id)
		if !ok {
			t.Fatalf("blob %s is not indexed", id.Short())
		}
		pp := qaPackPath(dir, loc.Kind, pack)
		data, err := os.ReadFile(pp)
		if err != nil {
			t.Fatal(err)
		}
		data[loc.Offset+loc.Length/2] ^= 0xff
		if err := os.WriteFile(pp, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	damage(badIndex.ID)
	damage(file.Chunks[0].ID)

	res, err := check.Run(ctx, open(), check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var dirNamed, fileNamed bool
	for _, p := range res.Problems {
		t.Logf("problem: %+v", p)
		dirNamed = dirNamed || (p.Path == "/many/" && strings.Contains(p.Message, "partly unreadable"))
		fileNamed = fileNamed || p.Path == "/many/"+file.Name
	}
	if !dirNamed || !fileNamed {
		t.Errorf("check names /many/ partly unreadable: %v, and /many/%s (damaged, ahead of the bad index page): %v", dirNamed, file.Name, fileNamed)
	}
}
