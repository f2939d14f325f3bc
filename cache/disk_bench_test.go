package cache

import (
	"testing"
)

// BenchmarkDiskPut: what keeping a 256 KiB block on the disk tier costs
// (its page checksums and the write), over a tier that wraps around.
func BenchmarkDiskPut(b *testing.B) {
	const block = 256 << 10
	d, err := NewDisk[int](b.TempDir(), 64<<20, block, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	data := make([]byte, block)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(block)
	for i := 0; b.Loop(); i++ {
		d.Put(i, data)
	}
}

// BenchmarkPageCRCs: the checksums alone.
func BenchmarkPageCRCs(b *testing.B) {
	data := make([]byte, 256<<10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		pageCRCs(data)
	}
}
