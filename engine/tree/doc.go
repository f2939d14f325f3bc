// Package tree owns snapshot trees: nodes (files, directories, symlinks
// with what the source gave: size, times, mode, S3 attributes), their
// binary encoding, directories as inline entries or content-defined
// pages, the builder that writes a directory in sort-key order, and the
// iterator and lookup that read one through a page loader. It knows ids
// and codecs, not where blobs are stored.
package tree
