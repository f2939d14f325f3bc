package corpus

import (
	"bytes"
	"os/exec"
	"testing"
)

// The corpus is deterministic: the same seed and size give the same files,
// another seed other ones; every class reaches its size; seq.txt is what
// `seq 1 100000` prints.
func TestGenerateDeterministic(t *testing.T) {
	const size = 300 << 10
	for _, c := range Classes {
		a, err := Generate(c, 7, size)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Generate(c, 7, size)
		other, _ := Generate(c, 8, size)
		total := 0
		for i, f := range a {
			total += len(f.Data)
			if i >= len(b) || b[i].Name != f.Name || !bytes.Equal(b[i].Data, f.Data) {
				t.Fatalf("%s: file %d (%s) differs between two runs with the same seed", c, i, f.Name)
			}
		}
		if len(a) != len(b) {
			t.Fatalf("%s: %d files, then %d", c, len(a), len(b))
		}
		if total < size {
			t.Errorf("%s: %d bytes, want at least %d", c, total, size)
		}
		if c != Source && bytes.Equal(a[len(a)-1].Data, other[len(other)-1].Data) {
			t.Errorf("%s: seeds 7 and 8 give the same last file", c)
		}
	}
	want, err := exec.Command("seq", "1", "100000").Output()
	if err != nil {
		t.Skip("no seq command:", err)
	}
	if !bytes.Equal(Seq(100000), want) {
		t.Error("Seq(100000) differs from `seq 1 100000`")
	}
}
