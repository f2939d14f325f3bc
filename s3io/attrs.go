package s3io

import (
	"hash/fnv"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/engine/tree"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Attribute keys an S3 object's node carries (docs/S3.md). User metadata
// is "meta.<name>", tags are "tag.<key>".
const (
	AttrETag               = "etag"
	AttrContentType        = "content_type"
	AttrContentEncoding    = "content_encoding"
	AttrContentLanguage    = "content_language"
	AttrCacheControl       = "cache_control"
	AttrContentDisposition = "content_disposition"
	AttrExpires            = "expires"
	AttrStorageClass       = "storage_class"
	AttrVersionID          = "version_id"
	AttrWebsiteRedirect    = "website_redirect_location"
	AttrRestore            = "restore"
	MetaPrefix             = "meta."
	TagPrefix              = "tag."
	checksumPrefix         = "checksum_"
)

// objMeta is what a HEAD or GET tells about an object.
type objMeta struct {
	size                                                                             int64
	etag, contentType, contentEncoding, contentLanguage, cacheControl, contentDispos string
	expires, storageClass, versionID, redirect, restore                              string
	lastModified                                                                     time.Time
	checksums                                                                        map[string]string
	metadata                                                                         map[string]string
	tagCount                                                                         *int32
}

func checksums(crc32, crc32c, crc64, sha1, sha256 *string) map[string]string {
	m := map[string]string{}
	for k, v := range map[string]*string{"crc32": crc32, "crc32c": crc32c, "crc64nvme": crc64, "sha1": sha1, "sha256": sha256} {
		if v != nil && *v != "" {
			m[k] = *v
		}
	}
	return m
}

func headMeta(o *s3.HeadObjectOutput) objMeta {
	return objMeta{
		size: aws.ToInt64(o.ContentLength), etag: aws.ToString(o.ETag), contentType: aws.ToString(o.ContentType),
		contentEncoding: aws.ToString(o.ContentEncoding), contentLanguage: aws.ToString(o.ContentLanguage),
		cacheControl: aws.ToString(o.CacheControl), contentDispos: aws.ToString(o.ContentDisposition),
		expires: aws.ToString(o.ExpiresString), storageClass: string(o.StorageClass), versionID: aws.ToString(o.VersionId),
		redirect: aws.ToString(o.WebsiteRedirectLocation), restore: aws.ToString(o.Restore),
		lastModified: aws.ToTime(o.LastModified),
		checksums:    checksums(o.ChecksumCRC32, o.ChecksumCRC32C, o.ChecksumCRC64NVME, o.ChecksumSHA1, o.ChecksumSHA256),
		metadata:     o.Metadata, tagCount: o.TagCount,
	}
}

func getMeta(o *s3.GetObjectOutput) objMeta {
	return objMeta{
		size: aws.ToInt64(o.ContentLength), etag: aws.ToString(o.ETag), contentType: aws.ToString(o.ContentType),
		contentEncoding: aws.ToString(o.ContentEncoding), contentLanguage: aws.ToString(o.ContentLanguage),
		cacheControl: aws.ToString(o.CacheControl), contentDispos: aws.ToString(o.ContentDisposition),
		expires: aws.ToString(o.ExpiresString), storageClass: string(o.StorageClass), versionID: aws.ToString(o.VersionId),
		redirect: aws.ToString(o.WebsiteRedirectLocation), restore: aws.ToString(o.Restore),
		lastModified: aws.ToTime(o.LastModified),
		checksums:    checksums(o.ChecksumCRC32, o.ChecksumCRC32C, o.ChecksumCRC64NVME, o.ChecksumSHA1, o.ChecksumSHA256),
		metadata:     o.Metadata, tagCount: o.TagCount,
	}
}

// attrs returns the node attributes of m plus tags, sorted by key. The
// listing's storage class wins over the HEAD's (HEAD omits STANDARD).
func (m *objMeta) attrs(listClass string, tags []types.Tag) []tree.Attr {
	var a []tree.Attr
	add := func(k, v string) {
		if v != "" {
			a = append(a, tree.Attr{Key: k, Value: []byte(v)})
		}
	}
	add(AttrETag, m.etag)
	add(AttrContentType, m.contentType)
	add(AttrContentEncoding, m.contentEncoding)
	add(AttrContentLanguage, m.contentLanguage)
	add(AttrCacheControl, m.cacheControl)
	add(AttrContentDisposition, m.contentDispos)
	add(AttrExpires, m.expires)
	sc := listClass
	if sc == "" {
		sc = m.storageClass
	}
	add(AttrStorageClass, sc)
	add(AttrVersionID, m.versionID)
	add(AttrWebsiteRedirect, m.redirect)
	add(AttrRestore, m.restore)
	for k, v := range m.checksums {
		add(checksumPrefix+k, v)
	}
	for k, v := range m.metadata {
		a = append(a, tree.Attr{Key: MetaPrefix + strings.ToLower(k), Value: []byte(v)})
	}
	for _, t := range tags {
		a = append(a, tree.Attr{Key: TagPrefix + aws.ToString(t.Key), Value: []byte(aws.ToString(t.Value))})
	}
	sortAttrs(a)
	return a
}

func sortAttrs(a []tree.Attr) {
	sort.Slice(a, func(i, j int) bool { return a[i].Key < a[j].Key })
}

// listAttrs are the attributes a listing alone gives.
func listAttrs(o types.Object) []tree.Attr {
	var a []tree.Attr
	if e := aws.ToString(o.ETag); e != "" {
		a = append(a, tree.Attr{Key: AttrETag, Value: []byte(e)})
	}
	if o.StorageClass != "" {
		a = append(a, tree.Attr{Key: AttrStorageClass, Value: []byte(o.StorageClass)})
	}
	return a
}

// etagStamp folds an ETag into the node's CTime, which the engine compares
// with the parent's to decide that an object is unchanged.
func etagStamp(etag string) int64 {
	h := fnv.New64a()
	h.Write([]byte(etag))
	return int64(h.Sum64() >> 1)
}

// objectMTime is the node time of a last-modified stamp: whole seconds,
// since HEAD says no more and a listing must agree with it.
func objectMTime(t time.Time) int64 {
	return t.Truncate(time.Second).UnixNano()
}

// tagging encodes "tag.*" attrs as the x-amz-tagging header of a PUT.
func tagging(attrs []tree.Attr) string {
	v := url.Values{}
	for _, a := range attrs {
		if k, ok := strings.CutPrefix(a.Key, TagPrefix); ok {
			v.Set(k, string(a.Value))
		}
	}
	return v.Encode()
}

func attrValue(attrs []tree.Attr, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			return string(a.Value)
		}
	}
	return ""
}
