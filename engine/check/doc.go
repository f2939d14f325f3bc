// Package check is the verification driver: it reads every pack a store
// (or a choice of snapshots) needs, checks each pack's hash, its trailer
// against the index, and every blob's MAC and id, and names each damaged
// file or directory. It loads the index for itself, tolerating damaged
// index files, so a check never changes what other users of the
// repository see. It uses only the repository's exported API.
package check
