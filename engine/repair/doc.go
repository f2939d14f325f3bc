// Package repair mends a damaged store, a driver over the repository's
// exported API like check: Index rebuilds the index from the packs'
// trailers, Packs drops the blobs of damaged packs from the index after
// copying the ones that still read, and Snapshots rewrites snapshots
// whose trees or files lost blobs (FORMAT.md §9 for the index rules). A
// repair that writes holds the store's exclusive lock, as prune does.
package repair
