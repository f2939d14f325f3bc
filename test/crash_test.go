package test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// fillRandom writes n files of size bytes each, from a seeded fast PRNG.
func fillRandom(t testing.TB, dir string, seed uint64, n, size int) {
	t.Helper()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		r.Read(buf)
		if err := testtree.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), buf); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) snapshots() []snapOut {
	e.t.Helper()
	var s []snapOut
	if err := json.Unmarshal([]byte(e.ok("ls", "--json").stdout), &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// TestKilledBackup kills backups with SIGKILL at random points: the store
// must stay checkable, the earlier snapshot intact and restorable, no
// half snapshot may appear, and the next backup must succeed.
func TestKilledBackup(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	fillRandom(t, filepath.Join(src, "old"), 1, 8, 4<<20)
	testtree.WriteFile(filepath.Join(src, "old", "small", "a"), []byte("a"))
	start := time.Now()
	first := e.backup(src)
	full := time.Since(start)

	want := 1
	const trials = 6
	killedAny := false
	for i := 0; i < trials; i++ {
		// New data for each killed backup to work on.
		os.RemoveAll(filepath.Join(src, "new"))
		fillRandom(t, filepath.Join(src, "new"), 10+uint64(i), 24, 6<<20)
		cmd := exec.Command(coffer, "at", e.store, "backup", src)
		cmd.Env = append(cleanEnv(), "COFFER_PASSPHRASE="+e.pass)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Anywhere from start-up to about the time the whole backup
		// takes (it has ~4x the first backup's data).
		delay := time.Duration(rng.Int64N(int64(4*full) + int64(20*time.Millisecond)))
		if i == trials-1 && !killedAny {
			delay %= full // a last trial well inside the backup: a fast machine finished all the others
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL
		if !killed {
			if err != nil {
				t.Fatalf("trial %d: backup failed by itself: %v", i, err)
			}
			want++ // it finished before the signal
		}
		killedAny = killedAny || killed
		t.Logf("trial %d: kill after %v: killed=%v", i, delay, killed)
		if got := len(e.snapshots()); got != want {
			t.Fatalf("trial %d: %d snapshots, want %d", i, got, want)
		}
		e.ok("check")
	}
	if !killedAny {
		t.Fatal("no trial killed a running backup; the delays are too long")
	}
	out := filepath.Join(t.TempDir(), "first")
	e.ok("restore", "-to", out, first.Short+":/old")
	if err := testtree.Compare(filepath.Join(src, "old"), out); err != nil {
		t.Fatal(err)
	}
	last := e.backup(src)
	out2 := filepath.Join(t.TempDir(), "last")
	e.ok("restore", "-to", out2, last.Short)
	if err := testtree.Compare(src, out2); err != nil {
		t.Fatal(err)
	}
	e.ok("check")
}

// TestFlippedByte damages one data blob: check names the file, restoring
// it fails loudly, and every other file restores intact.
func TestFlippedByte(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	fillRandom(t, src, 3, 5, 300<<10)
	testtree.WriteFile(filepath.Join(src, "sub", "victim"), testtree.Text(9, 200<<10))
	testtree.SetTimes(src)
	e.backup(src)

	// Find the victim's blob through the engine, as an attacker with the
	// passphrase (or a bad disk) might hit it.
	ctx := context.Background()
	st, _ := store.NewFolder(e.store)
	r, err := engine.Open(ctx, st, []byte(e.pass))
	if err != nil {
		t.Fatal(err)
	}
	r.LoadIndex(ctx)
	sn, _ := r.FindSnapshot(ctx, "latest")
	n, err := r.ResolvePath(ctx, sn, "/sub/victim", true)
	if err != nil {
		t.Fatal(err)
	}
	loc, pack, ok := r.Index.Lookup(n.Chunks[0].ID)
	if !ok {
		t.Fatal("victim's chunk is not indexed")
	}
	pf := filepath.Join(e.store, filepath.FromSlash(store.ObjectName(store.Handle{Kind: store.KindDataPack, Name: pack.String()})))
	data, err := os.ReadFile(pf)
	if err != nil {
		t.Fatal(err)
	}
	data[int(loc.Offset)+int(loc.Length)/2] ^= 0x01
	os.WriteFile(pf, data, 0o600)

	r1 := e.fail(1, []string{"/sub/victim", "check found"}, "check")
	if strings.Count(r1.stdout, "/sub/victim") != 1 || strings.Contains(r1.stdout, "/f") {
		t.Fatalf("check should name only the victim:\n%s", r1)
	}
	e.fail(1, []string{"cannot restore /victim", "authentication failed"}, "restore", "-to", t.TempDir(), "latest:/sub/victim")
	out := filepath.Join(t.TempDir(), "out")
	e.fail(1, []string{"cannot restore /sub/victim"}, "restore", "-to", out, "latest")
	if _, err := os.Stat(filepath.Join(out, "sub", "victim")); err == nil {
		t.Fatal("a damaged file was left in the restore")
	}
	for i := 0; i < 5; i++ {
		a, _ := os.ReadFile(filepath.Join(src, "f"+strconv.Itoa(i)))
		b, _ := os.ReadFile(filepath.Join(out, "f"+strconv.Itoa(i)))
		if string(a) != string(b) {
			t.Fatalf("f%d did not restore intact", i)
		}
	}
}
