package s3io

// S3 Object Lock: a store created with --object-lock-days writes every
// object it keeps (config, packs, index files, snapshots) with a
// retention date, and refuses to delete one still locked (docs/S3.md,
// "Immutable stores").

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/coffer-backup/coffer/engine/store"
)

var _ store.Retainer = (*Storage)(nil)

// ErrNoObjectLock says the bucket does not have Object Lock enabled.
var ErrNoObjectLock = errors.New("the bucket does not have Object Lock enabled")

// noObjectLockError names the bucket and how to get one with Object Lock.
type noObjectLockError struct{ bucket string }

func (e *noObjectLockError) Error() string {
	return fmt.Sprintf("s3io: bucket %s does not have Object Lock enabled, so its objects cannot be locked: "+
		"create the store in a bucket made with it (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket), "+
		"or, on AWS, turn it on for this bucket after versioning (aws s3api put-bucket-versioning, then aws s3api put-object-lock-configuration --bucket %s --object-lock-configuration ObjectLockEnabled=Enabled)",
		e.bucket, e.bucket)
}

func (e *noObjectLockError) Unwrap() error { return ErrNoObjectLock }

// CheckRetention asks the bucket for its Object Lock configuration
// (s3:GetBucketObjectLockConfiguration): the lock must be enabled.
func (s *Storage) CheckRetention(ctx context.Context, p store.RetentionPolicy) error {
	if p.Days <= 0 {
		return fmt.Errorf("s3io: object lock of %d days: want at least 1", p.Days)
	}
	b := s.c.opt.Bucket
	out, err := s.c.s3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &b})
	if err != nil {
		if code := apiCode(err); code == "ObjectLockConfigurationNotFoundError" || code == "ObjectLockConfigurationNotFound" {
			return &store.PermanentError{Err: &noObjectLockError{bucket: b}}
		}
		return classify(err, "object lock", "s3:GetBucketObjectLockConfiguration", b, "")
	}
	if out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return &store.PermanentError{Err: &noObjectLockError{bucket: b}}
	}
	return nil
}

// SetRetention sets the policy of the puts and deletes that follow.
func (s *Storage) SetRetention(p store.RetentionPolicy) {
	if p.Days <= 0 {
		s.lock.Store(nil)
		return
	}
	s.lock.Store(&p)
}

// policy is the retention policy in force, the zero one when none.
func (s *Storage) policy() store.RetentionPolicy {
	if p := s.lock.Load(); p != nil {
		return *p
	}
	return store.RetentionPolicy{}
}

// lockFor returns the lock a write of h at now carries, and whether it
// carries one.
func (s *Storage) lockFor(h store.Handle, now time.Time) (types.ObjectLockMode, *time.Time, bool) {
	p := s.policy()
	if !p.Locks(h.Kind) {
		return "", nil, false
	}
	until := p.Until(now).UTC().Truncate(time.Second)
	return s3Mode(p.Mode), &until, true
}

func s3Mode(m store.RetentionMode) types.ObjectLockMode {
	if m == store.Compliance {
		return types.ObjectLockModeCompliance
	}
	return types.ObjectLockModeGovernance
}

func storeMode(m string) store.RetentionMode {
	return store.RetentionMode(strings.ToLower(m))
}

// contentMD5 is the Content-MD5 header of data: S3 wants one (or a
// checksum) on every write that carries an object lock, and the client
// computes checksums only where S3 always requires them.
func contentMD5(data []byte) *string {
	sum := md5.Sum(data)
	return aws.String(base64.StdEncoding.EncodeToString(sum[:]))
}

// lockedPutAction is the IAM action named when a locked put is refused:
// a PUT with retention headers needs both.
const lockedPutAction = "s3:PutObject and s3:PutObjectRetention"

// Retention reads h's lock with GetObjectRetention
// (s3:GetObjectRetention); an object with none has the zero Retention.
func (s *Storage) Retention(ctx context.Context, h store.Handle) (store.Retention, error) {
	key, err := s.objectKey(h)
	if err != nil {
		return store.Retention{}, err
	}
	out, err := s.c.s3.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &s.c.opt.Bucket, Key: &key})
	if err != nil {
		switch apiCode(err) {
		case "NoSuchObjectLockConfiguration":
			return store.Retention{}, nil
		case "ObjectLockConfigurationNotFoundError":
			return store.Retention{}, nil // the bucket locks nothing
		}
		return store.Retention{}, classify(err, "retention", "s3:GetObjectRetention", s.c.opt.Bucket, key)
	}
	if out.Retention == nil || out.Retention.RetainUntilDate == nil {
		return store.Retention{}, nil
	}
	return store.Retention{Mode: storeMode(string(out.Retention.Mode)), Until: out.Retention.RetainUntilDate.UTC()}, nil
}

// ExtendRetention reads h's lock and, when it ends before until, puts a
// new one (PutObjectRetention, s3:PutObjectRetention) in h's own mode,
// or in the policy's when h has none. S3 lets anyone with the action
// lengthen a lock in either mode.
func (s *Storage) ExtendRetention(ctx context.Context, h store.Handle, until time.Time) (bool, error) {
	key, err := s.objectKey(h)
	if err != nil {
		return false, err
	}
	cur, err := s.Retention(ctx, h)
	if err != nil {
		return false, err
	}
	until = until.UTC().Truncate(time.Second)
	if !cur.Until.IsZero() && !cur.Until.Before(until) {
		return false, nil
	}
	mode := cur.Mode
	if mode == "" {
		mode = s.policy().Mode
	}
	_, err = s.c.s3.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
		Bucket: &s.c.opt.Bucket, Key: &key,
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(s3Mode(mode)), RetainUntilDate: &until},
	})
	if err != nil {
		return false, classify(err, "extend retention", "s3:PutObjectRetention", s.c.opt.Bucket, key)
	}
	return true, nil
}

// refuseLocked returns a *store.LockedError when the store locks h's
// kind and h is locked at now. A bucket with Object Lock is versioned:
// a plain DeleteObject of a locked object "succeeds" by adding a delete
// marker, the locked version staying (and billed) out of sight, so the
// lock is read first.
func (s *Storage) refuseLocked(ctx context.Context, h store.Handle) error {
	if !s.policy().Locks(h.Kind) {
		return nil
	}
	r, err := s.Retention(ctx, h)
	if err != nil {
		return err
	}
	if r.LockedAt(time.Now()) {
		return &store.LockedError{Handle: h, Retention: r}
	}
	return nil
}

// EnsureLockedBucket is EnsureBucket for a store with object lock: a
// missing bucket is created with Object Lock enabled (which also turns
// versioning on).
func EnsureLockedBucket(ctx context.Context, c *Client) (bool, error) {
	return ensureBucket(ctx, c, true)
}
