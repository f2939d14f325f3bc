package s3io

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testnet"
)

// netClient is a client of bucket b at endpoint with a timeout, whose log
// lines are returned by the second result.
func netClient(t *testing.T, endpoint, timeout string, set ...func(*Options)) (*Client, func() []string) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	loc := "s3://b/p?access_key=k&secret_access_key=s&region=us-east-1"
	if endpoint != "" {
		loc += "&endpoint=" + endpoint
	}
	if timeout != "" {
		loc += "&timeout=" + timeout
	}
	o, err := ParseLocation(loc)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logged []string
	o.Log = func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, fmt.Sprintf(format, a...))
	}
	for _, f := range set {
		f(&o)
	}
	c, err := NewClient(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), logged...)
	}
}

// closedPort is an address where nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// get GETs the config object and says how long it took.
func get(c *Client) (error, time.Duration) {
	start := time.Now()
	_, err := NewStorage(c).Get(context.Background(), store.ConfigHandle, 0, -1)
	return err, time.Since(start)
}

func wantUnreachable(t *testing.T, err error, took, limit time.Duration, msg ...string) {
	t.Helper()
	t.Logf("%v after %v", err, took.Round(time.Millisecond))
	if err == nil {
		t.Fatal("no error")
	}
	if took > limit {
		t.Errorf("took %v, want at most %v", took, limit)
	}
	if !errors.Is(err, ErrUnreachable) || !store.IsPermanent(err) {
		t.Errorf("%v: not a permanent ErrUnreachable", err)
	}
	for _, m := range msg {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("message %q lacks %q", err, m)
		}
	}
}

// A server that accepts and never answers fails the request after the
// timeout, tried twice, with a message that names it; the retry is a log
// line.
func TestHangingEndpoint(t *testing.T) {
	addr := testnet.NeverAnswers(t)
	c, logged := netClient(t, "http://"+addr, "500ms")
	err, took := get(c)
	wantUnreachable(t, err, took, 3*time.Second, "http://"+addr+" did not answer within 500ms (2 tries)", "timeout=")
	if took < time.Second {
		t.Errorf("took %v: the timeout was not retried once", took)
	}
	lines := logged()
	if len(lines) != 1 || !strings.Contains(lines[0], "retrying GetObject on http://"+addr+" after ") ||
		!strings.HasSuffix(lines[0], "(attempt 2/2)") {
		t.Errorf("log lines %q, want one retry line", lines)
	}
}

// COFFER_S3_TIMEOUT sets the timeout when the location does not.
func TestTimeoutFromEnvironment(t *testing.T) {
	addr := testnet.NeverAnswers(t)
	t.Setenv(TimeoutEnv, "300ms")
	c, _ := netClient(t, "http://"+addr, "")
	err, took := get(c)
	wantUnreachable(t, err, took, 2*time.Second, "did not answer within 300ms")
	t.Setenv(TimeoutEnv, "soon")
	if _, err := NewClient(context.Background(), Options{Bucket: "b"}); err == nil || !strings.Contains(err.Error(), TimeoutEnv) {
		t.Errorf("a bad %s: %v", TimeoutEnv, err)
	}
}

// A body that stops coming fails after the timeout instead of hanging.
func TestStalledBody(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		w.Write([]byte("some"))
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := netClient(t, srv.URL, "200ms")
	start := time.Now()
	out, err := c.getRange(context.Background(), c.key("x"), "", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	buf := make([]byte, 100)
	n, err := out.Body.Read(buf)
	for err == nil {
		var m int
		m, err = out.Body.Read(buf[n:])
		n += m
	}
	if took := time.Since(start); took > 2*time.Second || !strings.Contains(err.Error(), "stalled for 200ms") {
		t.Fatalf("read %d bytes, then %v after %v", n, err, took)
	}
}

// Nothing listening fails at once, without retries.
func TestRefusedEndpoint(t *testing.T) {
	addr := closedPort(t)
	c, logged := netClient(t, "http://"+addr, "")
	err, took := get(c)
	wantUnreachable(t, err, took, 2*time.Second, "nothing listens at http://"+addr+": check the endpoint and port")
	if lines := logged(); len(lines) != 0 {
		t.Errorf("retried: %q", lines)
	}
}

// https to a plain http server fails at once and says so.
func TestTLSMismatch(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	c, logged := netClient(t, addr, "", func(o *Options) { o.UseTLS = new(true) })
	err, took := get(c)
	wantUnreachable(t, err, took, 2*time.Second, "https://"+addr+" does not speak TLS: add ?use_tls=false")
	if lines := logged(); len(lines) != 0 {
		t.Errorf("retried: %q", lines)
	}
}

// A server whose certificate is not trusted fails at once and says so.
func TestUntrustedCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the client drops
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, logged := netClient(t, srv.URL, "")
	err, took := get(c)
	wantUnreachable(t, err, took, 2*time.Second, srv.URL+": its TLS certificate is not trusted", "AWS_CA_BUNDLE")
	if lines := logged(); len(lines) != 0 {
		t.Errorf("retried: %q", lines)
	}
}

// A name that does not resolve fails at once; without an endpoint, the
// message tells how to give one.
func TestUnresolvedHost(t *testing.T) {
	c, _ := netClient(t, "http://nonexistent.invalid:9000", "")
	err, took := get(c)
	wantUnreachable(t, err, took, 5*time.Second, "cannot resolve nonexistent.invalid: check the endpoint")

	n := &netCheck{}
	ne := n.check(&net.DNSError{Err: "no such host", Name: "b.s3.garage.amazonaws.com", IsNotFound: true}, "https://b.s3.garage.amazonaws.com", &opState{})
	if ne == nil || !strings.Contains(ne.Msg, "cannot resolve b.s3.garage.amazonaws.com: if the bucket lives on another server than AWS, give its endpoint with ?endpoint=… or AWS_ENDPOINT_URL") {
		t.Errorf("no endpoint hint: %v", ne)
	}
	st := &opState{timeouts: timeoutAttempts - 1}
	ne = n.check(&net.DNSError{Err: "i/o timeout", Name: "minio.lan", IsTimeout: true}, "https://minio.lan", st)
	if ne == nil || ne.retry || !strings.Contains(ne.Msg, "cannot resolve minio.lan: the name server did not answer (2 tries)") {
		t.Errorf("a DNS timeout: %v", ne)
	}
}

// A bad timeout option is refused.
func TestTimeoutOption(t *testing.T) {
	for v, want := range map[string]time.Duration{"3s": 3 * time.Second, "2m": 2 * time.Minute, "45": 45 * time.Second, "0.5": 500 * time.Millisecond} {
		var o Options
		if err := o.Set("timeout", v); err != nil || o.Timeout != want {
			t.Errorf("timeout=%s: %v, %v", v, o.Timeout, err)
		}
	}
	for _, v := range []string{"", "0", "-1s", "soon"} {
		var o Options
		if err := o.Set("timeout", v); err == nil {
			t.Errorf("timeout=%q accepted", v)
		}
	}
}
