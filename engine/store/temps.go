package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TempSweeper is implemented by storages whose temp objects can outlive
// a killed writer (a folder's .tmp-* files): prune removes those older
// than a bound. Find it through the decorators with FindTempSweeper.
type TempSweeper interface {
	// RemoveTemps removes the temp objects last written before
	// olderThan ago and returns how many and their bytes.
	RemoveTemps(ctx context.Context, olderThan time.Duration) (n int, bytes int64, err error)
}

// FindTempSweeper returns the first layer of st that is a TempSweeper.
func FindTempSweeper(st Storage) (TempSweeper, bool) {
	for st != nil {
		if ts, ok := st.(TempSweeper); ok {
			return ts, true
		}
		w, ok := st.(Wrapper)
		if !ok {
			return nil, false
		}
		st = w.Unwrap()
	}
	return nil, false
}

// RemoveTemps removes the .tmp-* files under the folder (a writer killed
// before its rename left them) not modified for olderThan.
func (s *Folder) RemoveTemps(ctx context.Context, olderThan time.Duration) (int, int64, error) {
	n, bytes := 0, int64(0)
	cut := time.Now().Add(-olderThan)
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cut) {
			return nil
		}
		if err := os.Remove(p); err == nil {
			n++
			bytes += info.Size()
		}
		return nil
	})
	return n, bytes, err
}
