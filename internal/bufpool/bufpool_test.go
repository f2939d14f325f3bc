package bufpool

import "testing"

// TestGetPut: a buffer always has room for what was asked; a small size
// gets a small buffer; a buffer grown past its class serves the larger
// class it now fits.
func TestGetPut(t *testing.T) {
	for _, n := range []int{0, 1, 4 << 10, 4<<10 + 1, 100 << 10, 1 << 20, 3 << 20, 8 << 20, 9 << 20} {
		b := Get(n)
		if len(*b) != 0 || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		Put(b)
	}
	if b := Get(100); cap(*b) > 4<<10 {
		t.Fatalf("Get(100) made a buffer of %d bytes", cap(*b))
	}
	for _, n := range []int{1, 5000, 70 << 10, 300 << 10} {
		if b := Get(n); cap(*b) >= 2*max(n, 4<<10) {
			t.Fatalf("Get(%d) made a buffer of %d bytes, not under twice that", n, cap(*b))
		}
	}
	b := Get(10)
	*b = append(*b, make([]byte, 70<<10)...) // grown past 64 KiB
	Put(b)
	for range 10 {
		if s := Get(4 << 10); cap(*s) > 8<<10 {
			t.Fatalf("a grown buffer (%d bytes) came back for the 4 KiB class", cap(*s))
		}
	}
	// Large sizes: one pool, a buffer too small for the size asked is
	// made again to fit.
	l := Get(600 << 10)
	if cap(*l) < 1<<20 {
		t.Fatalf("Get(600 KiB) made %d bytes, want at least 1 MiB", cap(*l))
	}
	Put(l)
	if l := Get(3 << 20); cap(*l) < 3<<20 {
		t.Fatalf("Get(3 MiB) gave %d bytes", cap(*l))
	}
}

func BenchmarkGetPut(b *testing.B) {
	b.SetBytes(4 << 10)
	for range b.N {
		p := Get(4 << 10)
		*p = append(*p, make([]byte, 4<<10)...)
		Put(p)
	}
}
