package engine_test

import (
	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/store"

	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLoadIndex loads the index of a store of n blobs (index files
// of 50,000 blobs in packs of 16, written as a backup writes them)
// through Repo.LoadIndex: once from the index files (reading, decrypting,
// decoding, building the cache), then again from the cache. n is 1M, or
// COFFER_BENCH_INDEX_N.
func BenchmarkLoadIndex(b *testing.B) {
	n := 1 << 20
	if s := os.Getenv("COFFER_BENCH_INDEX_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	ctx := context.Background()
	r, path := newTestRepo(b, engine.CreateOptions{})
	var seq uint64
	id := func() crypto.ID {
		seq++
		var x [8]byte
		binary.LittleEndian.PutUint64(x[:], seq)
		return crypto.Hash(x[:])
	}
	for done := 0; done < n; {
		var packs []format.IndexPack
		for k := 0; k < 50_000 && done < n; {
			p := format.IndexPack{ID: id(), Kind: format.BlobData}
			for range 16 {
				p.Blobs = append(p.Blobs, format.BlobLoc{ID: id(), Kind: format.BlobData, Offset: uint32(k), Length: 1 << 20, RawLen: 1 << 20})
				k++
				done++
			}
			packs = append(packs, p)
		}
		data := r.SealObject(format.EncodeIndex(packs), format.AADIndex)
		if err := r.Storage().Put(ctx, store.Handle{Kind: store.KindIndex, Name: crypto.Hash(data).String()}, data); err != nil {
			b.Fatal(err)
		}
	}
	var files, cached time.Duration
	for range b.N {
		cache := filepath.Join(b.TempDir(), "cache")
		for pass := range 2 {
			r := reopen(b, path)
			r.UseIndexCache(cache)
			start := time.Now()
			if err := r.LoadIndex(ctx); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			if pass == 0 {
				files += d
			} else {
				cached += d
				if r.IndexCacheNote() != "" || len(r.Index.Covered()) == 0 {
					b.Fatalf("cache not used: %s", r.IndexCacheNote())
				}
			}
			if !r.Index.Has(crypto.Hash(binary.LittleEndian.AppendUint64(nil, 2))) {
				b.Fatal("a blob is missing")
			}
			r.Index.Close()
		}
	}
	b.ReportMetric(files.Seconds()/float64(b.N), "s/load-files")
	b.ReportMetric(cached.Seconds()/float64(b.N), "s/load-cache")
	b.ReportMetric(0, "ns/op")
}
