package s3io

import (
	"context"
	"errors"
	"time"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/coffer-backup/coffer/engine/store"
)

// EnsureBucket creates the client's bucket when it does not exist (in the
// client's region), and turns versioning on when the options ask for it.
// It reports whether it created the bucket.
func EnsureBucket(ctx context.Context, c *Client) (bool, error) {
	return ensureBucket(ctx, c, false)
}

// ensureBucket creates a missing bucket, with Object Lock when lock.
func ensureBucket(ctx context.Context, c *Client, lock bool) (bool, error) {
	b := c.opt.Bucket
	_, err := c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b})
	if err != nil {
		err = c.headError(ctx, err, "create", "s3:ListBucket", "")
	}
	created := false
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNoSuchBucket):
		in := &s3.CreateBucketInput{Bucket: &b}
		if lock {
			in.ObjectLockEnabledForBucket = aws.Bool(true)
		}
		if c.region != "" && c.region != "us-east-1" {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(c.region)}
		}
		if _, err := c.s3.CreateBucket(ctx, in); err != nil {
			var owned *types.BucketAlreadyOwnedByYou
			if !errors.As(err, &owned) {
				return false, classify(err, "create", "s3:CreateBucket", b, "")
			}
		} else {
			created = true
		}
	default:
		return false, err
	}
	if c.opt.Versioning {
		_, err := c.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &b,
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
		if err != nil {
			return created, classify(err, "create", "s3:PutBucketVersioning", b, "")
		}
	}
	return created, nil
}

// bucketInfo describes the bucket for a snapshot: its name, region and,
// where s3:ListAllMyBuckets is allowed, creation date and owner id.
func (c *Client) bucketInfo(ctx context.Context) []tree.Attr {
	b := c.opt.Bucket
	attrs := []tree.Attr{{Key: "bucket", Value: []byte(b)}}
	region := c.region
	if out, err := c.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: &b}); err == nil {
		region = string(out.LocationConstraint)
		if region == "" {
			region = "us-east-1"
		}
	}
	var created, owner string
	if out, err := c.s3.ListBuckets(ctx, &s3.ListBucketsInput{Prefix: &b}); err == nil {
		for _, bk := range out.Buckets {
			if aws.ToString(bk.Name) == b && bk.CreationDate != nil {
				created = bk.CreationDate.UTC().Format(time.RFC3339)
			}
		}
		if out.Owner != nil {
			owner = aws.ToString(out.Owner.ID)
		}
	}
	if created != "" {
		attrs = append(attrs, tree.Attr{Key: "creation_date", Value: []byte(created)})
	}
	if owner != "" {
		attrs = append(attrs, tree.Attr{Key: "owner_id", Value: []byte(owner)})
	}
	attrs = append(attrs, tree.Attr{Key: "prefix", Value: []byte(c.opt.Prefix)}, tree.Attr{Key: "region", Value: []byte(region)})
	return attrs
}
