package s3io

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/coffer-backup/coffer/engine/object"
)

// The flat listings of a live mount (object.FlatLive): every key below
// the prefix at once, in pages of PageSize keys, with no delimiter.
// --list-all lists the objects as they are now (ListObjectsV2, which
// s3:ListBucket allows); --at and --versions list every version and
// delete marker
// (ListObjectVersions: s3:ListBucketVersions) and read versions by id
// (s3:GetObjectVersion).

// ListAllPages lists every object below the prefix page by page, in
// S3's key order (an object.PagesFunc): fn's error stops the listing
// and is returned as it is; fn must not keep page, which is reused.
func (l *Live) ListAllPages(ctx context.Context, fn func(page []object.LiveEntry) error) error {
	p := s3.NewListObjectsV2Paginator(l.c.s3, &s3.ListObjectsV2Input{Bucket: &l.c.opt.Bucket,
		Prefix: aws.String(l.c.opt.Prefix), MaxKeys: aws.Int32(l.pageSize())})
	var ents []object.LiveEntry
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify(err, "list", "s3:ListBucket", l.c.opt.Bucket, "")
		}
		ents = ents[:0]
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if key == l.c.opt.Prefix {
				continue // the prefix's own folder marker
			}
			ents = append(ents, liveEntry(strings.TrimPrefix(key, l.c.opt.Prefix), o))
		}
		if err := fn(ents); err != nil {
			return err
		}
	}
	return nil
}

// ListingID names the listing of this prefix of this bucket on this
// endpoint (AWS when none), for a cache of it: 32 hex digits of a
// SHA-256, which hold no name and no secret.
func (l *Live) ListingID() string {
	h := sha256.Sum256([]byte(l.c.opt.endpoint() + "\x00" + l.c.opt.Bucket + "\x00" + l.c.opt.Prefix))
	return hex.EncodeToString(h[:16])
}

// liveVersion is one version of a key, or a delete marker.
type liveVersion struct {
	e       object.LiveEntry // Name: the key below the prefix
	latest  bool
	deleted bool
}

// versions lists every version and delete marker below the prefix, by
// key, newest first within a key (S3's order, which the two lists of a
// page each keep: merged here by time, the latest first on a tie).
func (l *Live) versions(ctx context.Context) ([][]liveVersion, error) {
	in := &s3.ListObjectVersionsInput{Bucket: &l.c.opt.Bucket, Prefix: aws.String(l.c.opt.Prefix), MaxKeys: aws.Int32(l.pageSize())}
	var all []liveVersion
	for {
		out, err := l.c.s3.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, classify(err, "list versions", "s3:ListBucketVersions", l.c.opt.Bucket, "")
		}
		for _, v := range out.Versions {
			all = append(all, liveVersion{latest: aws.ToBool(v.IsLatest), e: object.LiveEntry{Name: aws.ToString(v.Key),
				Size: aws.ToInt64(v.Size), MTime: aws.ToTime(v.LastModified), ETag: aws.ToString(v.ETag),
				Class: string(v.StorageClass), VersionID: aws.ToString(v.VersionId)}})
		}
		for _, d := range out.DeleteMarkers {
			all = append(all, liveVersion{latest: aws.ToBool(d.IsLatest), deleted: true, e: object.LiveEntry{Name: aws.ToString(d.Key),
				MTime: aws.ToTime(d.LastModified), VersionID: aws.ToString(d.VersionId)}})
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := &all[i], &all[j]
		switch {
		case a.e.Name != b.e.Name:
			return a.e.Name < b.e.Name
		case !a.e.MTime.Equal(b.e.MTime):
			return a.e.MTime.After(b.e.MTime)
		}
		return a.latest && !b.latest
	})
	var keys [][]liveVersion
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].e.Name == all[i].e.Name {
			j++
		}
		if all[i].e.Name != l.c.opt.Prefix {
			vs := all[i:j]
			for k := range vs {
				vs[k].e.Name = strings.TrimPrefix(vs[k].e.Name, l.c.opt.Prefix)
			}
			keys = append(keys, vs)
		}
		i = j
	}
	return keys, nil
}

// ListAt lists the objects as they were at t: of each key, its newest
// version written at t or before, unless that is a delete marker. Reads
// are of that version.
func (l *Live) ListAt(t time.Time) func(ctx context.Context) ([]object.LiveEntry, error) {
	return func(ctx context.Context) ([]object.LiveEntry, error) {
		keys, err := l.versions(ctx)
		if err != nil {
			return nil, err
		}
		var ents []object.LiveEntry
		for _, vs := range keys {
			for _, v := range vs {
				if v.e.MTime.After(t) {
					continue
				}
				if !v.deleted {
					ents = append(ents, v.e)
				}
				break
			}
		}
		return ents, nil
	}
}

// ListVersions lists every key with its versions and delete markers
// (Deleted), newest first: the entry of a key is its latest version,
// Deleted if that is a delete marker (a key with only delete markers
// left is listed so too).
func (l *Live) ListVersions(ctx context.Context) ([]object.LiveEntry, error) {
	keys, err := l.versions(ctx)
	if err != nil {
		return nil, err
	}
	ents := make([]object.LiveEntry, 0, len(keys))
	for _, vs := range keys {
		versions := make([]object.LiveEntry, len(vs))
		for i, v := range vs {
			versions[i] = v.e
			versions[i].Deleted = v.deleted
		}
		e := versions[0]
		if e.Deleted {
			e = object.LiveEntry{Name: e.Name, Deleted: true}
		}
		e.Versions = versions
		ents = append(ents, e)
	}
	return ents, nil
}

// CheckVersions asks for one version (a one-key ListObjectVersions): it
// fails as the listing of --at and --versions would, at once, on a
// missing s3:ListBucketVersions.
func (l *Live) CheckVersions(ctx context.Context) error {
	_, err := l.c.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &l.c.opt.Bucket,
		Prefix: aws.String(l.c.opt.Prefix), MaxKeys: aws.Int32(1)})
	return classify(err, "list versions", "s3:ListBucketVersions", l.c.opt.Bucket, "")
}
