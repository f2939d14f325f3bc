package engine_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"

	"github.com/coffer-backup/coffer/engine"

	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
)

// Benchmarks of each stage of a backup on 8 MiB of random and of
// compressible data; run with
//
//	go test ./engine -run='^$' -bench=. -benchtime=2s

const qaBenchSize = 8 << 20

var qaBenchData = map[string][]byte{}

// qaBenchInput returns the 8 MiB "random" or "text" buffer.
func qaBenchInput(kind string) []byte {
	if b, ok := qaBenchData[kind]; ok {
		return b
	}
	var b []byte
	switch kind {
	case "random":
		b = qaRand(8, qaBenchSize)
	case "text":
		b = textBytes(8, qaBenchSize)
	}
	qaBenchData[kind] = b
	return b
}

var qaBenchKinds = []string{"random", "text"}

func qaBenchKeys(b testing.TB) *crypto.Keys {
	b.Helper()
	k, err := crypto.DeriveKeys(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkChunk cuts the buffer with keyed FastCDC at the default
// parameters, as backup does.
func BenchmarkChunk(b *testing.B) {
	k := qaBenchKeys(b)
	c := engine.DefaultChunker
	opts := &chunkers.ChunkerOpts{MinSize: c.Min, NormalSize: c.Normal, MaxSize: c.Max, Key: k.ChunkerKey}
	buf := make([]byte, c.Max)
	for _, kind := range qaBenchKinds {
		data := qaBenchInput(kind)
		b.Run(kind, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var chunks, total int
			for b.Loop() {
				ch, err := chunkers.NewChunkerBuffer(c.Algorithm, bytes.NewReader(data), opts, buf)
				if err != nil {
					b.Fatal(err)
				}
				for {
					d, err := ch.Next()
					if err != nil && err != io.EOF {
						b.Fatal(err)
					}
					chunks++
					total += len(d)
					if err == io.EOF {
						break
					}
				}
			}
			if total%len(data) != 0 {
				b.Fatalf("chunks add up to %d bytes", total)
			}
			b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
		})
	}
}

// BenchmarkHash compares the blob id hash (keyed BLAKE3) with HMAC-SHA-256
// and plain SHA-256. Hash speed does not depend on content.
func BenchmarkHash(b *testing.B) {
	k := qaBenchKeys(b)
	data := qaBenchInput("random")
	b.Run("blake3-keyed", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			k.BlobID(data)
		}
	})
	b.Run("hmac-sha256", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		h := hmac.New(sha256.New, k.IDKey)
		var sum [32]byte
		for b.Loop() {
			h.Reset()
			h.Write(data)
			h.Sum(sum[:0])
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sha256.Sum256(data)
		}
	})
}

// BenchmarkCompress runs compress (zstd, fastest) on each buffer; random
// data is tried and then stored raw.
func BenchmarkCompress(b *testing.B) {
	for _, kind := range qaBenchKinds {
		data := qaBenchInput(kind)
		b.Run(kind, func(b *testing.B) {
			dst := make([]byte, 0, len(data)+len(data)/8)
			var out []byte
			var comp format.Compression
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				out, comp, dst = format.Compress(dst, data, format.LevelDefault)
			}
			if (kind == "text") != (comp == format.CompZstd) {
				b.Fatalf("%s compressed as %d", kind, comp)
			}
			b.ReportMetric(float64(len(data))/float64(len(out)), "ratio")
		})
	}
}

// BenchmarkDecompress reverses BenchmarkCompress; throughput is of the
// plaintext.
func BenchmarkDecompress(b *testing.B) {
	for _, kind := range qaBenchKinds {
		data := qaBenchInput(kind)
		stored, comp, _ := format.Compress(nil, data, format.LevelDefault)
		b.Run(kind, func(b *testing.B) {
			dst := make([]byte, 0, len(data))
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				out, err := format.Decompress(dst[:0], stored, comp, len(data))
				if err != nil || len(out) != len(data) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSeal compares the blob cipher (XChaCha20-Poly1305 with a random
// nonce) with AES-256-GCM; speed does not depend on content.
func BenchmarkSeal(b *testing.B) {
	k := qaBenchKeys(b)
	data := qaBenchInput("random")
	aad := make([]byte, 32)
	dst := make([]byte, 0, len(data)+crypto.SealOverhead)
	b.Run("xchacha20-poly1305", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			k.Seal(dst[:0], data, aad)
		}
	})
	block, err := aes.NewCipher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("aes-256-gcm", func(b *testing.B) {
		nonce := make([]byte, gcm.NonceSize())
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			rand.Read(nonce)
			gcm.Seal(dst[:0], nonce, data, aad)
		}
	})
}

// BenchmarkOpen authenticates and decrypts what BenchmarkSeal seals.
func BenchmarkOpen(b *testing.B) {
	k := qaBenchKeys(b)
	data := qaBenchInput("random")
	aad := make([]byte, 32)
	sealed := k.Seal(nil, data, aad)
	dst := make([]byte, 0, len(data))
	b.Run("xchacha20-poly1305", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := k.Open(dst[:0], sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	block, _ := aes.NewCipher(bytes.Repeat([]byte{7}, 32))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	gsealed := gcm.Seal(nil, nonce, data, aad)
	b.Run("aes-256-gcm", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := gcm.Open(dst[:0], nonce, gsealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSaverSave stores the buffer as 1 MiB blobs (the default normal
// chunk size) through a Saver into a LocalStorage: blob id, compression,
// sealing, packing, and the durable upload of full packs (the uploads run
// in the background, as in a backup; the timed loop ends with Finish,
// which waits for the last one).
// Every iteration stamps its number into each blob so none dedups.
func BenchmarkSaverSave(b *testing.B) {
	for _, kind := range qaBenchKinds {
		b.Run(kind, func(b *testing.B) {
			r, _ := newTestRepo(b, engine.CreateOptions{})
			data := bytes.Clone(qaBenchInput(kind))
			s := r.NewSaver(b.Context(), 2)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			iter := uint64(0)
			for range b.N {
				iter++
				for off := 0; off < len(data); off += 1 << 20 {
					blob := data[off : off+1<<20]
					binary.LittleEndian.PutUint64(blob, iter)
					if _, err := s.Save(format.BlobData, r.Keys().BlobID(blob), blob); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := s.Finish(); err != nil { // timed: the last upload
				b.Fatal(err)
			}
			b.StopTimer()
			if got := s.NewBlobs.Load(); got != int64(iter)*8 {
				b.Fatalf("%d new blobs for %d iterations", got, iter)
			}
			b.ReportMetric(float64(s.StoredBytes.Load())/float64(int64(iter)*int64(len(data))), "stored/raw")
		})
	}
}
