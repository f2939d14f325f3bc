package s3io

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/coffer-backup/coffer/engine/store"
)

// sdkError builds the error the SDK returns for an HTTP answer with this
// status, error code, message and headers: an OperationError around a
// ResponseError around the API error.
func sdkError(op string, status int, code, msg string, header ...string) error {
	resp := &http.Response{StatusCode: status, Header: http.Header{}}
	for i := 0; i+1 < len(header); i += 2 {
		resp.Header.Set(header[i], header[i+1])
	}
	var api error = &smithy.GenericAPIError{Code: code, Message: msg}
	return &smithy.OperationError{ServiceID: "S3", OperationName: op, Err: &awshttp.ResponseError{
		RequestID:     "REQ1",
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: api},
	}}
}

func TestClassify(t *testing.T) {
	type want struct {
		kind      error // nil: no kind
		notFound  bool
		permanent bool
		says      []string // in the message
	}
	cases := []struct {
		name   string
		err    error
		action string
		key    string
		want   want
	}{
		{"missing key", sdkError("GetObject", 404, "NoSuchKey", "The specified key does not exist."), "s3:GetObject", "k",
			want{notFound: true, says: []string{"arn:aws:s3:::b/k", "not found"}}},
		{"HEAD of a missing key", sdkError("HeadObject", 404, "NotFound", ""), "s3:GetObject", "k",
			want{notFound: true}},
		{"404 without a code", sdkError("HeadObject", 404, "", ""), "s3:GetObject", "k",
			want{notFound: true}},
		{"missing bucket", sdkError("ListObjectsV2", 404, "NoSuchBucket", "The specified bucket does not exist"), "s3:ListBucket", "",
			want{kind: ErrNoSuchBucket, permanent: true, says: []string{"bucket b does not exist"}}},
		{"missing bucket of a key", sdkError("GetObject", 404, "NoSuchBucket", "The specified bucket does not exist"), "s3:GetObject", "p/config",
			want{kind: ErrNoSuchBucket, permanent: true, says: []string{"op: bucket b does not exist"}}},
		{"access denied", sdkError("PutObject", 403, "AccessDenied", "Access Denied."), "s3:PutObject", "dir/x",
			want{kind: ErrAccessDenied, permanent: true, says: []string{"access denied", "s3:PutObject", "arn:aws:s3:::b/dir/x", "docs/S3.md"}}},
		{"HEAD forbidden without a body", sdkError("HeadObject", 403, "", ""), "s3:GetObject", "k",
			want{kind: ErrAccessDenied, permanent: true, says: []string{"s3:GetObject on arn:aws:s3:::b/k"}}},
		{"unknown access key", sdkError("ListObjectsV2", 403, "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records."), "s3:ListBucket", "",
			want{kind: ErrBadCredentials, permanent: true, says: []string{"refused the credentials", "InvalidAccessKeyId", "arn:aws:s3:::b"}}},
		{"wrong secret", sdkError("GetObject", 403, "SignatureDoesNotMatch", "The request signature we calculated does not match"), "s3:GetObject", "k",
			want{kind: ErrBadCredentials, permanent: true, says: []string{"access key / secret", "SignatureDoesNotMatch"}}},
		{"expired session", sdkError("GetObject", 400, "ExpiredToken", "The provided token has expired."), "s3:GetObject", "k",
			want{kind: ErrBadCredentials, permanent: true}},
		{"wrong region, header", sdkError("ListObjectsV2", 301, "PermanentRedirect", "The bucket you are attempting to access must be addressed using the specified endpoint.", "X-Amz-Bucket-Region", "eu-west-3"), "s3:ListBucket", "",
			want{kind: ErrWrongRegion, permanent: true, says: []string{"region eu-west-3", "?region=eu-west-3"}}},
		{"wrong region, message", sdkError("GetObject", 400, "AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong; expecting 'ap-south-1'"), "s3:GetObject", "k",
			want{kind: ErrWrongRegion, permanent: true, says: []string{"region ap-south-1"}}},
		{"wrong region, bare HEAD bucket", sdkError("HeadBucket", 400, "BadRequest", "", "X-Amz-Bucket-Region", "sa-east-1"), "s3:ListBucket", "",
			want{kind: ErrWrongRegion, permanent: true, says: []string{"sa-east-1"}}},
		{"archived", sdkError("GetObject", 403, "InvalidObjectState", "The operation is not valid for the object's storage class"), "s3:GetObject", "cold/k",
			want{kind: ErrArchived, permanent: true, says: []string{"arn:aws:s3:::b/cold/k", "archive storage class", "RestoreObject"}}},
		{"changed under If-Match", sdkError("GetObject", 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"), "s3:GetObject", "k",
			want{kind: ErrChanged, says: []string{"changed while it was read"}}},
		{"throttled", sdkError("PutObject", 503, "SlowDown", "Please reduce your request rate."), "s3:PutObject", "k",
			want{says: []string{"SlowDown"}}},
		{"server error", sdkError("PutObject", 500, "InternalError", "We encountered an internal error."), "s3:PutObject", "k",
			want{}},
		{"too many requests", sdkError("PutObject", 429, "TooManyRequests", ""), "s3:PutObject", "k",
			want{}},
		{"bad argument", sdkError("PutObject", 400, "InvalidArgument", "Invalid storage class."), "s3:PutObject", "k",
			want{permanent: true, says: []string{"InvalidArgument"}}},
		{"missing upload", sdkError("UploadPart", 404, "NoSuchUpload", "The specified upload does not exist."), "s3:PutObject", "k",
			want{permanent: true}},
		{"broken connection", &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: errors.New("read: connection reset by peer")}, "s3:GetObject", "k",
			want{says: []string{"connection reset"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := classify(c.err, "op", c.action, "b", c.key)
			if err == nil {
				t.Fatal("nil")
			}
			var e *Error
			if c.want.kind != nil {
				if !errors.Is(err, c.want.kind) || !errors.As(err, &e) || e.Kind != c.want.kind {
					t.Errorf("kind: %v, want %v", err, c.want.kind)
				}
			} else if errors.As(err, &e) && e.Kind != nil {
				t.Errorf("kind %v, want none", e.Kind)
			}
			if got := store.IsNotFound(err); got != c.want.notFound {
				t.Errorf("not found: %v, want %v (%v)", got, c.want.notFound, err)
			}
			// The engine retries neither a missing object nor a permanent error.
			if got := store.IsPermanent(err); got != (c.want.permanent || c.want.notFound) {
				t.Errorf("permanent: %v, want %v (%v)", got, c.want.permanent, err)
			}
			if !errors.Is(err, c.err) && !c.want.notFound {
				t.Errorf("the SDK's error is not wrapped: %v", err)
			}
			for _, s := range c.want.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message lacks %q: %v", s, err)
				}
			}
		})
	}
}

// A cancelled call comes back as it is: never an *Error to retry or to
// explain.
func TestClassifyPassesCancellation(t *testing.T) {
	if classify(nil, "get", "s3:GetObject", "b", "k") != nil {
		t.Fatal("nil error classified as an error")
	}
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded} {
		err := classify(&smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: cause}, "get", "s3:GetObject", "b", "k")
		if !errors.Is(err, cause) {
			t.Errorf("%v: classified as %#v", cause, err)
		}
		var e *Error
		if errors.As(err, &e) {
			t.Errorf("%v: wrapped in *Error: %v", cause, err)
		}
	}
}

func TestErrorNamesActionAndResource(t *testing.T) {
	err := classify(sdkError("GetObjectTagging", 403, "AccessDenied", "Access Denied."), "tags", "s3:GetObjectTagging", "photos", "2024/a.jpg")
	want := "s3io: tags: access denied: s3:GetObjectTagging on arn:aws:s3:::photos/2024/a.jpg is not allowed"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("%v\nwant prefix %s", err, want)
	}
	wrapped := fmt.Errorf("backup: %w", err)
	if !errors.Is(wrapped, ErrAccessDenied) || !store.IsPermanent(wrapped) {
		t.Fatalf("wrapping loses the kind: %v", wrapped)
	}
}
