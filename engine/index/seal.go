package index

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// The cache is sealed with AES-256-GCM, not the store's XChaCha20-Poly1305:
// a lookup opens one block, and GCM (AES-NI) opens a 1 KiB block several
// times faster. Its 96-bit nonces are safe because every file has its own
// key and every block of a file is sealed once, with its place as nonce.
const gcmTag = 16

// keyDomain separates the cache's keys from everything else derived from
// the cache key (itself derived from the master key, engine/repo.go).
const keyDomain = "coffer index cache v1\x00"

// fileAEAD is the AEAD of one cache file: kind "run" or "manifest", the
// store's id, and the file's random id bind the key to that file.
func fileAEAD(key []byte, storeID, kind string, fileID []byte) cipher.AEAD {
	h, err := blake3.NewKeyed(key)
	if err != nil {
		panic("index: cache key must be 32 bytes")
	}
	h.Write([]byte(keyDomain))
	h.Write([]byte(kind))
	h.Write(binary.AppendUvarint(nil, uint64(len(storeID))))
	h.Write([]byte(storeID))
	h.Write(fileID)
	var k [32]byte
	h.Sum(k[:0])
	c, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err)
	}
	a, err := cipher.NewGCM(c)
	if err != nil {
		panic(err)
	}
	return a
}

// blockNonce is the nonce of block i of a region of a run file.
func blockNonce(region byte, i int) [12]byte {
	var n [12]byte
	n[0] = region
	binary.BigEndian.PutUint64(n[4:], uint64(i))
	return n
}
