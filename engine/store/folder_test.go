package store_test

import (
	"testing"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/store/storetest"
)

func TestFolderConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Storage {
		st, err := store.NewFolder(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
