// Package layers has no code: its test, layers_test.go, enforces how
// coffer's packages may import each other and that only the store layer
// spells the store's object names. It runs in `make test` (go test ./...).
// The top of layers_test.go lists the rules and says what to do when it
// fails.
package layers
