package test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// Neither MinIO nor gofakes3 keeps archive storage classes, so these
// tests put the proxy in front of gofakes3: it says what S3 says of an
// archived object and records the classes coffer asks for.

func invalidObjectState(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the object's storage class</Message></Error>`)
}

var contentsRE = regexp.MustCompile(`(?s)<Contents>.*?</Contents>`)
var classRE = regexp.MustCompile(`<StorageClass>[^<]*</StorageClass>`)

// rewriteClasses makes a listing say class(key) of each key where class
// returns one.
func rewriteClasses(resp *http.Response, class func(key string) string) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	body = contentsRE.ReplaceAllFunc(body, func(c []byte) []byte {
		m := regexp.MustCompile(`<Key>([^<]*)</Key>`).FindSubmatch(c)
		if m == nil {
			return c
		}
		sc := class(string(m[1]))
		if sc == "" {
			return c
		}
		c = classRE.ReplaceAll(c, nil)
		return bytes.Replace(c, []byte("</Contents>"), []byte("<StorageClass>"+sc+"</StorageClass></Contents>"), 1)
	})
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
	return nil
}

// TestS3GlacierSkipped: objects in GLACIER or DEEP_ARCHIVE that are not
// restored are skipped with a warning naming each, counted, and the
// snapshot is partial (exit 3); a restored (thawed) GLACIER object and
// the others are backed up.
func TestS3GlacierSkipped(t *testing.T) {
	be, endpoint := fakeS3(t)
	be.CreateBucket("cold")
	bodies := map[string]string{"warm/a": "warm a", "cold/frozen": "frozen", "cold/thawed": "thawed", "deep/frozen": "deep", "z": "last"}
	for k, v := range bodies {
		if _, err := be.PutObject("cold", k, map[string]string{}, strings.NewReader(v), int64(len(v)), nil); err != nil {
			t.Fatal(err)
		}
	}
	class := func(key string) string {
		switch {
		case strings.HasPrefix(key, "cold/"):
			return "GLACIER"
		case strings.HasPrefix(key, "deep/"):
			return "DEEP_ARCHIVE"
		}
		return ""
	}
	p := newProxy(t, endpoint)
	p.rewrite = func(kind string, resp *http.Response) error {
		if kind == "ListObjects" {
			return rewriteClasses(resp, class)
		}
		return nil
	}
	var mu sync.Mutex
	putClasses := map[string]string{}
	p.hook = func(w http.ResponseWriter, r *http.Request, kind string) bool {
		switch {
		case kind == "GetObject" && strings.HasSuffix(r.URL.Path, "/frozen"):
			invalidObjectState(w)
			return true
		case kind == "PutObject":
			mu.Lock()
			putClasses[r.URL.Path] = r.Header.Get("X-Amz-Storage-Class")
			mu.Unlock()
		}
		return false
	}
	e := newEnv(t)
	e.extra = append(fakeEnv(endpoint), p.env()...)
	r := e.fail(3, []string{"skipped cold/frozen", "skipped deep/frozen", "archive storage class and not restored",
		"2 entries were skipped", "partial"}, "backup", "s3://cold/")
	if strings.Contains(r.stderr, "thawed") || strings.Contains(r.stderr, "warm") {
		t.Fatalf("backup skipped what it could read:\n%s", r)
	}
	if !strings.Contains(e.ok("ls").stdout, "(partial)") {
		t.Fatal("ls does not mark the snapshot partial")
	}
	for _, k := range []string{"warm/a", "cold/thawed", "z"} {
		if got := e.ok("cat", "latest:/"+k).stdout; got != bodies[k] {
			t.Errorf("cat %s: %q", k, got)
		}
	}
	e.fail(1, []string{"/cold/frozen"}, "cat", "latest:/cold/frozen")
	// The snapshot keeps the class the listing gave: a restore asked to
	// keep classes asks for it.
	be.CreateBucket("back")
	e.ok("restore", "-to", "s3://back/?keep_storage_class=true", "latest")
	mu.Lock()
	defer mu.Unlock()
	if putClasses["/back/cold/thawed"] != "GLACIER" || putClasses["/back/warm/a"] != "" || len(putClasses) != 3 {
		t.Errorf("restore with keep_storage_class: PUT classes %v", putClasses)
	}
}

// TestS3StorageClassDataPacksOnly: a store with storage_class=DEEP_ARCHIVE
// asks for it on data packs alone; config, index, tree packs and
// snapshots go up without a class (STANDARD), so with every data pack
// archived, ls still lists snapshots and folders, info works, and reading
// a file says why it cannot.
func TestS3StorageClassDataPacksOnly(t *testing.T) {
	be, endpoint := fakeS3(t)
	be.CreateBucket("store")
	p := newProxy(t, endpoint)
	var mu sync.Mutex
	classes := map[string]string{} // key → x-amz-storage-class of its PUT
	archived := false
	p.hook = func(w http.ResponseWriter, r *http.Request, kind string) bool {
		key := strings.TrimPrefix(r.URL.Path, "/store/p/")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case kind == "PutObject" || (kind == "Multipart" && r.Method == http.MethodPost && r.URL.Query().Has("uploads")):
			classes[key] = r.Header.Get("X-Amz-Storage-Class")
		case kind == "GetObject" && archived && isDataPack(key):
			invalidObjectState(w)
			return true
		}
		return false
	}
	src := filepath.Join(t.TempDir(), "src")
	for i := 0; i < 20; i++ {
		testtree.WriteFile(filepath.Join(src, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%d", i)), testtree.Text(uint64(i), 3000+i))
	}
	e := &env{t: t, store: "s3://store/p/?storage_class=DEEP_ARCHIVE", pass: "pw", extra: append(fakeEnv(endpoint), p.env()...)}
	e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")
	e.backup(src)
	e.backup(src, "--force")

	mu.Lock()
	kinds := map[store.Kind]int{} // a key outside the layout counts as kind 0
	for key, class := range classes {
		h, _ := store.ParseObjectName(key)
		kinds[h.Kind]++
		want := ""
		if h.Kind == store.KindDataPack {
			want = "DEEP_ARCHIVE"
		}
		if class != want {
			t.Errorf("%s was written with storage class %q, want %q", key, class, want)
		}
	}
	archived = true
	mu.Unlock()
	for _, k := range []store.Kind{store.KindConfig, store.KindIndex, store.KindSnapshot, store.KindDataPack, store.KindTreePack} {
		if kinds[k] == 0 {
			t.Errorf("no %s written (written: %v)", k, kinds)
		}
	}

	// Every data pack now answers InvalidObjectState, as in Glacier.
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("ls on a cold store: %d snapshots", n)
	}
	if ls := e.ok("ls", "-recursive", "latest:/d1").stdout; !strings.Contains(ls, "f5") {
		t.Fatalf("ls of a folder on a cold store:\n%s", ls)
	}
	e.ok("info")
	e.fail(1, []string{"archive storage class", "s3:RestoreObject"}, "cat", "latest:/d1/f5")
}

// isDataPack reports whether key (below the store's prefix) names a data
// pack.
func isDataPack(key string) bool {
	h, ok := store.ParseObjectName(key)
	return ok && h.Kind == store.KindDataPack
}
