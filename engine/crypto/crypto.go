// Package crypto owns the store's cryptography: 256-bit ids (keyed BLAKE3 of
// a blob's plaintext, plain BLAKE3 of an object's bytes), the working keys
// derived from the master key, XChaCha20-Poly1305 sealing, and the
// Argon2id parameters of key slots. It knows no format and no storage.
package crypto

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// ID is a 256-bit identifier: a blob id (keyed BLAKE3 of the plaintext) or
// the name of a pack, index or snapshot object (BLAKE3 of its bytes).
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the 8-hex-digit prefix people type and read.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("invalid id %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid id %q: %w", s, err)
	}
	return id, nil
}

// ShortName shortens an object name that is an id, and gives any other
// name as it is.
func ShortName(name string) string {
	if id, err := ParseID(name); err == nil {
		return id.Short()
	}
	return name
}

// MarshalText writes an id as hex.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads a hex id.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// hashID names objects by their stored bytes (unkeyed: the bytes are
// ciphertext, so the name leaks nothing).
func Hash(data []byte) ID { return ID(blake3.Sum256(data)) }

// Sizes of the AEAD framing around every sealed blob or object.
const (
	NonceSize = chacha20poly1305.NonceSizeX // 24
	TagSize   = chacha20poly1305.Overhead   // 16
	// sealOverhead is what sealing adds to a plaintext.
	SealOverhead = NonceSize + TagSize
)

// Keys are the working keys derived from the store's master key.
type Keys struct {
	aead       cipher.AEAD
	IDKey      []byte
	ChunkerKey []byte
	// idHashers recycles BlobID's keyed hashers: a BLAKE3 hasher is
	// about 7 KiB, and a backup of a million tiny files took one per
	// file, 7 GB of garbage that made the heap's high point grow with
	// the number of files (docs/PERFORMANCE.md, session 5).
	idHashers sync.Pool
}

// Derivation contexts (BLAKE3 derive_key); changing one is a format change.
const (
	ctxEncrypt = "coffer 2026-11 blob and object encryption"
	ctxBlobID  = "coffer 2026-11 blob id"
	ctxChunker = "coffer 2026-11 chunker gear table"
)

func DeriveKeys(master []byte) (*Keys, error) {
	if len(master) != 32 {
		return nil, errors.New("master key must be 32 bytes")
	}
	var enc, idk, chk [32]byte
	blake3.DeriveKey(ctxEncrypt, master, enc[:])
	blake3.DeriveKey(ctxBlobID, master, idk[:])
	blake3.DeriveKey(ctxChunker, master, chk[:])
	aead, err := chacha20poly1305.NewX(enc[:])
	if err != nil {
		return nil, err
	}
	return &Keys{aead: aead, IDKey: idk[:], ChunkerKey: chk[:]}, nil
}

// BlobID is the keyed BLAKE3-256 of a blob's plaintext.
func (k *Keys) BlobID(plaintext []byte) ID {
	h, _ := k.idHashers.Get().(*blake3.Hasher)
	if h == nil {
		h, _ = blake3.NewKeyed(k.IDKey)
	}
	h.Write(plaintext)
	var id ID
	h.Sum(id[:0])
	h.Reset() // keeps the key
	k.idHashers.Put(h)
	return id
}

// Seal appends nonce || ciphertext || tag of plaintext to dst.
func (k *Keys) Seal(dst, plaintext, aad []byte) []byte {
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic("coffer: no randomness for a nonce: " + err.Error())
	}
	dst = append(dst, nonce[:]...)
	return k.aead.Seal(dst, nonce[:], plaintext, aad)
}

// ErrAuth says sealed bytes failed authentication: they were corrupted,
// tampered with, or sealed under another key or for another purpose.
var ErrAuth = errors.New("authentication failed (data corrupted or tampered with)")

// Open authenticates and decrypts sealed (nonce || ciphertext || tag),
// appending the plaintext to dst.
func (k *Keys) Open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte envelope", ErrAuth, len(sealed), SealOverhead)
	}
	out, err := k.aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// KDFParams are the Argon2id parameters of one key slot.
type KDFParams struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
}

// DefaultKDF is what new key slots use: 16 MiB and 16 passes, about
// 0.15 s on a 2-core machine. It is the work of 32 MiB × 8, the default
// before it (and 4/3 of 64 MiB × 3, the first), at half its memory,
// which sets the floor of every command's peak RSS (a prune's, say; see
// docs/PERFORMANCE.md). OWASP's Argon2id table holds memory × passes
// about constant (46 MiB × 1, 19 MiB × 2, 7 MiB × 5); 16 × 16 is over
// 5× any of its lines. Key slots keep the parameters they were made with.
var DefaultKDF = KDFParams{Time: 16, Memory: 16 * 1024, Threads: 2}

func (p KDFParams) Derive(passphrase, salt []byte) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.Memory, p.Threads, 32)
}

func (p KDFParams) Validate() error {
	// Key slots are not authenticated; bounds keep a tampered config from
	// making Open take minutes or gigabytes.
	if p.Time < 1 || p.Time > 32 || p.Memory < 8 || p.Memory > 1<<20 || p.Threads < 1 || p.Threads > 16 {
		return fmt.Errorf("unsupported argon2id parameters t=%d m=%dKiB p=%d", p.Time, p.Memory, p.Threads)
	}
	return nil
}
