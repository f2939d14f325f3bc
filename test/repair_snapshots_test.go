package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
)

// objects is how a test reaches a store's objects behind coffer's back:
// a folder, or a bucket through the aws CLI.
type objects struct {
	list func() map[string]int64 // object name -> size
	get  func(name string) []byte
	put  func(name string, b []byte)
	del  func(name string)
}

func folderObjects(t *testing.T, root string) objects {
	return objects{
		list: func() map[string]int64 {
			out := map[string]int64{}
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".tmp-") {
					fi, _ := d.Info()
					rel, _ := filepath.Rel(root, p)
					out[filepath.ToSlash(rel)] = fi.Size()
				}
				return nil
			})
			return out
		},
		get: func(name string) []byte {
			b, err := os.ReadFile(filepath.Join(root, name))
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		put: func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(root, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		del: func(name string) {
			if err := os.Remove(filepath.Join(root, name)); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func s3Objects(t *testing.T, m *minioServer, bucket, prefix string) objects {
	return objects{
		list: func() map[string]int64 {
			out := map[string]int64{}
			for _, o := range m.listObjects(t, bucket, prefix) {
				out[o.Key] = o.Size
			}
			return out
		},
		get: func(name string) []byte {
			f := filepath.Join(t.TempDir(), "obj")
			m.aws(t, "s3", "cp", "--quiet", "s3://"+bucket+"/"+prefix+name, f)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		put: func(name string, b []byte) {
			f := filepath.Join(t.TempDir(), "obj")
			os.WriteFile(f, b, 0o600)
			m.aws(t, "s3", "cp", "--quiet", f, "s3://"+bucket+"/"+prefix+name)
		},
		del: func(name string) { m.aws(t, "s3", "rm", "--quiet", "s3://"+bucket+"/"+prefix+name) },
	}
}

// newObjects returns the names in after that are not in before, under prefix.
func newObjects(before, after map[string]int64, prefix string) []string {
	var out []string
	for k := range after {
		if _, ok := before[k]; !ok && strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// compareWithout compares src with a restore of it that lacks the
// files rels (paths relative to src): they are moved aside for the
// comparison, their folders' mtimes kept, and put back.
func compareWithout(t *testing.T, src, restored string, rels ...string) {
	t.Helper()
	aside := t.TempDir()
	var back []func()
	for i, rel := range rels {
		p := filepath.Join(src, rel)
		dir := filepath.Dir(p)
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		q := filepath.Join(aside, fmt.Sprint(i))
		if err := os.Rename(p, q); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(dir, fi.ModTime(), fi.ModTime())
		back = append(back, func() {
			os.Rename(q, p)
			os.Chtimes(dir, fi.ModTime(), fi.ModTime())
		})
	}
	err := testtree.Compare(src, restored)
	for i := len(back) - 1; i >= 0; i-- {
		back[i]()
	}
	if err != nil {
		t.Fatal(err)
	}
}

type repairSnapsJSON struct {
	Damaged []struct {
		Snapshot, New string
		Already       string `json:"already_repaired_as"`
		Forgotten     bool
		Paths         []struct{ Path, Action, Reason string }
	}
	StillIndexed []string `json:"still_indexed_packs"`
	Packs        *struct {
		LostBlobs int `json:"lost_blobs"`
	} `json:"repair_packs"`
}

type repairPacksJSON struct {
	Damaged []struct {
		Pack     string
		Missing  bool
		Salvaged int
		Lost     []struct{ Blob string }
	}
	LostBlobs int `json:"lost_blobs"`
	Salvaged  int `json:"salvaged_blobs"`
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	return v
}

// damagedDataStore backs up two sources and flips a byte in the data
// pack that only the second backup wrote, in the middle of victim.bin's
// blob (the pack holds it and a few bytes of keep.txt). It returns the
// two sources, their snapshots, and the pack's object name.
func damagedDataStore(t *testing.T, e *env, obj objects) (src1, src2, snap1, snap2, pack string) {
	root := t.TempDir()
	src1, src2 = filepath.Join(root, "one"), filepath.Join(root, "two")
	shared := testtree.Text(7, 150000)
	testtree.WriteFile(filepath.Join(src1, "shared.txt"), shared)
	testtree.WriteFile(filepath.Join(src1, "own.bin"), testtree.RandBytes(120000))
	testtree.WriteFile(filepath.Join(src2, "shared.txt"), shared)
	testtree.WriteFile(filepath.Join(src2, "victim.bin"), testtree.RandBytes(400000))
	testtree.WriteFile(filepath.Join(src2, "sub", "keep.txt"), []byte("kept: this file shares the damaged pack and is salvaged\n"))
	testtree.SetTimes(src1)
	testtree.SetTimes(src2)
	snap1 = e.backup(src1).ID
	before := obj.list()
	snap2 = e.backup(src2).ID
	packs := newObjects(before, obj.list(), store.Prefix(store.KindDataPack))
	if len(packs) != 1 {
		t.Fatalf("the second backup wrote data packs %v, want one", packs)
	}
	pack = packs[0]
	b := obj.get(pack)
	b[len(b)/2] ^= 0x40
	obj.put(pack, b)
	return
}

// repairDamagedData: check names the damaged file; dry runs change no
// object; repair packs drops the damaged blob and salvages the other;
// repair snapshots writes a snapshot that checks clean and restores
// everything but the damaged file byte-exact; the next backup stores the
// lost blob again and checks clean; --forget removes the original.
func repairDamagedData(t *testing.T, e *env, obj objects) {
	src1, src2, snap1, snap2, pack := damagedDataStore(t, e, obj)
	e.fail(1, []string{"victim.bin"}, "check", "--read-data")

	before := obj.list()
	e.ok("repair", "packs", "--dry-run")
	dry := e.ok("repair", "snapshots", "--dry-run")
	if after := obj.list(); !mapsEqual(before, after) {
		t.Fatalf("dry runs changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if !strings.Contains(dry.stdout, "would drop file /victim.bin") {
		// The damage is in the pack, the blob still indexed: without
		// --read-data, repair snapshots cannot see it yet.
		t.Logf("dry run before repair packs:\n%s", dry.stdout)
	}
	rd := decode[repairSnapsJSON](t, e.ok("repair", "snapshots", "--dry-run", "--read-data", "--json"))
	if len(rd.Damaged) != 1 || rd.Damaged[0].Snapshot != snap2 || len(rd.Damaged[0].Paths) != 1 || rd.Damaged[0].Paths[0].Path != "/victim.bin" ||
		len(rd.StillIndexed) != 1 || !strings.HasSuffix(pack, rd.StillIndexed[0]) {
		t.Fatalf("repair snapshots --dry-run --read-data: %+v (pack %s)", rd, pack)
	}
	if after := obj.list(); !mapsEqual(before, after) {
		t.Fatal("--dry-run --read-data changed the store")
	}

	rp := decode[repairPacksJSON](t, e.ok("repair", "packs", "--json"))
	if len(rp.Damaged) != 1 || !strings.HasSuffix(pack, rp.Damaged[0].Pack) || rp.LostBlobs != 1 || rp.Damaged[0].Salvaged < 1 || rp.Salvaged < 1 {
		t.Fatalf("repair packs: %+v", rp)
	}
	if _, ok := obj.list()[pack]; !ok {
		t.Fatal("repair packs removed the damaged pack")
	}
	// A second run finds nothing more to do.
	if again := decode[repairPacksJSON](t, e.ok("repair", "packs", "--json")); len(again.Damaged) != 0 {
		t.Fatalf("second repair packs: %+v", again)
	}
	rs := decode[repairSnapsJSON](t, e.ok("repair", "snapshots", "--json"))
	if len(rs.Damaged) != 1 || rs.Damaged[0].Snapshot != snap2 || rs.Damaged[0].New == "" || rs.Damaged[0].Forgotten {
		t.Fatalf("repair snapshots: %+v", rs)
	}
	d := rs.Damaged[0]
	if len(d.Paths) != 1 || d.Paths[0].Path != "/victim.bin" || d.Paths[0].Action != "dropped" {
		t.Fatalf("repair snapshots named %+v, want /victim.bin dropped", d.Paths)
	}
	repaired := d.New
	e.ok("check", "--read-data", repaired)
	e.ok("check", "--read-data", snap1)
	out := filepath.Join(t.TempDir(), "r")
	e.ok("restore", "-to", out, repaired)
	compareWithout(t, src2, out, "victim.bin")
	ls := e.ok("ls", "--json").stdout
	if !strings.Contains(ls, `"repaired"`) {
		t.Errorf("the repaired snapshot lacks its tag:\n%s", ls)
	}
	// A rerun does not repair the same original twice.
	if again := decode[repairSnapsJSON](t, e.ok("repair", "snapshots", "--json")); len(again.Damaged) != 1 || again.Damaged[0].Already != repaired {
		t.Fatalf("second repair snapshots: %+v", again)
	}

	// The next backup stores victim.bin again.
	s := e.backup(src2)
	if s.Stats.NewBlobs < 1 || s.Stats.ReadBytes < 400000 {
		t.Fatalf("the backup after the repair did not store the lost data again: %+v", s.Stats)
	}
	e.ok("check", "--read-data", s.ID)
	out2 := filepath.Join(t.TempDir(), "r2")
	e.ok("restore", "-to", out2, s.ID)
	if err := testtree.Compare(src2, out2); err != nil {
		t.Fatal(err)
	}

	// --forget removes the original; then the whole store checks clean.
	f := decode[repairSnapsJSON](t, e.ok("repair", "snapshots", "--forget", "--json"))
	if len(f.Damaged) != 1 || !f.Damaged[0].Forgotten {
		t.Fatalf("repair snapshots --forget: %+v", f)
	}
	e.ok("check", "--read-data")
	out3 := filepath.Join(t.TempDir(), "r3")
	e.ok("restore", "-to", out3, snap1)
	if err := testtree.Compare(src1, out3); err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRepairDamagedDataFolder(t *testing.T) {
	e := newEnv(t)
	repairDamagedData(t, e, folderObjects(t, e.store))
}

func TestRepairDamagedDataS3(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "repairdata")
	e := newS3Env(t, m, "s3://"+bucket+"/store/")
	repairDamagedData(t, e, s3Objects(t, m, bucket, "store/"))
}

// TestRepairDeletedTreePack: the tree pack of a first backup of a
// folder's subfolder is deleted. The snapshot of the subfolder becomes
// an empty one, the later snapshot of the whole folder (which reuses the
// subfolder's tree) gets an empty sub/, both named; the rest restores
// byte-exact; a backup taken before --forget (its parent still the
// damaged original) stores sub/ again and checks clean.
func TestRepairDeletedTreePack(t *testing.T) {
	e := newEnv(t)
	repairDeletedTreePack(t, e, folderObjects(t, e.store))
}

// TestRepairDeletedTreePackS3: the same on MinIO, where the tree pack's
// blobs are also in the local disk cache, which must not hide that the
// store lost the pack.
func TestRepairDeletedTreePackS3(t *testing.T) {
	m := needMinio(t)
	bucket := m.newBucket(t, "repairtree")
	e := newS3Env(t, m, "s3://"+bucket+"/store/")
	repairDeletedTreePack(t, e, s3Objects(t, m, bucket, "store/"))
}

func repairDeletedTreePack(t *testing.T, e *env, obj objects) {
	src := filepath.Join(t.TempDir(), "src")
	testtree.WriteFile(filepath.Join(src, "sub", "a.bin"), testtree.RandBytes(30000))
	testtree.WriteFile(filepath.Join(src, "other", "b.bin"), testtree.RandBytes(20000))
	testtree.WriteFile(filepath.Join(src, "c.txt"), []byte("c\n"))
	testtree.SetTimes(src)
	before := obj.list()
	snapSub := e.backup(filepath.Join(src, "sub")).ID
	packs := newObjects(before, obj.list(), store.Prefix(store.KindTreePack))
	if len(packs) != 1 {
		t.Fatalf("tree packs of the first backup: %v", packs)
	}
	snapAll := e.backup(src).ID
	obj.del(packs[0])
	e.fail(1, []string{"sub/"}, "check")

	rs := decode[repairSnapsJSON](t, e.ok("repair", "snapshots", "--json"))
	got := map[string]string{}
	for _, d := range rs.Damaged {
		if len(d.Paths) != 1 || d.Paths[0].Action != "emptied" || d.New == "" {
			t.Fatalf("repair snapshots: %+v", d)
		}
		got[d.Snapshot] = d.Paths[0].Path
		e.ok("check", d.New)
	}
	if len(got) != 2 || got[snapSub] != "/" || got[snapAll] != "/sub/" {
		t.Fatalf("repaired %v; want %s: /, %s: /sub/", got, snapSub[:8], snapAll[:8])
	}
	// The blob of the missing pack left the index with the repair.
	if len(rs.StillIndexed) != 1 || rs.Packs == nil || rs.Packs.LostBlobs != 1 {
		t.Fatalf("the missing tree pack was not dropped from the index: %+v", rs)
	}
	var newAll string
	for _, d := range rs.Damaged {
		if d.Snapshot == snapAll {
			newAll = d.New
		}
	}
	out := filepath.Join(t.TempDir(), "r")
	e.ok("restore", "-to", out, newAll)
	if ents, err := os.ReadDir(filepath.Join(out, "sub")); err != nil || len(ents) != 0 {
		t.Fatalf("sub/ in the repaired snapshot: %v %v, want an empty folder", ents, err)
	}
	compareWithout(t, src, out, "sub/a.bin")

	if again := decode[repairPacksJSON](t, e.ok("repair", "packs", "--json")); len(again.Damaged) != 0 {
		t.Fatalf("repair packs after repair snapshots: %+v", again)
	}
	s := e.backup(src)
	e.ok("check", "--read-data", s.ID)
	out2 := filepath.Join(t.TempDir(), "r2")
	e.ok("restore", "-to", out2, s.ID)
	if err := testtree.Compare(src, out2); err != nil {
		t.Fatal(err)
	}
	e.ok("repair", "snapshots", "--forget")
	e.ok("check", "--read-data")
}

// TestRepairKilled kills repair packs and repair snapshots --forget with
// SIGKILL at random points: the undamaged snapshot still checks and
// restores after each kill, and a rerun finishes the repair: the store
// checks clean and the repaired snapshot restores byte-exact.
func TestRepairKilled(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	base := newEnv(t)
	obj := folderObjects(t, base.store)
	// More data, so that a repair takes long enough to be killed midway.
	src1, src2, snap1, snap2, _ := damagedDataStore(t, base, obj)
	fillRandom(t, filepath.Join(src2, "bulk"), 5, 12, 1<<20)
	testtree.SetTimes(src2)
	snap3 := base.backup(src2).ID // damaged too: it reuses victim.bin's blob

	// How long each uninterrupted step takes, on a copy: a kill is
	// timed within its own step (timing both steps together let a fast
	// machine finish every killed step before its signal; CI did).
	steps := [][]string{{"repair", "packs"}, {"repair", "snapshots", "--forget"}}
	timed := copyEnv(t, base)
	took := make([]time.Duration, len(steps))
	for k, s := range steps {
		start := time.Now()
		timed.ok(s...)
		took[k] = time.Since(start)
		t.Logf("%v takes %v", s, took[k])
	}

	const trials = 6
	killedAny := false
	for i := range trials {
		e := copyEnv(t, base)
		k := i % 2 // which step is killed; the one before it runs whole
		for _, s := range steps[:k] {
			e.ok(s...)
		}
		cmd := exec.Command(coffer, append([]string{"at", e.store}, steps[k]...)...)
		cmd.Env = append(cleanEnv(), append([]string{"COFFER_PASSPHRASE=" + e.pass}, e.extra...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Somewhere in the first 90% of the step, from the exec on.
		delay := time.Duration(rng.Int64N(int64(took[k]) * 9 / 10))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL
		if !killed && err != nil {
			t.Fatalf("trial %d: %v failed by itself: %v", i, steps[k], err)
		}
		killedAny = killedAny || killed
		t.Logf("trial %d: %v killed after %v: %v", i, steps[k], delay, killed)

		e.ok("check", "--read-data", snap1)
		out := filepath.Join(t.TempDir(), "one")
		e.ok("restore", "-to", out, snap1)
		if err := testtree.Compare(src1, out); err != nil {
			t.Fatalf("trial %d: %v", i, err)
		}
		// The rerun finishes.
		e.ok("repair", "packs")
		rs := decode[repairSnapsJSON](t, e.ok("repair", "snapshots", "--forget", "--json"))
		e.ok("check", "--read-data")
		for _, d := range rs.Damaged {
			if !d.Forgotten {
				t.Fatalf("trial %d: original %s kept: %+v", i, d.Snapshot[:8], d)
			}
		}
		var ls []struct{ ID, Original string }
		if err := json.Unmarshal([]byte(e.ok("ls", "--json").stdout), &ls); err != nil {
			t.Fatal(err)
		}
		latest := ""
		for _, sn := range ls {
			if sn.ID == snap2 || sn.ID == snap3 {
				t.Fatalf("trial %d: damaged original %s still there", i, sn.ID[:8])
			}
			if sn.Original == snap3 {
				latest = sn.ID
			}
		}
		if len(ls) != 3 {
			t.Fatalf("trial %d: %d snapshots, want 3 (one, and the repaired two and three)", i, len(ls))
		}
		if latest == "" {
			t.Fatalf("trial %d: no repaired snapshot of %s: %+v", i, snap3[:8], rs)
		}
		out2 := filepath.Join(t.TempDir(), "two")
		e.ok("restore", "-to", out2, latest)
		compareWithout(t, src2, out2, "victim.bin")
	}
	if !killedAny {
		t.Fatal("no trial killed a running repair; the delays are too long")
	}
}

// copyEnv copies e's store (a folder) into a new env with its own
// index cache.
func copyEnv(t *testing.T, e *env) *env {
	t.Helper()
	dir := t.TempDir()
	to := filepath.Join(dir, "store")
	if out, err := exec.Command("cp", "-a", e.store, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return &env{t: t, store: to, pass: e.pass, extra: []string{"XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}}
}
