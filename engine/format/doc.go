// Package format owns the byte-level codecs of docs/FORMAT.md: the varint
// encoder and decoder every binary structure is written with, zstd
// compression with its raw fallback, pack trailers and blob locations,
// index files, and the associated-data strings that bind a sealed object
// to its purpose. It knows ids and keys (engine/crypto), not storage.
package format
