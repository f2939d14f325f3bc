package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMountLiveInodes: `ls -lR` and `find` over a bucket of many more
// objects than --max-inodes leave the live mount holding at most about
// --max-inodes entries for the kernel (it says how many under -v at
// unmount), and every object, dropped and looked up again, still reads
// byte-exact.
func TestMountLiveInodes(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "linodes")
	src := t.TempDir()
	const dirs, files, max = 30, 100, 1000 // 3,030 entries
	for d := range dirs {
		os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%02d", d)), 0o755)
		for f := range files {
			p := filepath.Join(src, fmt.Sprintf("d%02d/f%03d", d, f))
			os.WriteFile(p, fmt.Appendf(nil, "%s %d", p, d*f), 0o644)
		}
	}
	m.putFiles(t, src, bucket)

	mt := liveMount(t, m, nil, "s3://"+bucket+"/", "-v", "--max-inodes", strconv.Itoa(max))
	for _, walk := range [][]string{{"ls", "-lR", mt.dir}, {"find", mt.dir, "-type", "f"}} {
		out, err := exec.Command(walk[0], walk[1:]...).Output()
		if err != nil {
			t.Fatalf("%s: %v", walk[0], err)
		}
		if n := bytes.Count(out, []byte("/f")) + bytes.Count(out, []byte(" f")); n < dirs*files {
			t.Fatalf("%s lists %d files, want %d", walk[0], n, dirs*files)
		}
	}
	// Dropped entries are looked up again: every object reads right.
	for d := range dirs {
		for f := range files {
			rel := fmt.Sprintf("d%02d/f%03d", d, f)
			want, _ := os.ReadFile(filepath.Join(src, rel))
			got, err := os.ReadFile(filepath.Join(mt.dir, rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %q, %v; want %q", rel, got, err, want)
			}
		}
	}
	time.Sleep(time.Second) // the kernel forgets what it was told to drop a moment later
	mt.stop(syscall.SIGTERM)
	said := regexp.MustCompile(`(\d+) entries held for the kernel at unmount \(--max-inodes (\d+)\), (\d+) dropped`).FindStringSubmatch(mt.stderr.String())
	if said == nil {
		t.Fatalf("no count of entries under -v:\n%s", mt.stderr)
	}
	held, _ := strconv.Atoi(said[1])
	dropped, _ := strconv.Atoi(said[3])
	t.Logf("after ls -lR, find and reading %d objects: %d entries held, %d dropped", dirs*files, held, dropped)
	if held > max+files || dropped < dirs*files-max {
		t.Fatalf("%d entries held (--max-inodes %d), %d dropped, after walks of %d", held, max, dropped, dirs*(files+1))
	}
}
