package s3io

import (
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/storetest"
)

// The S3 store against gofakes3, in process: each case gets a new server
// and an empty bucket. gofakes3 (v1.2.0, s3mem) checks If-Match and
// If-None-Match under its write lock, so the PutIf cases run here too;
// the Temp case skips itself, since the S3 store has no temp objects.
func TestStorageConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Storage {
		be := s3mem.New()
		if err := be.CreateBucket("b"); err != nil {
			t.Fatal(err)
		}
		return NewStorage(testClient(t, gofakes3.New(be).Server()))
	})
}
