package main

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"

	"github.com/coffer-backup/coffer/engine"
)

func isFlagError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "flag provided but not defined") || strings.HasPrefix(s, "invalid value") ||
		strings.Contains(s, "flag needs an argument") || strings.HasPrefix(s, "No help topic") ||
		strings.Contains(s, "Required flag")
}

// explain turns an engine error into a sentence that says what to do.
func explain(err error) string {
	var nf *engine.NewerFormatError
	switch {
	case errors.Is(err, engine.ErrWrongPassphrase):
		return err.Error() + " (check COFFER_PASSPHRASE or --passphrase-file)"
	case errors.As(err, &nf):
		return err.Error()
	case errors.Is(err, syscall.ENOSPC):
		return err.Error() + " (the disk is full: free space and run the command again; nothing already stored was changed)"
	case errors.Is(err, fs.ErrPermission):
		return err.Error() + " (permission denied: run as a user who may read/write it)"
	}
	return err.Error()
}
