package test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/s3io"
)

// minioServer is the MinIO the S3 tests share, started on first use on
// 127.0.0.1 and stopped by TestMain (stopS3).
type minioServer struct {
	endpoint   string
	user, pass string
	dir        string
	cmd        *exec.Cmd
	err        error
}

var (
	minioOnce sync.Once
	theMinio  minioServer
	bucketSeq atomic.Int64
)

// minioBinary finds MinIO, building it with scripts/minio.sh when absent.
func minioBinary() (string, error) {
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	out, err := exec.Command("../scripts/minio.sh", "path").Output()
	if err != nil {
		return "", fmt.Errorf("scripts/minio.sh path: %v", err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	inst := exec.Command("../scripts/minio.sh", "install")
	inst.Stdout, inst.Stderr = os.Stderr, os.Stderr
	if err := inst.Run(); err != nil {
		return "", fmt.Errorf("scripts/minio.sh install: %v", err)
	}
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMinio starts the shared MinIO; its data lives in memory (/dev/shm)
// where there is one, so the tests measure coffer rather than fsync.
func startMinio() error {
	bin, err := minioBinary()
	if err != nil {
		return err
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "coffer-minio-")
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	m := &theMinio
	m.dir, m.user, m.pass = dir, "coffer-test-admin", fmt.Sprintf("secret-%d-%d", os.Getpid(), rand.Int64())
	m.endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	log, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, "server", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "data"))
	// MINIO_IDLE_TIMEOUT: the aws CLI (urllib3) sometimes misreads
	// MinIO's answer to an "Expect: 100-continue" PUT, then reads the
	// body until the connection closes, which MinIO does after this
	// idle time: 30 s by default, a minute lost per test run or more.
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.user, "MINIO_ROOT_PASSWORD="+m.pass, "MINIO_BROWSER=off", "MINIO_UPDATE=off",
		"MINIO_IDLE_TIMEOUT=2s")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", bin, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
	return fmt.Errorf("MinIO did not answer on %s within 30s; its log:\n%s", m.endpoint, logText)
}

// stopS3 stops the shared MinIO; TestMain calls it.
func stopS3() {
	if theMinio.cmd != nil && theMinio.cmd.Process != nil {
		theMinio.cmd.Process.Kill()
		theMinio.cmd.Wait()
	}
	if theMinio.dir != "" {
		os.RemoveAll(theMinio.dir)
	}
}

// needMinio returns the shared MinIO, failing (never skipping) the test
// when it cannot run: CI must prove that S3 works.
func needMinio(t testing.TB) *minioServer {
	t.Helper()
	minioOnce.Do(func() { theMinio.err = startMinio() })
	if theMinio.err != nil {
		t.Fatalf("MinIO is needed for the S3 tests and did not start: %v", theMinio.err)
	}
	return &theMinio
}

// awsEnv is the environment that points coffer and the aws CLI at m.
func (m *minioServer) awsEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + m.user, "AWS_SECRET_ACCESS_KEY=" + m.pass, "AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_ENDPOINT_URL=" + m.endpoint, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER="}
}

// bucketName returns a fresh bucket name, not yet created.
func bucketName(what string) string {
	return fmt.Sprintf("t%d-%d-%s", os.Getpid()%100000, bucketSeq.Add(1), what)
}

// newBucket makes a fresh bucket with the aws CLI and returns its name.
func (m *minioServer) newBucket(t testing.TB, what string) string {
	t.Helper()
	name := bucketName(what)
	m.aws(t, "s3api", "create-bucket", "--bucket", name)
	return name
}

// awsPath is the Debian aws CLI, the tests' independent S3 client.
func awsPath() string {
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		return "/usr/bin/aws"
	}
	return "aws"
}

// aws runs the aws CLI against m and returns its stdout.
func (m *minioServer) aws(t testing.TB, args ...string) string {
	t.Helper()
	out, err := m.awsTry(args...)
	if err != nil {
		t.Fatalf("aws %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (m *minioServer) awsTry(args ...string) (string, error) {
	cmd := exec.Command(awsPath(), append([]string{"--endpoint-url", m.endpoint, "--output", "json"}, args...)...)
	cmd.Env = append(cleanEnv(), m.awsEnv()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// s3Object is one line of list-objects-v2.
type s3Object struct {
	Key  string
	Size int64
	ETag string
}

// listObjects lists a bucket (below prefix) with the aws CLI.
func (m *minioServer) listObjects(t testing.TB, bucket, prefix string) []s3Object {
	t.Helper()
	out := m.aws(t, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix)
	var res struct{ Contents []s3Object }
	if strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("list-objects-v2: %v\n%s", err, out)
		}
	}
	for i := range res.Contents {
		res.Contents[i].Key = strings.TrimPrefix(res.Contents[i].Key, prefix)
	}
	sort.Slice(res.Contents, func(i, j int) bool { return res.Contents[i].Key < res.Contents[j].Key })
	return res.Contents
}

// headObject is what head-object says, minus what differs between two
// copies of an object (time, version).
type headObject struct {
	ContentLength      int64
	ContentType        string
	ContentEncoding    string
	ContentLanguage    string
	ContentDisposition string
	CacheControl       string
	Expires            string
	Metadata           map[string]string
}

func (m *minioServer) head(t testing.TB, bucket, key string) headObject {
	t.Helper()
	var h headObject
	out := m.aws(t, "s3api", "head-object", "--bucket", bucket, "--key", key)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("head-object: %v\n%s", err, out)
	}
	return h
}

func (m *minioServer) tags(t testing.TB, bucket, key string) string {
	t.Helper()
	return m.aws(t, "s3api", "get-object-tagging", "--bucket", bucket, "--key", key, "--query", "TagSet")
}

// s3Env is a coffer environment whose store is loc (a folder or an
// s3:// location) with the AWS environment of m.
func newS3Env(t testing.TB, m *minioServer, store string, extra ...string) *env {
	t.Helper()
	e := &env{t: t, store: store, pass: "correct horse battery staple", extra: append(m.awsEnv(), extra...)}
	e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")
	return e
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// proxy is a loopback reverse proxy in front of an S3 server that counts
// requests by kind and can inject faults. SigV4 signs the Host header, so
// the proxy keeps the client's.
type proxy struct {
	srv    *httptest.Server
	counts sync.Map // kind → *atomic.Int64
	// Fault rates, each in [0, 1).
	slowDown, drop, cut, slow float64
	faults                    atomic.Int64
	rnd                       *rand.Rand
	mu                        sync.Mutex
	// hook, if set, sees every request first and answers it itself by
	// returning true.
	hook func(w http.ResponseWriter, r *http.Request, kind string) bool
	// rewrite, if set, may change the server's answers.
	rewrite func(kind string, resp *http.Response) error
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{rnd: rand.New(rand.NewPCG(1, 2))}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	rp.ModifyResponse = func(resp *http.Response) error {
		if p.rewrite == nil {
			return nil
		}
		return p.rewrite(requestKind(resp.Request), resp)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := requestKind(r)
		bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		p.count(kind + " " + bucket)
		if p.hook != nil && p.hook(w, r, kind) {
			return
		}
		p.mu.Lock()
		x := p.rnd.Float64()
		p.mu.Unlock()
		switch {
		case x < p.slowDown:
			p.faults.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		case x < p.slowDown+p.drop:
			p.faults.Add(1)
			panic(http.ErrAbortHandler) // the connection drops, no answer
		case x < p.slowDown+p.drop+p.cut && kind == "GetObject":
			p.faults.Add(1)
			w = &cutWriter{ResponseWriter: w, left: 1000}
		case x < p.slowDown+p.drop+p.cut+p.slow:
			p.faults.Add(1)
			time.Sleep(300 * time.Millisecond)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *proxy) count(kind string) {
	v, _ := p.counts.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// get returns the count of kind of requests on bucket.
func (p *proxy) get(kind, bucket string) int64 {
	if v, ok := p.counts.Load(kind + " " + bucket); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (p *proxy) reset() { p.counts.Range(func(k, _ any) bool { p.counts.Delete(k); return true }) }

func (p *proxy) String() string {
	var parts []string
	p.counts.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// requestKind names the S3 call of a path-style request.
func requestKind(r *http.Request) string {
	q := r.URL.Query()
	path := strings.TrimPrefix(r.URL.Path, "/")
	_, key, _ := strings.Cut(path, "/")
	switch {
	case q.Has("tagging"):
		return r.Method + "Tagging"
	case q.Has("uploads") || q.Has("uploadId"):
		return "Multipart"
	case key == "" && r.Method == http.MethodGet && (q.Has("list-type") || len(q) == 0 || q.Has("prefix")):
		return "ListObjects"
	case key == "":
		return r.Method + "Bucket"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodPut:
		return "PutObject"
	}
	return r.Method
}

// cutWriter breaks the connection after left bytes of the body.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if len(b) > c.left {
		c.ResponseWriter.Write(b[:c.left])
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	c.left -= len(b)
	return c.ResponseWriter.Write(b)
}

// proxyEnv points coffer at the proxy instead of MinIO.
func (p *proxy) env() []string { return []string{"AWS_ENDPOINT_URL=" + p.srv.URL} }

// putFiles uploads the regular files below dir into bucket, keyed by
// their slash paths relative to dir, one PUT each, 16 at once
// (s3io.PutDir). It seeds buckets of thousands of small objects: the
// aws CLI takes about 7 ms of Python a file (15 s for 2,000 here).
// What coffer then writes is still checked with the aws CLI.
func (m *minioServer) putFiles(t testing.TB, dir, bucket string) {
	t.Helper()
	if n, _, err := s3io.PutDir(t.Context(), m.client(t, bucket), dir, 16); err != nil {
		t.Fatalf("put the %d files of %s into %s: %v", n, dir, bucket, err)
	}
}

// eachAtOnce runs fn(i) for every i < n, four at a time, and stops the
// test if one of them failed it: the aws CLI takes most of a second to
// start, and the tests ask it many small things.
func eachAtOnce(t testing.TB, n int, fn func(i int)) {
	t.Helper()
	failed := t.Failed()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
	if !failed && t.Failed() {
		t.FailNow()
	}
}

// client is an s3io client of m at location bucket/prefix.
func (m *minioServer) client(t testing.TB, loc string) *s3io.Client {
	t.Helper()
	q := url.Values{"access_key": {m.user}, "secret_access_key": {m.pass}, "region": {"us-east-1"}, "endpoint": {m.endpoint}}
	o, err := s3io.ParseLocation(fmt.Sprintf("s3://%s?%s", loc, q.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s3io.NewClient(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
