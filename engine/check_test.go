package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// newCheckStore makes a folder store holding n backups of n different
// sources, each of a few directories, so it has n index files and every
// snapshot has several tree blobs to walk.
func newCheckStore(t testing.TB, n int) (*Repo, string) {
	t.Helper()
	r, storeDir := newTestRepo(t, CreateOptions{Chunker: testChunker})
	for i := range n {
		src := filepath.Join(t.TempDir(), fmt.Sprintf("src%d", i))
		for d := range 3 {
			for f := range 2 {
				writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f)), textBytes(uint64(100*i+10*d+f), 3000))
			}
		}
		backupDir(t, r, src, BackupOptions{})
	}
	return r, storeDir
}

// indexFiles returns the names of the store's index files, sorted.
func indexFiles(t testing.TB, storeDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(storeDir, "index"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestCheckReportsEachBadIndexFile: every index file that cannot be read
// is a problem of its own, named; the good ones are not named.
func TestCheckReportsEachBadIndexFile(t *testing.T) {
	_, storeDir := newCheckStore(t, 4)
	names := indexFiles(t, storeDir)
	if len(names) != 4 {
		t.Fatalf("test setup: %d index files, want 4", len(names))
	}
	bad := map[string]bool{names[1]: true, names[3]: true}
	// One with a flipped byte, one cut short.
	p := filepath.Join(storeDir, "index", names[1])
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(storeDir, "index", names[3]), 10); err != nil {
		t.Fatal(err)
	}

	r := reopen(t, storeDir)
	res, err := r.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	named := map[string]int{} // index file -> problems naming it
	for _, p := range res.Problems {
		t.Logf("problem: %+v", p)
		if p.Snapshot != "" || p.Path != "" || p.Pack != "" {
			continue // a file whose blobs the bad index files listed
		}
		hit := false
		for _, name := range names {
			if strings.Contains(p.Message, name[:8]) {
				named[name]++
				hit = true
			}
		}
		if !hit {
			t.Errorf("index problem names no index file: %+v", p)
		}
	}
	for _, name := range names {
		switch {
		case bad[name] && named[name] != 1:
			t.Errorf("bad index file %s is named by %d problems, want 1", name[:8], named[name])
		case !bad[name] && named[name] != 0:
			t.Errorf("good index file %s is named by %d problems", name[:8], named[name])
		}
	}
}
