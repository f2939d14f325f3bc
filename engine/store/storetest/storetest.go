// Package storetest is the conformance suite for store.Storage: the one
// set of tests that the memory and folder stores, S3, and every decorator
// (fault injection, the disk cache) must pass, so that the engine can
// rely on the contract written in package store and nothing more.
//
// Run runs every case, each on a fresh, empty storage. The cases are
// also exported one by one (Cases) so that a test can run a single case
// against a storage with a recording testing.TB, and so show that the
// suite notices a broken storage.
package storetest

import (
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
)

// A Case is one check of the contract. It gets an empty storage, and
// only calls t.Fatal (and friends) from the goroutine it runs on.
type Case struct {
	Name string
	Fn   func(t testing.TB, st store.Storage)
}

// Cases is the whole suite, in the order Run runs it.
var Cases = []Case{
	{"PutGet", testPutGet},
	{"GetRange", testGetRange},
	{"GetOutOfRange", testGetOutOfRange},
	{"GetNegativeOffset", testGetNegativeOffset},
	{"GetInto", testGetInto},
	{"Stat", testStat},
	{"Missing", testMissing},
	{"Delete", testDelete},
	{"ListKinds", testListKinds},
	{"ListMany", testListMany},
	{"ListStop", testListStop},
	{"Overwrite", testOverwrite},
	{"PutIfCreate", testPutIfCreate},
	{"PutIfVersion", testPutIfVersion},
	{"PutIfRace", testPutIfRace},
	{"PutIfCounter", testPutIfCounter},
	{"ConcurrentWriters", testConcurrentWriters},
	{"Large", testLarge},
	{"Temp", testTemp},
	{"Cancel", testCancel},
	{"InvalidHandles", testInvalidHandles},
	{"Features", testFeatures},
}

// Options adjust Run for one storage.
type Options struct {
	// Skip maps case names to the reason they cannot run against this
	// storage (say, a fake S3 server without conditional writes). Every
	// skip is reported with its reason; a name that is not a case is a
	// test failure, so a renamed case cannot silently stop skipping.
	Skip map[string]string
}

// Run runs every case as a subtest of t, each on a fresh, empty storage
// from open. open may use t.TempDir and t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Storage) {
	RunWith(t, open, Options{})
}

// RunWith is Run with options.
func RunWith(t *testing.T, open func(t *testing.T) store.Storage, opt Options) {
	t.Helper()
	known := map[string]bool{}
	for _, c := range Cases {
		known[c.Name] = true
	}
	for name := range opt.Skip {
		if !known[name] {
			t.Errorf("storetest: Options.Skip names %q, which is not a case", name)
		}
	}
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) {
			if why, ok := opt.Skip[c.Name]; ok {
				t.Skip(why)
			}
			c.Fn(t, open(t))
		})
	}
}

// Sizes the suite uses; smaller under -short.
func listCount() int {
	if testing.Short() {
		return 300
	}
	return 2000
}

func largeSize() int {
	if testing.Short() {
		return 20 << 20
	}
	return 40 << 20
}
