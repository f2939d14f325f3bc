package test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/lease"
	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

type pruneJSON struct {
	Unused       int      `json:"unused"`
	UnusedBytes  int64    `json:"unused_bytes"`
	Deleted      int      `json:"deleted"`
	DeletedBytes int64    `json:"deleted_bytes"`
	Waiting      int      `json:"waiting"`
	WaitingFor   []string `json:"waiting_for"`
	Rescued      int      `json:"rescued"`
	Kept         int      `json:"kept"`
	Repacked     int      `json:"repacked"`
	Failed       []struct {
		Pack, Kind, Error string
	} `json:"failed"`
	Retention *struct {
		Mode                               string
		Days                               int
		Until                              time.Time
		Config, Packs, Snapshots, Extended int
		IndexFiles                         int `json:"index_files"`
	} `json:"retention"`
}

func (e *env) prune(args ...string) pruneJSON {
	e.t.Helper()
	r := e.run(append([]string{"prune", "--json"}, args...)...)
	var p pruneJSON
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		e.t.Fatalf("prune --json: %v\n%s", err, r)
	}
	// It exits 1 when some deletes failed (the JSON says which), else 0.
	if want := map[bool]int{true: 1, false: 0}[len(p.Failed) > 0]; r.code != want {
		e.t.Fatalf("prune --json exited %d with %d failed deletes, want %d:\n%s", r.code, len(p.Failed), want, r)
	}
	return p
}

// start starts coffer at the env's store as a child process.
func (e *env) start(args ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(coffer, append([]string{"at", e.store}, args...)...)
	cmd.Env = append(append(cleanEnv(), "COFFER_PASSPHRASE="+e.pass), e.extra...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return cmd
}

// packBytes adds up the sizes of a folder store's packs.
func packBytes(t *testing.T, st string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(filepath.Join(st, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), ".tmp-") {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// versions writes n versions of a folder, each changing a few of its
// files, backs each up, and returns the folders (copies) and snapshot ids.
func versions(t *testing.T, e *env, n int, seed uint64) ([]string, []string) {
	t.Helper()
	base := t.TempDir()
	var dirs, ids []string
	for v := 0; v < n; v++ {
		d := filepath.Join(base, "v", string(rune('a'+v)))
		fillRandom(t, filepath.Join(d, "same"), seed, 3, 600<<10)
		fillRandom(t, filepath.Join(d, "changed"), seed+uint64(v)+1, 3, 500<<10)
		testtree.SetTimes(d)
		dirs = append(dirs, d)
		ids = append(ids, e.backup(d).ID)
	}
	return dirs, ids
}

func restoresTo(t *testing.T, e *env, id, want string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "-to", out, id)
	if err := testtree.Compare(want, out); err != nil {
		t.Fatalf("snapshot %s: %v", id[:8], err)
	}
}

// TestPruneAfterForget: forget --prune reclaims exactly the bytes it
// reports, the snapshots left pass check --read-data and restore
// byte-exact, and another prune finds nothing.
func TestPruneAfterForget(t *testing.T) {
	e := newEnv(t)
	dirs, ids := versions(t, e, 5, 1)
	before := packBytes(t, e.store)
	r := e.ok("forget", "--group-by", "", "--keep-last", "2", "--prune", "--max-unused", "unlimited", "--json")
	var out struct {
		Removed int       `json:"removed"`
		Prune   pruneJSON `json:"prune"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	p := out.Prune
	if out.Removed != 3 || p.Deleted == 0 || p.Waiting != 0 || p.Deleted != p.Unused {
		t.Fatalf("forget --prune: %s", r.stdout)
	}
	if got := before - packBytes(t, e.store); got != p.DeletedBytes || got != p.UnusedBytes {
		t.Fatalf("packs shrank by %d bytes, prune says it deleted %d (unused %d)", got, p.DeletedBytes, p.UnusedBytes)
	}
	e.ok("check", "--read-data")
	restoresTo(t, e, ids[3], dirs[3])
	restoresTo(t, e, ids[4], dirs[4])
	// Then repack what the kept packs hold of the removed snapshots.
	rp := e.prune()
	if rp.Unused != 0 || rp.Repacked == 0 || rp.Deleted != rp.Repacked {
		t.Fatalf("prune with repacking: %+v", rp)
	}
	e.ok("check", "--read-data")
	restoresTo(t, e, ids[3], dirs[3])
	restoresTo(t, e, ids[4], dirs[4])
	if again := e.prune(); again.Unused != 0 || again.Deleted != 0 || again.Repacked != 0 {
		t.Fatalf("third prune: %+v", again)
	}
	// Text output names what it did.
	txt := e.ok("prune").stdout
	if !strings.Contains(txt, "found 0 packs") {
		t.Fatalf("prune output:\n%s", txt)
	}
}

// TestPruneKilled kills prunes with SIGKILL at random points: after each
// the store checks clean and the snapshots left restore, and a rerun
// finishes the work.
func TestPruneKilled(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	e := newEnv(t)
	dirs, ids := versions(t, e, 8, 2)
	e.ok("forget", "--group-by", "", "--keep-last", "2")
	start := time.Now()
	e.ok("prune", "--dry-run")
	full := time.Since(start)
	killedAny := false
	for i := 0; i < 5; i++ {
		cmd := e.start("prune")
		delay := time.Duration(rng.Int64N(int64(3*full) + int64(10*time.Millisecond)))
		if i == 4 && !killedAny {
			delay %= full / 2 // a last trial well inside the prune: a fast machine finished all the others
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed := ws.Signaled()
		killedAny = killedAny || killed
		locked := false
		if _, err := os.Stat(filepath.Join(e.store, "locks", "prune")); err == nil {
			locked = true
		}
		t.Logf("trial %d: kill after %v of ~%v: killed=%v, lock left=%v, pack bytes %d", i, delay, full, killed, locked, packBytes(t, e.store))
		e.ok("check")
		restoresTo(t, e, ids[7], dirs[7])
		if i == 2 {
			// More to do for the next trials.
			e.backup(dirs[0])
			e.ok("forget", "--group-by", "", "--keep-last", "2")
		}
	}
	if !killedAny {
		t.Fatal("no trial killed a running prune")
	}
	p := e.prune()
	if p.Waiting != 0 {
		t.Fatalf("rerun: %+v", p)
	}
	if again := e.prune("--dry-run"); again.Unused != 0 || again.Deleted != 0 || again.Waiting != 0 {
		t.Fatalf("after the rerun: %+v", again)
	}
	e.ok("check", "--read-data")
	restoresTo(t, e, ids[7], dirs[7])
	if r := e.ok("unlock"); !strings.Contains(r.stdout, "no locks") {
		t.Fatalf("locks left: %s", r)
	}
}

// TestPruneUnlock: a killed prune's lock is taken over by the next
// prune, unlock names the owner of a stale lock, keeps a live one unless
// forced, and says whose it was.
func TestPruneUnlock(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	fillRandom(t, src, 5, 2, 100<<10)
	e.backup(src)
	ctx := context.Background()
	st, _ := store.NewFolder(e.store)
	r, err := engine.Open(ctx, st, []byte(e.pass))
	if err != nil {
		t.Fatal(err)
	}
	// A live marker: this test process.
	live, err := lease.Mark(ctx, st, r.Keys(), lease.KindBackup, lease.Options{Command: "backup /live"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release(ctx)
	// A live prune lock refuses a second prune and names its holder.
	l, err := lease.Exclusive(ctx, st, r.Keys(), lease.PruneName, lease.Options{Command: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	e.fail(1, []string{store.ObjectName(store.Handle{Kind: store.KindLock, Name: lease.PruneName}) + " is held by prune on "}, "prune")
	// Then it is a dead process's: the pid of one that ended.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	rec := l.Record()
	rec.PID = dead.Process.Pid
	l.Release(ctx)
	if err := lease.Put(ctx, st, r.Keys(), lease.PruneName, rec); err != nil {
		t.Fatal(err)
	}
	out := e.ok("unlock").stdout
	host, _ := os.Hostname()
	if !strings.Contains(out, "removed locks/prune: prune on "+host) || !strings.Contains(out, "kept locks/"+live.Name()) {
		t.Fatalf("unlock:\n%s", out)
	}
	if !strings.Contains(out, "backup /live") {
		t.Fatalf("unlock does not say what the live marker is:\n%s", out)
	}
	res := e.ok("unlock", "--force")
	if !strings.Contains(res.stdout, "removed locks/"+live.Name()) || !strings.Contains(res.stderr, "was live") {
		t.Fatalf("unlock --force:\n%s", res)
	}
	if err := live.Refresh(ctx); err == nil {
		t.Fatal("a marker removed by unlock --force refreshed")
	}
}

// pruneDuringBackups runs rounds of: a snapshot of new data, removed;
// three backups at once of folders holding that data and more (so each
// deduplicates against packs the prune is about to stop indexing); a
// prune started while they run. Every backup must succeed and every
// snapshot restore byte-exact, after the round and after a final prune.
func pruneDuringBackups(t *testing.T, e *env, seed uint64, rounds int) {
	rng := rand.New(rand.NewPCG(seed, 4))
	t.Logf("seed %d", seed)
	base := t.TempDir()
	type snap struct{ id, dir string }
	var all []snap
	straddled, waited := 0, 0
	for round := 0; round < rounds; round++ {
		shared := filepath.Join(base, "shared", string(rune('a'+round)))
		fillRandom(t, shared, seed+uint64(round)*100, 4, 1<<20)
		old := e.backup(shared)
		e.ok("rm", old.ID)
		var dirs []string
		var cmds []*exec.Cmd
		var outs []*strings.Builder
		for i := 0; i < 3; i++ {
			d := filepath.Join(base, "src", string(rune('a'+round)), string(rune('0'+i)))
			fillRandom(t, filepath.Join(d, "shared"), seed+uint64(round)*100, 4, 1<<20)
			n := 2 + rng.IntN(3)
			if i == 0 {
				n = 40 + rng.IntN(8) // the one most likely to straddle the prune
			}
			fillRandom(t, filepath.Join(d, "new"), seed+uint64(round)*100+uint64(i)+1, n, 2<<20)
			testtree.SetTimes(d)
			dirs = append(dirs, d)
			cmd := exec.Command(coffer, "at", e.store, "backup", "--json", d)
			cmd.Env = append(append(cleanEnv(), "COFFER_PASSPHRASE="+e.pass), e.extra...)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, &out)
		}
		done := make([]chan struct{}, len(cmds))
		for i, c := range cmds {
			done[i] = make(chan struct{})
			go func() { c.Wait(); close(done[i]) }()
		}
		// Start the prune once a backup's marker is there (so it started
		// before the prune), after a random extra moment.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if strings.Contains(e.run("unlock", "--dry-run").stdout, "backup on ") {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		running := map[int]bool{}
		for i := range cmds {
			select {
			case <-done[i]:
			default:
				running[i] = true
			}
		}
		pr := e.run("prune")
		if pr.code != 0 {
			t.Fatalf("round %d: prune: %s", round, pr)
		}
		for i := range cmds {
			<-done[i]
			if cmds[i].ProcessState.ExitCode() != 0 {
				t.Fatalf("round %d: backup %d: %s", round, i, outs[i])
			}
			var s snapOut
			if err := json.Unmarshal([]byte(outs[i].String()), &s); err != nil {
				t.Fatalf("backup --json: %v\n%s", err, outs[i])
			}
			if running[i] {
				straddled++ // started before the prune, ended after it began
			}
			all = append(all, snap{s.ID, dirs[i]})
		}
		t.Logf("round %d: %d backups running when the prune started; prune said:\n%s", round, len(running), pr.stdout)
		if strings.Contains(pr.stdout, "wait to be deleted by a later prune, for:\n  backup on ") {
			waited++
		}
		e.ok("check")
		for _, s := range all {
			restoresTo(t, e, s.id, s.dir)
		}
	}
	// Whether a prune found candidates to hold back for a backup depends
	// on timing (a backup that ends before the mark leaves none): logged.
	t.Logf("%d backups were running when a prune started; %d prunes waited for a backup's marker", straddled, waited)
	if straddled == 0 {
		t.Fatal("no backup was running when a prune started: the test proves nothing")
	}
	e.prune()
	if p := e.prune("--dry-run"); p.Unused != 0 || p.Waiting != 0 {
		t.Fatalf("after the final prune: %+v", p)
	}
	e.ok("check", "--read-data")
	for _, s := range all {
		restoresTo(t, e, s.id, s.dir)
	}
}

func TestPruneDuringBackupsLocal(t *testing.T) {
	pruneDuringBackups(t, newEnv(t), uint64(time.Now().UnixNano()), 2)
}

func TestPruneDuringBackupsS3(t *testing.T) {
	m := needMinio(t)
	e := newS3Env(t, m, "s3://"+bucketName("prune")+"/coffer/")
	pruneDuringBackups(t, e, uint64(time.Now().UnixNano()), 1)
}
