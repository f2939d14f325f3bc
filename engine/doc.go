// Package engine is the repository: a store opened with a passphrase. It
// owns the config and its key slots (Create, Open, AddKeySlot), loading
// and saving blobs (LoadBlob, Saver, which packs and indexes them),
// sealed metadata objects, snapshots, and reading trees through an
// optional cache (LoadDir, LoadPage, FileLayout, ResolvePath).
//
// The layers below it are packages of their own: store (objects by typed
// handle), crypto, format, tree, index and object. The drivers above it,
// backup, restore and check, use only its exported API. docs/FORMAT.md
// specifies the format; docs/ARCHITECTURE.md draws the layers.
package engine
