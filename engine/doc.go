// Package engine owns coffer's store format and the drivers that read and
// write it: content-defined chunking, keyed blob ids, compression,
// authenticated encryption, packs, index files, paged directory trees and
// snapshot objects; backup, restore, check and info; and the Storage, Source
// and Destination interfaces with their local-folder implementations.
//
// The format is specified in docs/FORMAT.md; the structs and encoders here
// mirror it. engine never imports AWS or FUSE code: connectors implement its
// interfaces from outside.
package engine
