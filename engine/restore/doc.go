// Package restore is the restore driver: it writes a snapshot's tree (or
// one entry of it) into a Destination, fetching the blobs of each pack in
// runs of adjacent ranges and writing files with WriteAt from several
// workers, then setting metadata. It owns the Destination interface and
// its folder implementation (Folder); s3io implements it for buckets. It
// uses only the repository's exported API.
package restore
