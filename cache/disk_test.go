package cache

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"testing"
)

// blockOf is the content of block k: its length and bytes follow from k,
// so a reader can tell any other block's bytes from its own.
func blockOf(k int, slot int) []byte {
	n := 1 + (k*7919)%slot
	b := make([]byte, n)
	r := rand.New(rand.NewSource(int64(k)))
	r.Read(b)
	return b
}

func newTestDisk(t *testing.T, maxBytes, slot int64) (*Disk[int], *strings.Builder) {
	t.Helper()
	var logs strings.Builder
	var mu sync.Mutex
	d, err := NewDisk[int](t.TempDir(), maxBytes, slot, func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(&logs, format+"\n", args...)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, &logs
}

func TestDiskKeepsWhatFits(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDisk[int](dir, 10*1024, 1024, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// The file is gone from the folder at once: nothing to leave behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the folder holds %d files, want none", len(ents))
	}
	for k := 0; k < 30; k++ {
		d.Put(k, blockOf(k, 1024))
		if k == 3 {
			d.Get(0) // recent: outlives 1, 2, 3 ...
		}
	}
	d.Put(99, make([]byte, 1025)) // larger than a slot: not kept
	if _, ok := d.Get(99); ok {
		t.Fatal("a block larger than a slot was kept")
	}
	held := 0
	for k := 0; k < 30; k++ {
		b, ok := d.Get(k)
		if ok {
			held++
			if !bytes.Equal(b, blockOf(k, 1024)) {
				t.Fatalf("block %d reads back other bytes", k)
			}
		}
	}
	if held != 10 {
		t.Fatalf("holds %d blocks, budget 10", held)
	}
	for k := 20; k < 30; k++ {
		if !d.Contains(k) {
			t.Fatalf("block %d, among the last put, was evicted", k)
		}
	}
	if d.Contains(0) || d.Contains(1) {
		t.Fatal("eviction is not least-recently-used")
	}
	if fi, err := d.f.Stat(); err != nil || fi.Size() > 10*1024 {
		t.Fatalf("file of %d bytes for a budget of 10240 (%v)", fi.Size(), err)
	}
}

// A block whose bytes on disk changed (a bad disk, another writer) is a
// miss, never other bytes.
func TestDiskChecksBytes(t *testing.T) {
	d, _ := newTestDisk(t, 4*1024, 1024)
	d.Put(1, blockOf(1, 1024))
	d.Put(2, blockOf(2, 1024))
	b := d.lru.Values()
	if _, err := d.f.WriteAt([]byte{0xff ^ blockOf(1, 1024)[0]}, int64(b[0].slot)*1024); err != nil {
		t.Fatal(err)
	}
	if got, ok := d.Get(1); ok {
		t.Fatalf("a damaged block was served (%d bytes)", len(got))
	}
	if d.Contains(1) {
		t.Fatal("a damaged block is still kept")
	}
	if got, ok := d.Get(2); !ok || !bytes.Equal(got, blockOf(2, 1024)) {
		t.Fatal("the block beside the damaged one is lost")
	}
	if s := d.Stats(); s.Bad != 1 {
		t.Fatalf("stats count %d bad blocks, want 1", s.Bad)
	}
	// Its slot is used again.
	d.Put(3, blockOf(3, 1024))
	if got, ok := d.Get(3); !ok || !bytes.Equal(got, blockOf(3, 1024)) {
		t.Fatal("block put after a damaged one does not read back")
	}
}

// A write that fails (here: the file is gone; a full disk in the field)
// turns the tier off with one log line; nothing is served after it.
func TestDiskOffAfterWriteError(t *testing.T) {
	d, logs := newTestDisk(t, 4*1024, 1024)
	d.Put(1, blockOf(1, 1024))
	d.f.Close()
	d.Put(2, blockOf(2, 1024))
	d.Put(3, blockOf(3, 1024))
	if _, ok := d.Get(1); ok {
		t.Fatal("a block was served after the tier turned off")
	}
	if d.Contains(1) || d.Stats().Off == nil {
		t.Fatal("the tier is not off after a write error")
	}
	if n := strings.Count(logs.String(), "disk cache is off"); n != 1 {
		t.Fatalf("said %d times that the disk cache is off, want once:\n%s", n, logs)
	}
}

// Many readers and writers over few slots: every block read back is the
// block put under its key, while slots change hands all the time.
func TestDiskConcurrent(t *testing.T) {
	const slot = 512
	d, _ := newTestDisk(t, 8*slot, slot)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 2000; i++ {
				k := r.Intn(40)
				if b, ok := d.Get(k); ok {
					if !bytes.Equal(b, blockOf(k, slot)) {
						errs <- fmt.Errorf("block %d read back other bytes", k)
						return
					}
					continue
				}
				d.Put(k, blockOf(k, slot))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := d.Stats()
	if s.Hits == 0 || s.Writes == 0 || s.Bad != 0 || s.Blocks > 8 {
		t.Fatalf("stats %+v: want hits, writes, no bad block, at most 8 blocks", s)
	}
}

func TestNewDiskRefusesNoRoom(t *testing.T) {
	if _, err := NewDisk[int](t.TempDir(), 100, 1024, nil); err == nil {
		t.Fatal("a budget smaller than a slot was accepted")
	}
}

// TestDiskReadAt: any range of a block reads back its bytes, aligned on
// pages or not; a range that touches a damaged page is a miss, and the
// block is dropped.
func TestDiskReadAt(t *testing.T) {
	const slot = 5*diskPage + 123
	d, _ := newTestDisk(t, 4*slot, slot)
	data := blockOf(0, slot)
	for len(data) < slot {
		data = append(data, byte(len(data)))
	}
	d.Put(7, data)
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 500; i++ {
		off := r.Intn(slot)
		n := r.Intn(slot - off + 1)
		if i%5 == 0 { // whole pages
			off = r.Intn(5) * diskPage
			n = min(r.Intn(3)*diskPage, slot-off)
		}
		p := make([]byte, n)
		if !d.ReadAt(7, p, int64(off)) || !bytes.Equal(p, data[off:off+n]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong or missing", n, off)
		}
	}
	if d.ReadAt(7, make([]byte, 10), slot-5) {
		t.Fatal("a read past the block's end was answered")
	}
	if d.ReadAt(8, make([]byte, 10), 0) {
		t.Fatal("a block never put was answered")
	}
	// Damage the third page: a read of the first two still answers, a
	// read that touches the third does not, and the block is dropped.
	b, _ := d.lru.Peek(7)
	if _, err := d.f.WriteAt([]byte{^data[2*diskPage+10]}, int64(b.slot)*slot+2*diskPage+10); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 2*diskPage)
	if !d.ReadAt(7, p, 0) || !bytes.Equal(p, data[:2*diskPage]) {
		t.Fatal("a read of the pages before a damaged one failed")
	}
	if d.ReadAt(7, make([]byte, 3), 2*diskPage+9) {
		t.Fatal("a read of a damaged page was answered")
	}
	if d.Contains(7) {
		t.Fatal("a block with a damaged page is still kept")
	}
}

// TestDiskPutLater: blocks queued are written by the tier's goroutine
// (Flush waits for them); a queue over its bound drops blocks instead of
// growing; PutLater racing Close neither panics nor keeps anything.
func TestDiskPutLater(t *testing.T) {
	const slot = 1 << 20
	d, _ := newTestDisk(t, 64*slot, slot)
	for k := 0; k < 4; k++ {
		d.PutLater(k, blockOf(k, slot))
	}
	d.Flush()
	for k := 0; k < 4; k++ {
		if b, ok := d.Get(k); !ok || !bytes.Equal(b, blockOf(k, slot)) {
			t.Fatalf("block %d queued, flushed, not read back", k)
		}
	}
	// One block queued 40 times takes the queue's room once: the block
	// after it is not dropped (a block loaded twice used to push out
	// one never kept).
	b50 := blockOf(50, slot)
	for range 40 {
		d.PutLater(50, b50)
	}
	d.PutLater(51, blockOf(51, slot))
	d.Flush()
	if s := d.Stats(); s.Dropped != 0 || !d.Contains(50) || !d.Contains(51) {
		t.Fatalf("stats %+v after one block queued 40 times and another once: want both kept, none dropped", s)
	}
	// 40 MiB queued at once, faster than written: some are dropped.
	big := make([]byte, slot)
	for k := 100; k < 140; k++ {
		d.PutLater(k, big)
	}
	d.Flush()
	if s := d.Stats(); s.Dropped == 0 || s.Writes < 6+8 {
		t.Fatalf("stats %+v: want drops past the 8 MiB queue, and what it held written", s)
	}

	d2, _ := newTestDisk(t, 8*slot, slot)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				d2.PutLater(g*1000+k, blockOf(k, 1024))
			}
		}()
	}
	d2.Close()
	wg.Wait()
	if d2.Contains(5) {
		t.Fatal("a closed tier holds a block")
	}
}
