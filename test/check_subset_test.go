package test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// TestCLICheckSubset: --read-data-subset N/M over M runs reads every pack
// once and says of how many; P% and --structure-only say what they read;
// bad values are usage errors (exit 2) that say what to give.
func TestCLICheckSubset(t *testing.T) {
	e := newEnv(t)
	for i := range 4 {
		src := filepath.Join(t.TempDir(), fmt.Sprintf("src%d", i))
		testtree.WriteFile(filepath.Join(src, "f"), testtree.Text(uint64(i), 40000))
		e.ok("backup", src)
	}
	type out struct {
		OK         bool
		Packs      int
		PacksTotal int   `json:"packs_total"`
		Bytes      int64 `json:"bytes_read"`
		BytesTotal int64 `json:"bytes_total"`
		Subset     string
	}
	get := func(args ...string) out {
		var o out
		r := e.ok(append([]string{"check", "--json"}, args...)...)
		if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
			t.Fatalf("check %v --json: %v\n%s", args, err, r.stdout)
		}
		return o
	}
	full := get()
	if full.Packs != 8 || full.PacksTotal != 8 || full.Subset != "all" || full.Bytes != full.BytesTotal {
		t.Fatalf("full check: %+v", full)
	}
	if o := get("--read-data"); o != full {
		t.Errorf("--read-data: %+v, without it %+v", o, full)
	}
	packs, bytes := 0, int64(0)
	for n := 1; n <= 3; n++ {
		o := get("--read-data-subset", fmt.Sprintf("%d/3", n))
		if !o.OK || o.PacksTotal != 8 || o.BytesTotal != full.Bytes || o.Subset != fmt.Sprintf("%d/3", n) {
			t.Errorf("%d/3: %+v", n, o)
		}
		packs += o.Packs
		bytes += o.Bytes
		text := e.ok("check", "--read-data-subset", fmt.Sprintf("%d/3", n)).stdout
		if want := fmt.Sprintf("(subset %d/3: %d of 8 packs,", n, o.Packs); !strings.Contains(text, want) {
			t.Errorf("%d/3: output lacks %q:\n%s", n, want, text)
		}
	}
	if packs != 8 || bytes != full.Bytes {
		t.Errorf("slices 1..3 read %d packs, %d bytes; the store has 8, %d", packs, bytes, full.Bytes)
	}
	if o := get("--read-data-subset", "25%"); o.Packs != 2 || o.PacksTotal != 8 {
		t.Errorf("25%%: %+v", o)
	}
	if o := get("--structure-only"); !o.OK || o.Packs != 0 || o.Bytes != 0 || o.PacksTotal != 8 || o.Subset != "none" {
		t.Errorf("--structure-only: %+v", o)
	}
	for _, bad := range []string{"0/3", "4/3", "120%", "abc", "0%", "1/0"} {
		e.fail(2, []string{fmt.Sprintf("bad --read-data-subset %q", bad), "give N/M"}, "check", "--read-data-subset", bad)
	}
	e.fail(2, []string{"at most one of"}, "check", "--structure-only", "--read-data-subset", "1/2")
}
