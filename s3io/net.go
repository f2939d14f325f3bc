package s3io

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// DefaultTimeout is how long a request waits for the server when the
// location's timeout option and COFFER_S3_TIMEOUT do not say: for the
// response's headers once the request is sent, and for each next byte of
// a response body.
const DefaultTimeout = 30 * time.Second

// connectTimeout bounds a TCP connect and a TLS handshake (or the
// timeout, if shorter): a server that is up answers both in milliseconds.
const connectTimeout = 10 * time.Second

// timeoutAttempts is how many tries a request that times out gets: one
// retry, on a fresh connection, heals a pooled connection a NAT or a
// firewall dropped in silence; a server that hangs twice is reported.
const timeoutAttempts = 2

// TimeoutEnv overrides DefaultTimeout; a location's timeout option wins
// over it.
const TimeoutEnv = "COFFER_S3_TIMEOUT"

// ParseTimeout reads a timeout: a Go duration ("30s", "2m") or seconds.
func ParseTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil {
			return 0, errors.New("want a duration like 30s or 2m")
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d <= 0 {
		return 0, errors.New("want a duration above zero, like 30s")
	}
	return d, nil
}

// timeout is the option, else COFFER_S3_TIMEOUT, else DefaultTimeout.
func (o *Options) timeout() (time.Duration, error) {
	if o.Timeout > 0 {
		return o.Timeout, nil
	}
	if v := os.Getenv(TimeoutEnv); v != "" {
		d, err := ParseTimeout(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: %w", TimeoutEnv, v, err)
		}
		return d, nil
	}
	return DefaultTimeout, nil
}

// httpClient is the SDK's buildable client (which the configuration
// loader may still give a CA bundle) with coffer's connection pool and
// timeouts. There is no timeout on a whole request: a large upload or
// download takes what it takes. The response-header timeout starts once
// the request, body included, is written, so it does not cut a slow
// upload; a stalled response body is cut by idleBodies.
func httpClient(timeout time.Duration) *awshttp.BuildableClient {
	connect := min(connectTimeout, timeout)
	return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		t.IdleConnTimeout = 90 * time.Second
		t.ResponseHeaderTimeout = timeout
		t.TLSHandshakeTimeout = connect
	}).WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = connect
	})
}

// idleBodies gives every response body an inactivity timeout: a read
// that waits more than d for its first byte aborts the request and fails
// with a timeout, which the readers resume from like any broken body.
type idleBodies struct {
	c s3.HTTPClient
	d time.Duration
}

func (x idleBodies) Do(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	resp, err := x.c.Do(r.WithContext(ctx))
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		cancel()
		return resp, err
	}
	b := &idleBody{rc: resp.Body, d: x.d, cancel: cancel}
	b.t = time.AfterFunc(time.Hour, func() { b.fired.Store(true); cancel() })
	b.t.Stop()
	resp.Body = b
	return resp, nil
}

type idleBody struct {
	rc     io.ReadCloser
	d      time.Duration
	cancel context.CancelFunc
	t      *time.Timer
	fired  atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.t.Reset(b.d)
	n, err := b.rc.Read(p)
	b.t.Stop()
	if err != nil && b.fired.Load() {
		err = &bodyTimeoutError{b.d}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.t.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

type bodyTimeoutError struct{ d time.Duration }

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("the response body stalled for %s", e.d)
}
func (e *bodyTimeoutError) Timeout() bool { return true }

// ErrUnreachable is the Kind of an *Error whose request never got an
// answer: nothing listens, the name does not resolve, TLS on one side
// only, or the server did not answer in time. Its message says what to
// check; the cause is a *NetError.
var ErrUnreachable = errors.New("the S3 server cannot be reached")

// NetError is a request that got no answer from the server, with what to
// check. Retrying it does not help: the retryer gives up at once.
type NetError struct {
	Endpoint string // scheme://host:port the request went to
	Msg      string // what went wrong and what to check
	Err      error  // the transport's error
	retry    bool   // a first timeout: one more try
}

func (e *NetError) Error() string { return e.Msg }
func (e *NetError) Unwrap() error { return e.Err }

// RetryableError tells the SDK's retryer whether to try again.
func (e *NetError) RetryableError() bool { return e.retry }

// netCheck watches each attempt of a request: it logs a line before each
// retry, and turns errors that will not heal into *NetError, which the
// retryer does not retry. A timeout is retried once (timeoutAttempts).
type netCheck struct {
	log            func(format string, args ...any)
	customEndpoint bool // the user gave an endpoint (else AWS)
	pathStyle      bool
	timeout        time.Duration
	maxAttempts    int
}

type opStateKey struct{}

// opState is one operation's attempts, which run one after another.
type opState struct {
	mu       sync.Mutex
	attempts int
	timeouts int
	last     error
}

// addTo puts the check around each attempt, inside the retry loop, once
// the endpoint is resolved (at the end of the finalize step).
func (n *netCheck) addTo(stack *middleware.Stack) error {
	if _, ok := stack.Finalize.Get("Retry"); !ok {
		return nil
	}
	err := stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("cofferOperation",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			return next.HandleFinalize(context.WithValue(ctx, opStateKey{}, &opState{}), in)
		}), "Retry", middleware.Before)
	if err != nil {
		return err
	}
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("cofferAttempt", n.attempt), middleware.After)
}

func (n *netCheck) attempt(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	st, _ := ctx.Value(opStateKey{}).(*opState)
	if st == nil {
		st = &opState{}
	}
	endpoint := ""
	if r, ok := in.Request.(*smithyhttp.Request); ok && r.URL != nil {
		endpoint = r.URL.Scheme + "://" + r.URL.Host
	}
	st.mu.Lock()
	st.attempts++
	attempt, last := st.attempts, st.last
	st.mu.Unlock()
	if attempt > 1 && last != nil && n.log != nil {
		most := n.maxAttempts
		var ne *NetError
		if errors.As(last, &ne) && ne.retry {
			most = timeoutAttempts
		}
		n.log("retrying %s on %s after %s (attempt %d/%d)", awsmiddleware.GetOperationName(ctx), endpoint, brief(last), attempt, most)
	}
	out, md, err := next.HandleFinalize(ctx, in)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		if ne := n.check(err, endpoint, st); ne != nil {
			err = ne
		}
	}
	st.last = err
	return out, md, err
}

// check says whether err, the error of one attempt at endpoint, will not
// heal (or is a timeout), and what to check.
func (n *netCheck) check(err error, endpoint string, st *opState) *NetError {
	ne := &NetError{Endpoint: endpoint, Err: err}
	var dns *net.DNSError
	var rec tls.RecordHeaderError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var badCert x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		ne.Msg = fmt.Sprintf("nothing listens at %s: check the endpoint and port", endpoint)
	case errors.As(err, &dns) && dns.IsNotFound:
		ne.Msg = fmt.Sprintf("cannot resolve %s", dns.Name)
		switch {
		case !n.customEndpoint:
			ne.Msg += ": if the bucket lives on another server than AWS, give its endpoint with ?endpoint=… or AWS_ENDPOINT_URL; else check the region and the bucket name"
		case !n.pathStyle:
			ne.Msg += ": check the endpoint, or add ?use_path_style=true (virtual-hosted style puts the bucket in the host name)"
		default:
			ne.Msg += ": check the endpoint"
		}
	case errors.As(err, &rec) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		ne.Msg = fmt.Sprintf("%s does not speak TLS: add ?use_tls=false (or give an http:// endpoint)", endpoint)
	case errors.As(err, &unknownCA) || errors.As(err, &badHost) || errors.As(err, &badCert) || errors.As(err, &verify):
		ne.Msg = fmt.Sprintf("%s: its TLS certificate is not trusted (%s): check the endpoint, or give its CA in AWS_CA_BUNDLE", endpoint, brief(err))
	case errors.As(err, &timeout) && timeout.Timeout():
		st.timeouts++
		ne.retry = st.timeouts < timeoutAttempts
		var op *net.OpError
		tried := ""
		if st.timeouts > 1 {
			tried = fmt.Sprintf(" (%d tries)", st.timeouts)
		}
		switch {
		case errors.As(err, &dns):
			ne.Msg = fmt.Sprintf("cannot resolve %s: the name server did not answer%s: check the network", dns.Name, tried)
		case errors.As(err, &op) && op.Op == "dial":
			ne.Msg = fmt.Sprintf("%s did not accept a connection within %s%s: check the endpoint, the port and the firewall", endpoint, min(connectTimeout, n.timeout), tried)
		case strings.Contains(err.Error(), "TLS handshake timeout"):
			ne.Msg = fmt.Sprintf("%s did not complete a TLS handshake within %s%s: check the endpoint and use_tls", endpoint, min(connectTimeout, n.timeout), tried)
		default:
			ne.Msg = fmt.Sprintf("%s did not answer within %s%s: check the server, or raise ?timeout= (or %s)", endpoint, n.timeout, tried, TimeoutEnv)
		}
	default:
		return nil
	}
	return ne
}

// brief is an attempt's error without the SDK's wrapping: the transport's
// error, or the status and code of an answer.
func brief(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if code := apiCode(err); code != "" {
			return fmt.Sprintf("%d %s", re.HTTPStatusCode(), code)
		}
		return fmt.Sprintf("HTTP %d", re.HTTPStatusCode())
	}
	return err.Error()
}

// timeoutRetryer retries a first timeout at once: the attempt already
// waited the whole timeout.
type timeoutRetryer struct{ aws.Retryer }

func (r timeoutRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	var ne *NetError
	if errors.As(err, &ne) && ne.retry {
		return 0, nil
	}
	return r.Retryer.RetryDelay(attempt, err)
}

func (r timeoutRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.GetInitialToken(), nil
}
