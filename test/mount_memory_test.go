package test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/internal/testtree"
)

// peakRSS is the most resident memory process pid has had (VmHWM), in
// bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

// TestMountMemory: reading through a snapshot larger than the mount's
// chunk cache (a big random file, a big text file, thousands of small
// files; four readers at once) keeps the mount's peak RSS within the
// cache size plus 64 MiB, with a margin of 16 MiB for the noise of the
// collector; and every file reads byte-exact. Before the cache counted
// loads in flight and the process had a memory limit, the peak was 1.5
// times the live heap (GOGC=50): 290 MiB here, against 248 MiB now.
func TestMountMemory(t *testing.T) {
	needFUSE(t)
	if testing.Short() {
		t.Skip("writes and reads 240 MB")
	}
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	rng := rand.New(rand.NewPCG(10, 10))
	sums := map[string][32]byte{}
	write := func(name string, b []byte) {
		if err := testtree.WriteFile(filepath.Join(src, name), b); err != nil {
			t.Fatal(err)
		}
		sums[name] = sha256.Sum256(b)
	}
	write("big/random.bin", testtree.RandBytes(128<<20))
	write("big/text.log", testtree.Text(3, 96<<20))
	for i := 0; i < 3000; i++ {
		b := make([]byte, rng.IntN(12<<10))
		for j := range b {
			b[j] = byte(rng.Uint32() % 16) // compressible
		}
		write(fmt.Sprintf("small/d%02d/f%04d", i/100, i), b)
	}
	sn := e.backup(src)
	os.RemoveAll(src)

	const cacheSize = 192 << 20
	m := e.mount([]string{"XDG_CACHE_HOME=" + t.TempDir()}, []string{"--cache-size", "192MiB"}, sn.ID)
	names := make(chan string)
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for name := range names {
				h := sha256.New()
				f, err := os.Open(filepath.Join(m.dir, name))
				if err == nil {
					_, err = io.CopyBuffer(h, f, buf)
					f.Close()
				}
				if want := sums[name]; err != nil || !bytes.Equal(h.Sum(nil), want[:]) {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s: %v", name, err))
					mu.Unlock()
				}
			}
		}()
	}
	for name := range sums {
		names <- name
	}
	close(names)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d files differ through the mount, like %s", len(failed), failed[0])
	}
	peak := peakRSS(t, m.cmd.Process.Pid)
	t.Logf("read %d files (%d MiB) through a mount with a %d MiB cache: peak RSS %d MiB",
		len(sums), 128+96+18, cacheSize>>20, peak>>20)
	if limit := int64(cacheSize + 64<<20 + 16<<20); peak > limit {
		t.Fatalf("peak RSS %d MiB, over the cache (%d MiB) + 64 MiB + 16 MiB", peak>>20, cacheSize>>20)
	}
	m.stop(os.Interrupt)
}

// TestMountLiveMemory: a live mount with its defaults (blocks kept on
// disk, so a 64 MiB memory tier) reads an object three times the size of
// that tier sequentially, byte-exact, and its peak RSS stays within the
// tier plus 64 MiB, with 16 MiB for the collector's noise. With the
// memory tier at 256 MiB, as before it was sized to the disk tier, the
// same read peaked at 219 MiB.
func TestMountLiveMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 192 MiB")
	}
	m := needMinio(t)
	bucket := m.newBucket(t, "livemem")
	data := testtree.RandBytes(192 << 20)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	m.putFiles(t, src, bucket)
	mt := liveMount(t, m, []string{"XDG_CACHE_HOME=" + t.TempDir()}, "s3://"+bucket+"/")
	f, err := os.Open(filepath.Join(mt.dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.CopyBuffer(h, f, make([]byte, 1<<20))
	f.Close()
	if want := sha256.Sum256(data); err != nil || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("big.bin through the live mount: %v, or other bytes", err)
	}
	const tier, limit = 64 << 20, 64<<20 + 64<<20 + 16<<20
	if peak := peakRSS(t, mt.cmd.Process.Pid); peak > limit {
		t.Errorf("peak RSS %d MiB reading 192 MiB, over the %d MiB memory tier + 64 MiB (+16)", peak>>20, tier>>20)
	} else {
		t.Logf("peak RSS %d MiB reading 192 MiB", peak>>20)
	}
}
