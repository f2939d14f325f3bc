// Package backup is the backup driver: it walks a Source, reads and
// chunks changed files, deduplicates and saves their blobs through the
// repository's Saver, builds the snapshot's tree in sort-key order, and
// writes the snapshot last, once everything it names is durable. An entry
// unchanged since the parent snapshot (same size, times and, for S3, ETag)
// reuses its chunk list without being read. It owns the Source interface
// and its folder implementation (Folder); s3io implements it for buckets.
// It uses only the repository's exported API.
package backup
