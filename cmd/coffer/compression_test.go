package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/coffer-backup/coffer/internal/corpus"
)

// A store entry's compression reaches the backup: the same digits stored
// raw with compression=off, at least 8× smaller by default; every store
// restores byte-exact whatever level wrote it; a bad value in the file
// fails, before the passphrase, as a usage error naming the value, the
// valid ones and the command that fixes it.
func TestStoreCompressionOption(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("COFFER_CONFIG", "")
	t.Setenv("COFFER_STORE", "")
	t.Setenv("COFFER_PASSPHRASE", "x")
	src := filepath.Join(dir, "src")
	digits := corpus.Seq(100000)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "seq.txt"), digits, 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(args ...string) {
		t.Helper()
		if code, msg := runCoffer(t, args...); code != 0 {
			t.Fatalf("coffer %v: exit %d: %s", args, code, msg)
		}
	}
	size := map[string]int64{}
	for _, level := range []string{"off", "default", "better", ""} {
		name := "s-" + level
		st := filepath.Join(dir, name)
		kv := []string{"config", "store", "create", name, "location=" + st}
		if level != "" {
			kv = append(kv, "compression="+level)
		}
		must(kv...)
		must("at", "@"+name, "create", "--kdf-time", "1", "--kdf-memory", "64")
		must("at", "@"+name, "backup", src)
		size[level] = dirSize(t, st)
		out := filepath.Join(dir, "restore-"+name)
		must("at", st, "restore", "-to", out, "latest") // by path: no entry, any level reads
		got, err := os.ReadFile(filepath.Join(out, "seq.txt"))
		if err != nil || !bytes.Equal(got, digits) {
			t.Fatalf("compression=%s: restore differs (%v)", level, err)
		}
	}
	t.Logf("store sizes: %v (seq 1 100000 is %d bytes)", size, len(digits))
	if size["off"] < int64(len(digits)) {
		t.Errorf("compression=off: store of %d bytes holds %d bytes of digits", size["off"], len(digits))
	}
	if size[""] > size["off"]-int64(len(digits))*7/8 {
		t.Errorf("default compression saved %d bytes of %d, want at least 7/8", size["off"]-size[""], len(digits))
	}
	if d := size["default"] - size[""]; d < -1024 || d > 1024 {
		t.Errorf("compression=default stores %d bytes, no compression key %d", size["default"], size[""])
	}

	// A bad value edited into the file.
	cfg := filepath.Join(dir, "coffer", "config.json")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"compression": "better"`), []byte(`"compression": "max"`), 1)
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Without a passphrase at hand: the bad value is found before one is
	// asked for (t.Setenv above restores it).
	os.Unsetenv("COFFER_PASSPHRASE")
	code, msg := runCoffer(t, "at", "@s-better", "backup", src)
	if code != exitUsage || !bytes.Contains([]byte(msg), []byte(`"max"`)) || !bytes.Contains([]byte(msg), []byte("off, fastest, default, better")) ||
		!bytes.Contains([]byte(msg), []byte("coffer config store set s-better compression=")) {
		t.Errorf("compression=max: exit %d, %q; want a usage error, before the passphrase, naming the value, the valid ones and the fix", code, msg)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		n += fi.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
