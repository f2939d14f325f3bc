package fusefs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestLiveSmallBlocks: a random read GETs the 64 KiB around it, not its
// 1 MiB block; a read that follows it goes through the Reader's 1 MiB
// blocks; a random read in a cached 1 MiB block asks nothing; every read
// is byte-exact; and a rewritten object fails small reads with ESTALE too.
func TestLiveSmallBlocks(t *testing.T) {
	m := newMemLive(100)
	r := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 3*LiveBlock+1234)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	m.put("k", data)
	f := NewLive(m, LiveOptions{TTL: time.Hour, ReadAhead: -1})
	defer f.Close()
	ctx := context.Background()
	root := &liveDir{fsys: f}
	n, _ := root.find(ctx, "k")
	file := &liveFile{fsys: f, dir: root, name: "k", key: "k"}
	file.set(n.e)
	fh, _, _ := file.Open(ctx, syscall.O_RDONLY)
	read := func(off int64, size int) {
		t.Helper()
		buf := make([]byte, size)
		res, errno := file.Read(ctx, fh, buf, off)
		if errno != 0 {
			t.Fatalf("read %d at %d: %v", size, off, errno)
		}
		got, _ := res.Bytes(nil)
		end := min(off+int64(size), int64(len(data)))
		if !bytes.Equal(got, data[off:end]) {
			t.Fatalf("read %d at %d: wrong bytes", size, off)
		}
	}
	off := int64(LiveBlock + LiveBlock/2 + 100)
	read(off, 4096)
	if !slices.Equal(m.reads, []int64{LiveSmallBlock}) {
		t.Fatalf("a random 4 KiB read asked for %v, want one small block", m.reads)
	}
	read(off+4096, 4096) // follows: the Reader's block
	if !slices.Equal(m.reads, []int64{LiveSmallBlock, LiveBlock}) {
		t.Fatalf("a read that follows asked for %v", m.reads)
	}
	read(LiveBlock+10, 8192) // random, in the cached block
	if len(m.reads) != 2 {
		t.Fatalf("a random read in a cached block asked for %v", m.reads[2:])
	}
	// The last small block is short; a read across two small blocks
	// goes to the Reader.
	read(int64(len(data))-100, 4096)
	read(2*LiveSmallBlock-10, 100)
	if got := m.reads[2:]; !slices.Equal(got, []int64{int64(len(data)) % LiveSmallBlock, LiveBlock}) {
		t.Fatalf("the short last block and a read across two asked for %v", got)
	}
	m.put("k", bytes.Repeat([]byte("n"), len(data)))
	buf := make([]byte, 4096)
	if _, errno := file.Read(ctx, fh, buf, 2*LiveBlock+3*LiveSmallBlock+5); errno != syscall.ESTALE {
		t.Fatalf("small read of a changed object: %v, want ESTALE", errno)
	}
	// Random reads of every size, byte-exact.
	m.put("k", data)
	n, _ = root.find(ctx, "k")
	file.set(n.e)
	fh, _, _ = file.Open(ctx, syscall.O_RDONLY)
	for range 300 {
		read(r.Int64N(int64(len(data))), 1+r.IntN(200000))
	}
}
