package engine

import (
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"

	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zeebo/blake3"
)

// FormatVersion is the store format this build writes into new stores
// and the newest it reads. Bump it on any change a previous build would
// misread. Version 2 added index pages above the pages of large
// directories (docs/FORMAT.md §7). A store keeps the version it was
// created with: coffer writes into it only what that version allows, so
// the coffers that created it keep reading it.
const FormatVersion = 2

// MinFormatVersion is the oldest store format this build reads and writes.
const MinFormatVersion = 1

// Params are a store's fixed parameters. They are authenticated: every key
// slot wraps the master key with the exact bytes of Params as associated
// data, so editing them makes every passphrase fail.
type Params struct {
	Version     int           `json:"version"`
	StoreID     string        `json:"id"`
	Created     time.Time     `json:"created"`
	Chunker     ChunkerParams `json:"chunker"`
	Hash        string        `json:"hash"`
	Cipher      string        `json:"cipher"`
	Compression string        `json:"compression"`
	PackSize    int           `json:"pack_size"`
	// ObjectLock, when present, locks every object the store keeps
	// (S3 Object Lock) until some days after its write; absent in stores
	// made without --object-lock-days (docs/FORMAT.md §3).
	ObjectLock *ObjectLockParams `json:"object_lock,omitempty"`
}

// ObjectLockParams are a store's object lock: Mode is "governance" or
// "compliance", Days at least 1.
type ObjectLockParams struct {
	Mode string `json:"mode"`
	Days int    `json:"days"`
}

// MaxObjectLockDays bounds --object-lock-days (S3's own limit is 100 years).
const MaxObjectLockDays = 36500

// Retention returns the store's object lock as a storage policy: the zero
// policy for a store without one. Prune extends the locks of the objects
// live snapshots still need by it.
func (p Params) Retention() store.RetentionPolicy {
	if p.ObjectLock == nil {
		return store.RetentionPolicy{}
	}
	return store.RetentionPolicy{Mode: store.RetentionMode(p.ObjectLock.Mode), Days: p.ObjectLock.Days}
}

// ChunkerParams fix how file content is cut into chunks.
type ChunkerParams struct {
	Algorithm string `json:"algorithm"`
	Min       int    `json:"min"`
	Normal    int    `json:"normal"`
	Max       int    `json:"max"`
}

// DefaultChunker is FastCDC at 512 KiB / 1 MiB / 8 MiB, keyed per store.
var DefaultChunker = ChunkerParams{Algorithm: "fastcdc-v1.0.0", Min: 512 << 10, Normal: 1 << 20, Max: 8 << 20}

// DefaultPackSize is the size at which a pack is closed and uploaded.
const DefaultPackSize = 16 << 20

// KeySlot wraps the master key under a key derived from one passphrase.
type KeySlot struct {
	ID      string           `json:"id"`
	Created time.Time        `json:"created"`
	KDF     string           `json:"kdf"`
	Params  crypto.KDFParams `json:"params"`
	Salt    []byte           `json:"salt"`
	// Wrapped is nonce || XChaCha20-Poly1305(kek, master key, aad=params bytes).
	Wrapped []byte `json:"wrapped"`
}

type configFile struct {
	Params json.RawMessage `json:"params"`
	Keys   []KeySlot       `json:"keys"`
}

// ErrWrongPassphrase says no key slot opened with the passphrase given.
var ErrWrongPassphrase = errors.New("wrong passphrase: no key slot of this store opens with it")

// ErrNoStore says the storage holds no coffer store.
var ErrNoStore = errors.New("no coffer store here")

// ErrStoreExists says create found a store already.
var ErrStoreExists = errors.New("a coffer store already exists here")

// NewerFormatError says the store was written by a newer coffer.
type NewerFormatError struct{ Have, Want int }

func (e *NewerFormatError) Error() string {
	return fmt.Sprintf("store format version %d is newer than this coffer supports (%d): upgrade coffer to open it", e.Have, e.Want)
}

// CreateOptions tune a new store; zero values mean the defaults.
type CreateOptions struct {
	KDF      crypto.KDFParams
	Chunker  ChunkerParams
	PackSize int
	// Version is the store's format version, FormatVersion if 0; an older
	// one (at least MinFormatVersion) makes a store that older coffers
	// open.
	Version int
	// ObjectLock, when Days > 0, makes a store whose every object is
	// locked for that many days after its write (S3 Object Lock). The
	// storage must be a store.Retainer whose CheckRetention passes.
	ObjectLock store.RetentionPolicy
}

func wrapMaster(master, passphrase, paramsBytes []byte, kdf crypto.KDFParams) (KeySlot, error) {
	if err := kdf.Validate(); err != nil {
		return KeySlot{}, err
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	kek := kdf.Derive(passphrase, salt)
	k, err := deriveKEK(kek)
	if err != nil {
		return KeySlot{}, err
	}
	id := make([]byte, 4)
	rand.Read(id)
	return KeySlot{
		ID: hex.EncodeToString(id), Created: time.Now().UTC(), KDF: "argon2id",
		Params: kdf, Salt: salt, Wrapped: k.Seal(nil, master, paramsBytes),
	}, nil
}

// deriveKEK turns an Argon2id output into an AEAD.
func deriveKEK(kek []byte) (*crypto.Keys, error) {
	var m [32]byte
	blake3.DeriveKey("coffer 2026-11 key slot", kek, m[:])
	return crypto.DeriveKeys(m[:])
}

// Create writes a new store's config with one key slot for passphrase.
func Create(ctx context.Context, st store.Storage, passphrase []byte, opt CreateOptions) (*Repo, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("refusing an empty passphrase")
	}
	if _, err := st.Stat(ctx, store.ConfigHandle); err == nil {
		return nil, fmt.Errorf("%s: %w", st.Location(), ErrStoreExists)
	} else if !store.IsNotFound(err) {
		return nil, err
	}
	if opt.KDF == (crypto.KDFParams{}) {
		opt.KDF = crypto.DefaultKDF
	}
	if opt.Chunker == (ChunkerParams{}) {
		opt.Chunker = DefaultChunker
	}
	if opt.PackSize == 0 {
		opt.PackSize = DefaultPackSize
	}
	if opt.Version == 0 {
		opt.Version = FormatVersion
	}
	sid := make([]byte, 16)
	rand.Read(sid)
	p := Params{
		Version: opt.Version, StoreID: hex.EncodeToString(sid), Created: time.Now().UTC(),
		Chunker: opt.Chunker, Hash: "blake3-keyed-256", Cipher: "xchacha20-poly1305",
		Compression: "zstd", PackSize: opt.PackSize,
	}
	if opt.ObjectLock.Days != 0 {
		if opt.ObjectLock.Mode == "" {
			opt.ObjectLock.Mode = store.Governance
		}
		p.ObjectLock = &ObjectLockParams{Mode: string(opt.ObjectLock.Mode), Days: opt.ObjectLock.Days}
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if p.ObjectLock != nil {
		ret, ok := store.RetainerOf(st)
		if !ok {
			return nil, fmt.Errorf("%s cannot lock objects: object lock needs an S3 store in a bucket with Object Lock enabled", st.Location())
		}
		if err := ret.CheckRetention(ctx, p.Retention()); err != nil {
			return nil, err
		}
		// From the config on, every object is written locked.
		ret.SetRetention(p.Retention())
	}
	pb, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		return nil, err
	}
	slot, err := wrapMaster(master, passphrase, pb, opt.KDF)
	if err != nil {
		return nil, err
	}
	cf := configFile{Params: pb, Keys: []KeySlot{slot}}
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return nil, err
	}
	// Where the storage can, create the config only if it is still absent:
	// two creates at once must not leave one of them with a lost key.
	if st.Features().Conditional {
		err = st.PutIf(ctx, store.ConfigHandle, data, "")
		if errors.Is(err, store.ErrPreconditionFailed) {
			return nil, fmt.Errorf("%s: %w", st.Location(), ErrStoreExists)
		}
	} else {
		err = st.Put(ctx, store.ConfigHandle, data)
	}
	if err != nil {
		return nil, err
	}
	r, err := newRepo(st, p, master)
	if r != nil {
		r.slotID = slot.ID
	}
	return r, err
}

// SlotID returns the id of the key slot that opened the store.
func (r *Repo) SlotID() string { return r.slotID }

// KeySlots lists the store's key slots (their wrapped keys are useless
// without a passphrase, but callers should show only ids and dates).
func (r *Repo) KeySlots(ctx context.Context) ([]KeySlot, error) {
	data, err := r.st.Get(ctx, store.ConfigHandle, 0, -1)
	if err != nil {
		return nil, err
	}
	cf, _, err := decodeConfig(data)
	if err != nil {
		return nil, err
	}
	return cf.Keys, nil
}

func (r *Repo) readConfig(ctx context.Context) (*configFile, store.Version, error) {
	if !r.st.Features().Conditional {
		return nil, "", fmt.Errorf("store %s: changing key slots needs conditional writes, which this storage does not offer: %w", r.st.Location(), store.ErrNotSupported)
	}
	data, v, err := r.st.GetVersion(ctx, store.ConfigHandle)
	if err != nil {
		return nil, "", err
	}
	cf, _, err := decodeConfig(data)
	return cf, v, err
}

// ErrConfigChanged says the config changed between the read and the write
// of a key-slot change: another client changed the key slots at the same
// time, and this change was not made.
var ErrConfigChanged = errors.New("the store's config changed while the key slots were being changed (another 'passphrase add' or 'rm' at the same time?); nothing was changed: run the command again")

// writeConfig replaces the config read as version v, only if nobody
// changed it since: two key-slot changes at once can neither lose a slot
// nor bring back a removed one.
func (r *Repo) writeConfig(ctx context.Context, cf *configFile, v store.Version) error {
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	err = r.st.PutIf(ctx, store.ConfigHandle, data, v)
	if errors.Is(err, store.ErrPreconditionFailed) {
		return fmt.Errorf("%w: %w", ErrConfigChanged, err)
	}
	return err
}

// AddKeySlot adds a key slot that opens the store with passphrase. The
// master key, and so every blob, stays as it is.
func (r *Repo) AddKeySlot(ctx context.Context, passphrase []byte, kdf crypto.KDFParams) (KeySlot, error) {
	if len(passphrase) == 0 {
		return KeySlot{}, errors.New("refusing an empty passphrase")
	}
	if kdf == (crypto.KDFParams{}) {
		kdf = crypto.DefaultKDF
	}
	cf, v, err := r.readConfig(ctx)
	if err != nil {
		return KeySlot{}, err
	}
	slot, err := wrapMaster(r.master, passphrase, cf.Params, kdf)
	if err != nil {
		return KeySlot{}, err
	}
	cf.Keys = append(cf.Keys, slot)
	return slot, r.writeConfig(ctx, cf, v)
}

// RemoveKeySlot removes key slot id. It refuses to remove the last slot,
// which would lock everyone out for good.
func (r *Repo) RemoveKeySlot(ctx context.Context, id string) error {
	cf, v, err := r.readConfig(ctx)
	if err != nil {
		return err
	}
	keep := cf.Keys[:0:0]
	for _, k := range cf.Keys {
		if k.ID != id {
			keep = append(keep, k)
		}
	}
	switch {
	case len(keep) == len(cf.Keys):
		return fmt.Errorf("key slot %s: no such slot: %w", id, store.ErrNotFound)
	case len(keep) == 0:
		return fmt.Errorf("key slot %s is the store's only one: add another passphrase first", id)
	}
	cf.Keys = keep
	return r.writeConfig(ctx, cf, v)
}

func (p Params) validate() error {
	if p.Version < MinFormatVersion {
		return fmt.Errorf("config: invalid format version %d", p.Version)
	}
	if p.Version > FormatVersion {
		return &NewerFormatError{Have: p.Version, Want: FormatVersion}
	}
	if p.Hash != "blake3-keyed-256" || p.Cipher != "xchacha20-poly1305" || p.Compression != "zstd" {
		return fmt.Errorf("config: unsupported hash/cipher/compression %q/%q/%q", p.Hash, p.Cipher, p.Compression)
	}
	c := p.Chunker
	if c.Algorithm != "fastcdc-v1.0.0" || c.Min < 64 || c.Normal <= c.Min || c.Max <= c.Normal || c.Max > 64<<20 || c.Normal&(c.Normal-1) != 0 {
		return fmt.Errorf("config: unsupported chunker %+v", c)
	}
	if p.PackSize < 1<<10 || p.PackSize > 1<<30 {
		return fmt.Errorf("config: unsupported pack size %d", p.PackSize)
	}
	if l := p.ObjectLock; l != nil {
		if _, err := store.ParseRetentionMode(l.Mode); err != nil || l.Mode != strings.ToLower(l.Mode) {
			return fmt.Errorf("config: unsupported object lock mode %q (want governance or compliance)", l.Mode)
		}
		if l.Days < 1 || l.Days > MaxObjectLockDays {
			return fmt.Errorf("config: object lock of %d days: want 1 to %d", l.Days, MaxObjectLockDays)
		}
	}
	return nil
}

// decodeConfig parses a config object and checks its parameters, before
// any passphrase is tried, so a newer store fails with the right message.
func decodeConfig(data []byte) (*configFile, Params, error) {
	var cf configFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&cf); err != nil {
		return nil, Params{}, fmt.Errorf("config: not a coffer config: %w", err)
	}
	if dec.More() {
		return nil, Params{}, errors.New("config: not a coffer config: trailing data after the JSON object")
	}
	// The authenticated form of the params is their compact JSON, so
	// re-indenting the file does not lock anyone out.
	var compact bytes.Buffer
	if err := json.Compact(&compact, cf.Params); err != nil {
		return nil, Params{}, fmt.Errorf("config: bad params: %w", err)
	}
	cf.Params = compact.Bytes()
	var p Params
	if err := json.Unmarshal(cf.Params, &p); err != nil {
		return nil, Params{}, fmt.Errorf("config: bad params: %w", err)
	}
	if err := p.validate(); err != nil {
		return nil, Params{}, err
	}
	if len(cf.Keys) == 0 {
		return nil, Params{}, errors.New("config: no key slots")
	}
	for _, k := range cf.Keys {
		if k.KDF != "argon2id" {
			return nil, Params{}, fmt.Errorf("config: key slot %s: unsupported kdf %q", k.ID, k.KDF)
		}
		if err := k.Params.Validate(); err != nil {
			return nil, Params{}, fmt.Errorf("config: key slot %s: %w", k.ID, err)
		}
	}
	return &cf, p, nil
}

// Open reads the store's config and unlocks it with passphrase.
func Open(ctx context.Context, st store.Storage, passphrase []byte) (*Repo, error) {
	data, err := st.Get(ctx, store.ConfigHandle, 0, -1)
	if store.IsNotFound(err) {
		return nil, fmt.Errorf("%s: %w (run create first, or check the path)", st.Location(), ErrNoStore)
	}
	if err != nil {
		return nil, err
	}
	cf, p, err := decodeConfig(data)
	if err != nil {
		return nil, err
	}
	for _, slot := range cf.Keys {
		k, err := deriveKEK(slot.Params.Derive(passphrase, slot.Salt))
		if err != nil {
			return nil, err
		}
		master, err := k.Open(nil, slot.Wrapped, cf.Params)
		if err == nil && len(master) == 32 {
			// The params are authentic now: a store with object lock
			// writes every object locked, where the storage can lock
			// (a copy in a folder opens, and locks nothing).
			if ret, ok := store.RetainerOf(st); ok && p.ObjectLock != nil {
				ret.SetRetention(p.Retention())
			}
			r, err := newRepo(st, p, master)
			if r != nil {
				r.slotID = slot.ID
			}
			return r, err
		}
	}
	return nil, ErrWrongPassphrase
}
