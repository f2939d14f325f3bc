package s3io

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/coffer-backup/coffer/engine/store"
)

// Kinds of S3 failure that callers and messages tell apart.
var (
	ErrNoSuchBucket   = errors.New("the bucket does not exist")
	ErrAccessDenied   = errors.New("access denied")
	ErrBadCredentials = errors.New("the credentials were refused")
	ErrWrongRegion    = errors.New("the bucket is in another region")
	ErrArchived       = errors.New("the object is archived and not restored")
	ErrChanged        = errors.New("the object changed while it was read")
)

// Error is a classified S3 failure: which call, on what, and why.
type Error struct {
	Op       string // what coffer was doing: "get", "put", "list", …
	Action   string // the IAM action of the call, e.g. "s3:GetObject"
	Resource string // ARN of the bucket or object
	Kind     error  // one of the Err* above, or nil
	Region   string // for ErrWrongRegion: where the bucket is, if known
	Err      error  // the SDK's error
}

func (e *Error) Error() string {
	var msg string
	switch e.Kind {
	case ErrAccessDenied:
		msg = fmt.Sprintf("access denied: %s on %s is not allowed for these credentials (see docs/S3.md for the policy each command needs)", e.Action, e.Resource)
	case ErrBadCredentials:
		msg = fmt.Sprintf("%s on %s: the server refused the credentials: check the access key / secret (%s)", e.Action, e.Resource, apiCode(e.Err))
	case ErrWrongRegion:
		if e.Region != "" {
			msg = fmt.Sprintf("%s: the bucket is in region %s: add ?region=%s to the location (or set AWS_REGION)", e.Resource, e.Region, e.Region)
		} else {
			msg = fmt.Sprintf("%s: the bucket is in another region than the one asked: set ?region= in the location (%v)", e.Resource, e.Err)
		}
	case ErrNoSuchBucket:
		bucket, _, _ := strings.Cut(strings.TrimPrefix(e.Resource, "arn:aws:s3:::"), "/")
		msg = fmt.Sprintf("bucket %s does not exist", bucket)
	case ErrArchived:
		msg = fmt.Sprintf("%s is in an archive storage class and not restored (restore it with s3:RestoreObject first)", e.Resource)
	case ErrChanged:
		msg = fmt.Sprintf("%s changed while it was read", e.Resource)
	case ErrUnreachable:
		var ne *NetError
		if errors.As(e.Err, &ne) {
			msg = ne.Msg
		} else {
			msg = fmt.Sprintf("%s: %v", e.Resource, e.Err)
		}
	default:
		return fmt.Sprintf("s3io: %s %s: %v", e.Op, e.Resource, e.Err)
	}
	return "s3io: " + e.Op + ": " + msg
}

func (e *Error) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Err}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func arn(bucket, key string) string {
	if key == "" {
		return "arn:aws:s3:::" + bucket
	}
	return "arn:aws:s3:::" + bucket + "/" + key
}

var regionInMessage = regexp.MustCompile(`expecting '([a-z0-9-]+)'`)

// classify turns an SDK error into an *Error, wrapped in
// *store.PermanentError when retrying cannot help, and wrapping
// store.ErrNotFound for a missing object. action is the IAM action of
// the call; key is "" for bucket-level calls.
func classify(err error, op, action, bucket, key string) error {
	if err == nil {
		return nil
	}
	var ne *NetError
	if errors.As(err, &ne) {
		// Nothing answers: every other request would fail the same way.
		// (Before the context's errors: an http timeout is also a
		// context.DeadlineExceeded.)
		return &store.PermanentError{Err: &Error{Op: op, Action: action, Resource: arn(bucket, key), Kind: ErrUnreachable, Err: err}}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	e := &Error{Op: op, Action: action, Resource: arn(bucket, key), Err: err}
	code := apiCode(err)
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		status = re.HTTPStatusCode()
		e.Region = re.Response.Header.Get("x-amz-bucket-region")
	}
	switch {
	case code == "NoSuchBucket":
		e.Kind = ErrNoSuchBucket
	case code == "NoSuchKey" || code == "NotFound" || code == "NoSuchVersion" || (status == http.StatusNotFound && code != "NoSuchUpload"):
		return fmt.Errorf("s3io: %s %s: %w", op, e.Resource, store.ErrNotFound)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "InvalidToken" ||
		code == "ExpiredToken" || code == "TokenRefreshRequired" || code == "InvalidClientTokenId":
		e.Kind = ErrBadCredentials
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException" ||
		code == "MovedPermanently" || status == http.StatusMovedPermanently:
		e.Kind = ErrWrongRegion
		if e.Region == "" {
			var ae smithy.APIError
			if errors.As(err, &ae) {
				if m := regionInMessage.FindStringSubmatch(ae.ErrorMessage()); m != nil {
					e.Region = m[1]
				}
			}
		}
	case code == "AccessDenied" || code == "Forbidden" || code == "AllAccessDisabled" || status == http.StatusForbidden && code == "":
		e.Kind = ErrAccessDenied
	case code == "InvalidObjectState":
		e.Kind = ErrArchived
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		e.Kind = ErrChanged
	case status == http.StatusBadRequest && code == "BadRequest" && key == "":
		// HEAD of a bucket in another region answers a bare 400.
		if e.Region != "" {
			e.Kind = ErrWrongRegion
		}
	}
	if e.Kind == nil {
		if status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout {
			return &store.PermanentError{Err: e}
		}
		return e
	}
	if e.Kind == ErrChanged {
		return e
	}
	return &store.PermanentError{Err: e}
}

// headError classifies the error of a HEAD of key ("" for the bucket). A
// HEAD's answer has no body, so a bare 403 does not say whether the
// credentials or the policy refused it, nor a bare 404 whether the key or
// the bucket is missing: a GET of the first byte (a one-key LIST for the
// bucket) asks again, and its error code, when it names bad credentials,
// a missing bucket or another region, is the answer.
func (c *Client) headError(ctx context.Context, err error, op, action, key string) error {
	cerr := classify(err, op, action, c.opt.Bucket, key)
	if !errors.Is(cerr, ErrAccessDenied) && !store.IsNotFound(cerr) {
		return cerr
	}
	if code := apiCode(err); code != "" && code != "Forbidden" && code != "NotFound" {
		return cerr // the answer had a body
	}
	var probe error
	if key == "" {
		_, probe = c.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &c.opt.Bucket, MaxKeys: aws.Int32(1)})
	} else {
		var out *s3.GetObjectOutput
		out, probe = c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &c.opt.Bucket, Key: &key, Range: aws.String("bytes=0-0")})
		if probe == nil {
			out.Body.Close()
		}
	}
	if probe == nil {
		return cerr
	}
	perr := classify(probe, op, action, c.opt.Bucket, key)
	if errors.Is(perr, ErrBadCredentials) || errors.Is(perr, ErrWrongRegion) || errors.Is(perr, ErrNoSuchBucket) {
		return perr
	}
	return cerr
}
