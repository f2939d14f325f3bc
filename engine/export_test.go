package engine

import (
	"context"

	"github.com/coffer-backup/coffer/engine/store"
)

// Internals that the engine's external tests (package engine_test) check
// directly: the config codec, object sealing and pack trailers.

type ConfigFile = configFile

const MaxObjectSize = maxObjectSize

var (
	DecodeConfig = decodeConfig
	WrapMaster   = wrapMaster
	PackKind     = packKind
)

func (p Params) Validate() error { return p.validate() }

func (r *Repo) SealObject(payload, aad []byte) []byte { return r.sealObject(payload, aad) }

func (r *Repo) OpenObject(sealed, aad []byte) ([]byte, error) { return r.openObject(sealed, aad) }

func (r *Repo) LoadObject(ctx context.Context, h store.Handle, aad []byte) ([]byte, error) {
	return r.loadObject(ctx, h, aad)
}
