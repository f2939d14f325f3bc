package s3io

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
)

// Client is an S3 client bound to one bucket and prefix.
type Client struct {
	s3     *s3.Client
	opt    Options
	region string
}

// maxAttempts bounds the tries of one request (the first and the retries).
const maxAttempts = 10

// NewClient builds the one S3 client every connector uses: the default
// credential chain (environment, shared config and profile, web identity,
// EC2/ECS role) unless keys are given; a custom endpoint with path-style
// addressing; connect, response-header and body-idle timeouts (timeout,
// see net.go); a standard retryer with jittered backoff for throttling,
// 5xx and broken connections, without the client-side retry quota (which
// starves heavily concurrent clients after a burst of errors), that gives
// up at once on errors that do not heal (refused, unknown host, TLS
// mismatch) and after two timeouts, and logs each retry; checksums
// only where S3 requires them, which third-party servers accept; the
// SDK's log to o.Log, not to stderr.
func NewClient(ctx context.Context, o Options) (*Client, error) {
	timeout, err := o.timeout()
	if err != nil {
		return nil, fmt.Errorf("s3io: %s: %w", o.URI(), err)
	}
	lo := []func(*config.LoadOptions) error{config.WithLogger(sdkLogger(o.Log))}
	if o.Profile != "" {
		lo = append(lo, config.WithSharedConfigProfile(o.Profile))
	}
	if o.Region != "" {
		lo = append(lo, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" || o.SecretKey != "" {
		if o.AccessKey == "" || o.SecretKey == "" {
			return nil, fmt.Errorf("s3io: %s: give both access_key and secret_access_key, or neither", o.URI())
		}
		lo = append(lo, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken)))
	}
	lo = append(lo, config.WithRetryer(func() aws.Retryer {
		r := retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.MaxBackoff = 10 * time.Second
			so.RateLimiter = ratelimit.None
		})
		return timeoutRetryer{retry.AddWithMaxBackoffDelay(r, 10*time.Second)}
	}))
	lo = append(lo, config.WithHTTPClient(httpClient(timeout)))
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("s3io: %s: loading AWS configuration: %w", o.URI(), err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	endpoint := o.endpoint()
	pathStyle := endpoint != ""
	if o.UsePathStyle != nil {
		pathStyle = *o.UsePathStyle
	}
	check := &netCheck{log: o.Log, customEndpoint: endpoint != "", pathStyle: pathStyle, timeout: timeout, maxAttempts: maxAttempts}
	cl := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
		}
		so.UsePathStyle = pathStyle
		if endpoint == "" && o.UseTLS != nil && !*o.UseTLS {
			so.EndpointOptions.DisableHTTPS = true
		}
		so.HTTPClient = idleBodies{so.HTTPClient, timeout}
		so.APIOptions = append(so.APIOptions, check.addTo)
		if o.WrapTransport != nil {
			so.HTTPClient = &http.Client{Transport: o.WrapTransport(doerTransport{so.HTTPClient})}
		}
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if o.Memory == nil {
		o.Memory, _ = NewMemory(DefaultMemory)
	}
	return &Client{s3: cl, opt: o, region: cfg.Region}, nil
}

// sdkLogger hands the SDK's log lines to log, or drops them when log is
// nil. The SDK's own default prints them on stderr, whatever the command
// line asked for.
func sdkLogger(log func(format string, args ...any)) logging.Logger {
	if log == nil {
		return logging.Nop{}
	}
	return logging.LoggerFunc(func(_ logging.Classification, format string, args ...any) {
		log("aws sdk: %s", fmt.Sprintf(format, args...))
	})
}

// key returns the S3 key of a name below the prefix.
func (c *Client) key(name string) string { return c.opt.Prefix + name }

// URI names the bucket and prefix.
func (c *Client) URI() string { return c.opt.URI() }

// Options returns the client's options.
func (c *Client) Options() Options { return c.opt }

// doerTransport lets a wrapper sit in front of the SDK's HTTP client (which
// carries the TLS settings the configuration loaded).
type doerTransport struct{ c s3.HTTPClient }

func (d doerTransport) RoundTrip(r *http.Request) (*http.Response, error) { return d.c.Do(r) }
