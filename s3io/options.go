// Package s3io is everything that speaks S3, through aws-sdk-go-v2: client
// construction (credentials, endpoint, region, path style, retries), error
// classification, and the S3 Storage, Source and Destination of the
// engine. It knows nothing of the store format: a Storage is named
// objects, a Source is keys and their metadata, a Destination is keys to
// write. It is the only package that imports the AWS SDK.
package s3io

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options say how to reach a bucket and what to ask of it. They come from
// a location's query (ParseLocation), and later from a named config
// entry; zero values mean the SDK's defaults (environment, shared config).
type Options struct {
	Bucket string
	Prefix string // "" or ending in "/"

	// Connection.
	Endpoint     string // custom endpoint URL (http:// turns TLS off); else AWS_ENDPOINT_URL or AWS
	UseTLS       *bool  // default: the endpoint's scheme, https without one
	Region       string // else AWS_REGION / the profile's / us-east-1
	UsePathStyle *bool  // default: true with a custom endpoint
	Profile      string // shared config profile
	AccessKey    string // explicit credentials; else the default chain
	SecretKey    string
	SessionToken string
	// Timeout bounds the wait for a response's headers and for each
	// byte of its body; else COFFER_S3_TIMEOUT, else DefaultTimeout.
	Timeout time.Duration

	// Writes.
	StorageClass string // data packs only (Storage); every object (Destination)
	SSE          string // "AES256" or "aws:kms"
	SSEKMSKeyID  string
	Versioning   bool // turn versioning on when EnsureBucket creates the bucket
	// KeepStorageClass makes a Destination restore each object's
	// recorded storage class (unless StorageClass overrides it).
	KeepStorageClass bool

	// Concurrency bounds requests one operation runs at once (HEADs of a
	// walk, parts of a ranged read or multipart upload); default
	// DefaultConcurrency.
	Concurrency int
	// PartSize is the part size of multipart uploads and parallel ranged
	// reads; default 16 MiB.
	PartSize int64
	// Memory is the byte budget of the part and object buffers the
	// client's Source and Destination hold (one Memory may be shared by
	// several clients); nil: a budget of DefaultMemory of its own.
	Memory *Memory

	// WrapTransport, if set, wraps the HTTP transport (tests count and
	// break requests with it).
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// Log, if set, receives the SDK's log lines, such as "Response has
	// no supported checksum" from servers that keep no checksums; without
	// it they are dropped.
	Log func(format string, args ...any)
}

// ParseLocation parses "s3://bucket/prefix?key=value&…" into Options.
// The prefix is taken as a folder: "s3://b/photos" and "s3://b/photos/"
// both mean the keys under "photos/".
func ParseLocation(loc string) (Options, error) {
	var o Options
	rest, ok := strings.CutPrefix(loc, "s3://")
	if !ok {
		return o, fmt.Errorf("%s: not an s3:// location", Redact(loc))
	}
	rest, query, _ := strings.Cut(rest, "?")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return o, fmt.Errorf("%s: no bucket (s3://BUCKET/PREFIX)", Redact(loc))
	}
	if strings.Contains(bucket, "@") {
		// s3://KEY:SECRET@bucket: a bucket name holds no '@', and the
		// bucket is in every message, so refuse it rather than carry it.
		return o, fmt.Errorf("%s: credentials before the bucket are not read: use the access_key and secret_access_key options, the environment or a named entry", Redact(loc))
	}
	o.Bucket = bucket
	if p, err := url.PathUnescape(prefix); err == nil {
		prefix = p
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	o.Prefix = prefix
	q, err := url.ParseQuery(query)
	if err != nil {
		// url's message quotes the bad part, which may be a secret.
		return o, fmt.Errorf("%s: options: malformed query (want KEY=VALUE&KEY=VALUE, values percent-encoded)", Redact(loc))
	}
	for k, vs := range q {
		if err := o.Set(k, vs[len(vs)-1]); err != nil {
			return o, fmt.Errorf("%s: %w", Redact(loc), err)
		}
	}
	return o, nil
}

// OptionNames lists the keys Set accepts, for help texts and docs.
var OptionNames = []string{"endpoint", "region", "use_path_style", "use_tls", "profile", "access_key", "secret_access_key",
	"session_token", "storage_class", "sse", "sse_kms_key_id", "versioning", "keep_storage_class", "concurrency", "part_size", "timeout"}

// DefaultConcurrency is how many requests at once suit S3: latency, not
// CPU, bounds a GET or PUT, so commands that read or write a bucket run
// this many when the user does not say.
const DefaultConcurrency = 16

// Set sets one option by its name, as in a location query or a config
// entry.
func (o *Options) Set(key, value string) error {
	bad := func(err error) error {
		if !publicOptions[key] {
			return fmt.Errorf("option %s: %w", key, err)
		}
		return fmt.Errorf("option %s=%q: %w", key, value, err)
	}
	switch key {
	case "endpoint":
		o.Endpoint = value
	case "use_tls", "tls":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return bad(err)
		}
		o.UseTLS = &b
	case "region":
		o.Region = value
	case "use_path_style":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return bad(err)
		}
		o.UsePathStyle = &b
	case "profile":
		o.Profile = value
	case "access_key", "access_key_id":
		o.AccessKey = value
	case "secret_access_key", "secret_key":
		o.SecretKey = value
	case "session_token":
		o.SessionToken = value
	case "storage_class":
		v := strings.ToUpper(value)
		switch v {
		case "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
			"GLACIER", "DEEP_ARCHIVE", "EXPRESS_ONEZONE", "OUTPOSTS", "SNOW":
		default:
			return bad(fmt.Errorf("unknown storage class"))
		}
		o.StorageClass = v
	case "sse":
		switch value {
		case "AES256", "aws:kms", "aws:kms:dsse", "":
		default:
			return bad(fmt.Errorf("want AES256 or aws:kms"))
		}
		o.SSE = value
	case "sse_kms_key_id":
		o.SSEKMSKeyID = value
	case "versioning":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return bad(err)
		}
		o.Versioning = b
	case "keep_storage_class":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return bad(err)
		}
		o.KeepStorageClass = b
	case "concurrency":
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 {
			return bad(fmt.Errorf("want a positive number"))
		}
		o.Concurrency = n
	case "timeout":
		d, err := ParseTimeout(value)
		if err != nil {
			return bad(err)
		}
		o.Timeout = d
	case "part_size":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < 5<<20 || n > 5<<30 {
			return bad(fmt.Errorf("want bytes between 5 MiB and 5 GiB"))
		}
		o.PartSize = n
	default:
		return fmt.Errorf("unknown option %q (known: %s)", key, strings.Join(OptionNames, ", "))
	}
	if o.SSEKMSKeyID != "" && o.SSE == "" {
		o.SSE = "aws:kms"
	}
	return nil
}

// publicOptions are the options whose values may be shown. Redact masks
// the others: the credentials, and any key it does not know (a misspelt
// secret_access_key is still a secret).
var publicOptions = map[string]bool{
	"endpoint": true, "region": true, "use_path_style": true, "use_tls": true, "tls": true, "profile": true,
	"storage_class": true, "sse": true, "sse_kms_key_id": true, "versioning": true, "keep_storage_class": true,
	"concurrency": true, "part_size": true, "timeout": true,
}

// Masked is what Redact shows in place of a secret.
const Masked = "***"

// Redact returns a location fit for a message, a log line or JSON: in a
// URL-like location (SCHEME://…), credentials before the host
// (user:secret@) and the value of every query option but those known to
// be harmless (publicOptions) are masked; an access key id keeps its
// first four characters, as 'config show' shows it. Anything else (a
// folder path, @name) is returned unchanged. Every message that quotes a
// location as the user gave it goes through here; Options.URI, which
// holds no options at all, needs not.
func Redact(loc string) string {
	scheme, rest, ok := strings.Cut(loc, "://")
	if !ok || strings.ContainsAny(scheme, "/?&") {
		return loc
	}
	base, query, hasQuery := strings.Cut(rest, "?")
	out := scheme + "://" + maskUserinfo(base)
	if !hasQuery {
		return out
	}
	var b strings.Builder
	start := 0
	for i := 0; i <= len(query); i++ {
		if i < len(query) && query[i] != '&' && query[i] != ';' {
			continue
		}
		b.WriteString(redactOption(query[start:i]))
		if i < len(query) {
			b.WriteByte(query[i])
		}
		start = i + 1
	}
	return out + "?" + b.String()
}

// redactOption masks the value of one KEY=VALUE of a location's query.
func redactOption(kv string) string {
	k, v, hasValue := strings.Cut(kv, "=")
	key, err := url.QueryUnescape(k)
	if err != nil {
		key = k
	}
	switch {
	case kv == "":
		return kv
	case !hasValue && (publicOptions[key] || slices.Contains(OptionNames, key)):
		return kv
	case !hasValue:
		return Masked // a bare word: perhaps a secret cut from its key
	case publicOptions[key]:
		if u, err := url.QueryUnescape(v); err == nil && maskUserinfo(u) != u {
			return k + "=" + url.QueryEscape(maskUserinfo(u))
		}
		return kv
	case key == "access_key" || key == "access_key_id":
		if u, err := url.QueryUnescape(v); err == nil && len(u) > 8 {
			return k + "=" + url.QueryEscape(u[:4]) + Masked
		}
	}
	return k + "=" + Masked
}

// maskUserinfo masks the user part of "[scheme://]user:secret@host/…".
func maskUserinfo(s string) string {
	pre, rest := "", s
	if p, r, ok := strings.Cut(s, "://"); ok {
		pre, rest = p+"://", r
	}
	host, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(host, "@"); i >= 0 {
		return pre + Masked + host[i:] + path
	}
	return s
}

// URI names the location without options or secrets: s3://bucket/prefix.
func (o *Options) URI() string {
	return "s3://" + o.Bucket + "/" + o.Prefix
}

func (o *Options) concurrency() int {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	return DefaultConcurrency
}

// endpoint is the endpoint to use, "" for AWS: the option, else
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, with the scheme use_tls asks
// for (https when neither it nor the endpoint says).
func (o *Options) endpoint() string {
	ep := o.Endpoint
	if ep == "" {
		ep = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if ep == "" {
		ep = os.Getenv("AWS_ENDPOINT_URL")
	}
	if ep == "" {
		return ""
	}
	scheme, host, ok := strings.Cut(ep, "://")
	if !ok {
		scheme, host = "https", ep
	}
	if o.UseTLS != nil {
		scheme = "http"
		if *o.UseTLS {
			scheme = "https"
		}
	}
	return scheme + "://" + host
}

func (o *Options) partSize() int64 {
	if o.PartSize > 0 {
		return o.PartSize
	}
	return 16 << 20
}

// minPart is S3's smallest part but the last.
const minPart = 5 << 20

// fitPart clamps part so that at least two parts fit budget (one when
// budget is under two minimum parts), in whole MiB and never below
// minPart: a part never has to wait for more than the budget.
func fitPart(part, budget int64) int64 {
	if part <= budget/2 {
		return part
	}
	return max(minPart, (budget/2)&^(1<<20-1))
}
