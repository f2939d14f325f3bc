package engine_test

import (
	"context"
	"sync/atomic"

	"github.com/coffer-backup/coffer/engine/enginetest"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// The helpers every test of the engine uses (enginetest).
var (
	cheapKDF     = enginetest.CheapKDF
	testChunker  = enginetest.Chunker
	newTestRepo  = enginetest.NewRepo
	reopen       = enginetest.Reopen
	folderStore  = enginetest.FolderStore
	openRepo     = enginetest.OpenRepo
	writeFile    = enginetest.WriteFile
	backupDir    = enginetest.BackupDir
	restoreAll   = enginetest.RestoreAll
	compareTrees = enginetest.CompareTrees
	indexFiles   = enginetest.IndexFiles
	storePacks   = enginetest.StorePacks
	randBytes    = testtree.RandBytes
	textBytes    = testtree.Text
	fixedTime    = testtree.FixedTime
)

// gets passes a Storage through, counting the Gets of objects of one
// kind.
type gets struct {
	store.Storage
	kind store.Kind
	n    atomic.Int64
}

func (s *gets) Get(ctx context.Context, h store.Handle, off, n int64) ([]byte, error) {
	if h.Kind == s.kind {
		s.n.Add(1)
	}
	return s.Storage.Get(ctx, h, off, n)
}

func (s *gets) Unwrap() store.Storage { return s.Storage }
