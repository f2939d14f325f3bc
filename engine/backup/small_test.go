package backup_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/crypto"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/engine/tree"
)

// TestSmallFilesChunkAsTheChunkerDoes: files up to Chunker.Min are read
// without a chunker window (one chunk, in a buffer of their size); their
// chunks must be exactly what the chunker makes of them, or a file's
// second backup would not dedup against its first. Sizes around Min and
// Max, with one window for two workers.
func TestSmallFilesChunkAsTheChunkerDoes(t *testing.T) {
	r, err := engine.Create(t.Context(), store.NewMemory(), []byte("pw"),
		engine.CreateOptions{KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Params.Chunker
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	files := map[string][]byte{}
	for _, n := range []int{0, 1, 4096, c.Min - 1, c.Min, c.Min + 1, c.Normal, 3 << 20, c.Max - 1, c.Max + 12345} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("f%08d", n)
		files[name] = b
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := backup.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(t.Context(), r, src, backup.Options{Concurrency: 2, Windows: 1})
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.LoadDir(t.Context(), res.Snapshot.RootNode().Subtree)
	if err != nil {
		t.Fatal(err)
	}
	it := r.Iter(d)
	seen := 0
	for {
		n, ok, err := it.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		want := chunkIDs(t, r, files[n.Name])
		if got := n.Chunks; len(got) != len(want) {
			t.Fatalf("%s: %d chunks, the chunker makes %d", n.Name, len(got), len(want))
		} else {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: chunk %d is %v, the chunker's %v", n.Name, i, got[i], want[i])
				}
			}
		}
		seen++
	}
	if seen != len(files) {
		t.Fatalf("%d files in the snapshot, want %d", seen, len(files))
	}
}

func chunkIDs(t *testing.T, r *engine.Repo, data []byte) []tree.Chunk {
	t.Helper()
	c := r.Params.Chunker
	ch, err := chunkers.NewChunkerBuffer(c.Algorithm, bytes.NewReader(data), &chunkers.ChunkerOpts{
		MinSize: c.Min, NormalSize: c.Normal, MaxSize: c.Max, Key: r.Keys().ChunkerKey}, make([]byte, c.Max))
	if err != nil {
		t.Fatal(err)
	}
	var out []tree.Chunk
	for {
		b, err := ch.Next()
		if len(b) > 0 {
			out = append(out, tree.Chunk{ID: r.Keys().BlobID(b), Size: uint32(len(b))})
		}
		if err != nil {
			break
		}
	}
	return out
}
