package engine

import (
	"errors"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"
)

// IsDamage reports whether err says that something in the store is
// damaged or gone (an authentication failure, a corrupt encoding, an
// object or blob not found), as opposed to a failure to reach the store
// (network, permissions, a cancelled context), after which a repair must
// stop rather than drop anything.
func IsDamage(err error) bool {
	return err != nil && (errors.Is(err, crypto.ErrAuth) || errors.Is(err, format.ErrCorrupt) || store.IsNotFound(err))
}
