package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/internal/testtree"
	"github.com/coffer-backup/coffer/s3io"
)

// retention is what get-object-retention says of one object.
type retention struct {
	Mode  string
	Until time.Time
}

// objectRetention reads key's retention with the aws CLI.
func (m *minioServer) objectRetention(t *testing.T, bucket, key string) retention {
	t.Helper()
	out := m.aws(t, "s3api", "get-object-retention", "--bucket", bucket, "--key", key)
	var r struct {
		Retention struct {
			Mode            string
			RetainUntilDate time.Time
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("get-object-retention %s: %v\n%s", key, err, out)
	}
	return retention{r.Retention.Mode, r.Retention.RetainUntilDate}
}

// lockedStorage is the s3io storage of bucket/prefix, with the policy set.
func lockedStorage(t *testing.T, m *minioServer, bucket, prefix string, p store.RetentionPolicy) *s3io.Storage {
	t.Helper()
	st := s3io.NewStorage(m.client(t, bucket+"/"+prefix))
	st.SetRetention(p)
	return st
}

// TestObjectLock: a store made with --object-lock-days 1 in a bucket
// with Object Lock writes every object it keeps (config, data packs, one
// of them a multipart upload, tree packs, index files, the snapshot)
// locked in governance mode until a day after its write, as the aws CLI
// reads it; rm of the snapshot fails, says until when, and leaves it
// listed and restorable byte-exact (and no delete marker); Delete
// through the storage returns a *store.LockedError; ExtendRetention
// moves the date (and never shortens it); create --object-lock-days on a
// bucket without Object Lock fails, names the bucket and how to make
// one, and writes nothing; on a missing bucket it creates one with
// Object Lock.
func TestObjectLock(t *testing.T) {
	m := needMinio(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	bucket := bucketName("olock")
	m.aws(t, "s3api", "create-bucket", "--bucket", bucket, "--object-lock-enabled-for-bucket")

	e := &env{t: t, store: "s3://" + bucket + "/st", pass: "correct horse battery staple", extra: m.awsEnv()}
	r := e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1", "--object-lock-days", "1")
	if !strings.Contains(r.stdout, "locked for 1 day") || !strings.Contains(r.stdout, "governance") {
		t.Errorf("create does not say the store locks its objects:\n%s", r)
	}

	src := filepath.Join(t.TempDir(), "src")
	if err := testtree.WriteFile(filepath.Join(src, "big.bin"), testtree.RandBytes(12<<20)); err != nil { // a data pack above 8 MiB: multipart
		t.Fatal(err)
	}
	for i := range 20 {
		if err := testtree.WriteFile(filepath.Join(src, "small", fmt.Sprintf("f%02d.txt", i)), testtree.Text(uint64(i), 1000+i*37)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	sn := e.backup(src)
	if info := e.ok("info").stdout; !strings.Contains(info, "object lock    every object locked for 1 day after it is written (governance)") {
		t.Errorf("info does not show the object lock:\n%s", info)
	}
	end := time.Now()

	// Every object is locked: read through the storage for all of them,
	// with the aws CLI for a data pack (the multipart one), an index file
	// and the snapshot.
	st := lockedStorage(t, m, bucket, "st/", store.RetentionPolicy{Mode: store.Governance, Days: 1})
	seen := map[store.Kind]int{}
	var snap, bigPack, index store.Handle
	for _, k := range store.Kinds {
		err := st.List(t.Context(), k, func(o store.ObjectInfo) error {
			seen[k]++
			ret, err := st.Retention(t.Context(), o.Handle)
			if err != nil {
				return err
			}
			lo, hi := start.Add(24*time.Hour-time.Minute), end.Add(24*time.Hour+time.Minute)
			if k == store.KindConfig {
				lo = start.Add(23 * time.Hour) // written by create, before the backup
			}
			if ret.Mode != store.Governance || ret.Until.Before(lo) || ret.Until.After(hi) {
				t.Errorf("%s: retention %+v, want governance until about %s", o.Handle, ret, start.Add(24*time.Hour).UTC())
			}
			switch {
			case k == store.KindSnapshot:
				snap = o.Handle
			case k == store.KindIndex:
				index = o.Handle
			case k == store.KindDataPack && o.Size > 8<<20:
				bigPack = o.Handle
			}
			return nil
		})
		if err != nil {
			t.Fatalf("list %s: %v", k, err)
		}
	}
	for _, k := range []store.Kind{store.KindConfig, store.KindDataPack, store.KindTreePack, store.KindIndex, store.KindSnapshot} {
		if seen[k] == 0 {
			t.Errorf("no %s object in the store: %v", k, seen)
		}
	}
	if bigPack.Name == "" {
		t.Fatalf("no data pack above 8 MiB: the multipart path was not tested")
	}
	for _, h := range []store.Handle{bigPack, index, snap} {
		ret := m.objectRetention(t, bucket, "st/"+store.ObjectName(h))
		if ret.Mode != "GOVERNANCE" || ret.Until.Before(start.Add(24*time.Hour-time.Minute)) || ret.Until.After(end.Add(24*time.Hour+time.Minute)) {
			t.Errorf("%s: the aws CLI says %+v, want GOVERNANCE until about %s", h, ret, start.Add(24*time.Hour).UTC())
		}
	}

	// rm refuses, and says why and until when.
	e.fail(1, []string{"is locked until", "object lock, governance", "it can be deleted after that"}, "rm", sn.Short)

	// (A delete marker would hide it from the listing.)
	if snaps := e.snapshots(); len(snaps) != 1 || snaps[0].ID != sn.ID {
		t.Fatalf("after a refused rm the snapshots are %+v, want %s", snaps, sn.Short)
	}
	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "-to", out, sn.Short)
	if err := testtree.Compare(src, out); err != nil {
		t.Fatal(err)
	}

	// The storage itself: Delete says ErrLocked, Retention reads the
	// lock, ExtendRetention moves it (checked with the aws CLI).
	h := bigPack
	err := st.Delete(t.Context(), h)
	var le *store.LockedError
	if !errors.Is(err, store.ErrLocked) || !errors.As(err, &le) || le.Handle != h || le.Mode != store.Governance {
		t.Fatalf("Delete of a locked pack: %v, want a *store.LockedError", err)
	}
	if !store.IsPermanent(err) {
		t.Errorf("a LockedError is not permanent: %v", err)
	}
	want := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Second)
	if moved, err := st.ExtendRetention(t.Context(), h, want); err != nil || !moved {
		t.Fatalf("ExtendRetention: moved %v, %v", moved, err)
	}
	if after := m.objectRetention(t, bucket, "st/"+store.ObjectName(h)); !after.Until.Equal(want) || after.Mode != "GOVERNANCE" {
		t.Fatalf("after ExtendRetention to %s the aws CLI says %+v", want, after)
	}
	if moved, err := st.ExtendRetention(t.Context(), h, want.Add(-24*time.Hour)); err != nil || moved {
		t.Fatalf("ExtendRetention to an earlier date: moved %v, %v", moved, err)
	}
	if after, err := st.Retention(t.Context(), h); err != nil || !after.Until.Equal(want) {
		t.Fatalf("ExtendRetention to an earlier date shortened the lock: %+v, %v", after, err)
	}
	if _, err := st.ExtendRetention(t.Context(), store.Handle{Kind: store.KindSnapshot, Name: strings.Repeat("0", 64)}, want); !store.IsNotFound(err) {
		t.Errorf("ExtendRetention of a missing object: %v, want not found", err)
	}
	if err := st.Delete(t.Context(), store.Handle{Kind: store.KindSnapshot, Name: strings.Repeat("0", 64)}); err != nil {
		t.Errorf("Delete of a missing object: %v", err)
	}

	// tag would write a new snapshot and remove the old one: refused
	// before anything is written.
	e.fail(1, []string{"cannot be changed", "is locked until", "nothing was changed"}, "tag", "--add", "x", sn.Short)

	// forget too: with a newer snapshot kept, the locked older one stays.
	if err := testtree.WriteFile(filepath.Join(src, "second.txt"), []byte("second")); err != nil {
		t.Fatal(err)
	}
	e.backup(src)
	fr := e.fail(1, []string{"snapshot " + sn.Short, "is locked until", "object lock, governance"}, "forget", "--keep-last", "1")
	if strings.Contains(fr.stderr, "run the command again") {
		t.Errorf("forget of a locked snapshot tells to run it again, which fails the same way: %s", fr.stderr)
	}
	if snaps := e.snapshots(); len(snaps) != 2 {
		t.Fatalf("after a refused forget: %+v", snaps)
	}

	// Credentials without the retention actions: the refusals name them.
	noRet := e.with(m.assumeRole(t, policy(allow("arn:aws:s3:::*", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation")))...)
	writeFile := filepath.Join(src, "small", "new.txt")
	if err := testtree.WriteFile(writeFile, []byte("a new file")); err != nil {
		t.Fatal(err)
	}
	noRet.fail(1, []string{"access denied: s3:PutObject and s3:PutObjectRetention on arn:aws:s3:::" + bucket + "/st/"}, "backup", src)
	noRet.fail(1, []string{"access denied: s3:GetObjectRetention on arn:aws:s3:::" + bucket + "/st/" + store.ObjectName(snap)}, "rm", sn.Short)

	// A bucket without Object Lock: create refuses and writes nothing.
	plain := bucketName("plain")
	if _, err := s3io.EnsureBucket(t.Context(), m.client(t, plain)); err != nil {
		t.Fatal(err)
	}
	e2 := &env{t: t, store: "s3://" + plain + "/st", pass: e.pass, extra: m.awsEnv()}
	e2.fail(1, []string{plain, "does not have Object Lock enabled", "--object-lock-enabled-for-bucket"},
		"create", "--kdf-memory", "1024", "--kdf-time", "1", "--object-lock-days", "1")
	if _, err := lockedStorage(t, m, plain, "st/", store.RetentionPolicy{}).Stat(t.Context(), store.ConfigHandle); !store.IsNotFound(err) {
		t.Errorf("a refused create wrote a config: %v", err)
	}
	e2.fail(2, []string{"--object-lock-mode"}, "create", "--object-lock-days", "1", "--object-lock-mode", "strict")

	// A missing bucket is made with Object Lock, in compliance mode here.
	fresh := bucketName("fresh")
	e3 := &env{t: t, store: "s3://" + fresh + "/st", pass: e.pass, extra: m.awsEnv()}
	r = e3.ok("create", "--kdf-memory", "1024", "--kdf-time", "1", "--object-lock-days", "1", "--object-lock-mode", "compliance")
	if !strings.Contains(r.stderr, "with Object Lock") {
		t.Errorf("create on a missing bucket does not say it made one with Object Lock:\n%s", r)
	}
	if ret, err := lockedStorage(t, m, fresh, "st/", store.RetentionPolicy{}).Retention(t.Context(), store.ConfigHandle); err != nil || ret.Mode != store.Compliance {
		t.Errorf("config of a compliance store: %+v, %v", ret, err)
	}
}

// create --object-lock-days on a folder fails and says what it needs.
func TestObjectLockFolderRefused(t *testing.T) {
	e := &env{t: t, store: filepath.Join(t.TempDir(), "store"), pass: "correct horse battery staple"}
	e.fail(1, []string{"cannot lock objects", "S3 store in a bucket with Object Lock"}, "create", "--kdf-memory", "1024", "--kdf-time", "1", "--object-lock-days", "3")
	e.fail(2, []string{"--object-lock-days"}, "create", "--object-lock-mode", "compliance")
}

// setRetention moves key's lock to until with the aws CLI, shortening it
// if need be (governance bypass: MinIO's root user may): it stands in
// for the days that pass between backups and a prune.
func (m *minioServer) setRetention(t *testing.T, bucket, key string, until time.Time) {
	t.Helper()
	m.aws(t, "s3api", "put-object-retention", "--bucket", bucket, "--key", key, "--bypass-governance-retention",
		"--retention", fmt.Sprintf(`{"Mode":"GOVERNANCE","RetainUntilDate":"%s"}`, until.UTC().Format(time.RFC3339)))
}

// TestPruneExtendsRetentionS3: on a store created with
// --object-lock-days 1 in a MinIO bucket with Object Lock, prune locks
// every object the store still needs until at least a day from now, and
// leaves the packs of a forgotten snapshot alone; checked with the aws
// CLI. The locks are first shortened (as if the backups were older): to
// a few seconds for the index files and the first snapshot (so rm and
// the index rewrite may delete them), to T1 (10 minutes) for the rest.
// prune --dry-run says what it would extend and moves nothing; prune
// deletes nothing locked, says until when, and does not extend the
// unused packs (still T1); the second snapshot restores byte-exact.
func TestPruneExtendsRetentionS3(t *testing.T) {
	m := needMinio(t)
	bucket := bucketName("olprune")
	m.aws(t, "s3api", "create-bucket", "--bucket", bucket, "--object-lock-enabled-for-bucket")
	e := &env{t: t, store: "s3://" + bucket + "/st", pass: "correct horse battery staple", extra: m.awsEnv()}
	e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1", "--object-lock-days", "1")

	src := filepath.Join(t.TempDir(), "src")
	for i := range 5 {
		if err := testtree.WriteFile(filepath.Join(src, "keep", fmt.Sprintf("f%d.txt", i)), testtree.Text(uint64(i), 2000+i*100)); err != nil {
			t.Fatal(err)
		}
	}
	big := filepath.Join(src, "big.bin")
	if err := testtree.WriteFile(big, testtree.RandBytes(3<<20)); err != nil {
		t.Fatal(err)
	}
	s1 := e.backup(src)
	// Other contents everywhere: s1's packs are used by s1 alone.
	if err := testtree.WriteFile(big, testtree.RandBytes(3<<20)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := testtree.WriteFile(filepath.Join(src, "keep", fmt.Sprintf("f%d.txt", i)), testtree.Text(uint64(i+100), 2000+i*100)); err != nil {
			t.Fatal(err)
		}
	}
	s2 := e.backup(src)

	keys := func() []string {
		var out []string
		for _, o := range m.listObjects(t, bucket, "st/") {
			if !strings.HasPrefix(o.Key, store.Prefix(store.KindLock)) {
				out = append(out, "st/"+o.Key)
			}
		}
		return out
	}
	t1 := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	s1Key := "st/" + store.ObjectName(store.Handle{Kind: store.KindSnapshot, Name: s1.ID})
	var short, long []string
	for _, k := range keys() {
		if k == s1Key || strings.HasPrefix(k, "st/"+store.Prefix(store.KindIndex)) {
			short = append(short, k)
		} else {
			long = append(long, k)
		}
	}
	eachAtOnce(t, len(long), func(i int) { m.setRetention(t, bucket, long[i], t1) })
	// The short locks last, each ending 6 s after its aws call starts
	// (the call itself can take seconds here); then wait them out.
	var mu sync.Mutex
	var last time.Time // the latest of the short locks
	eachAtOnce(t, len(short), func(i int) {
		until := time.Now().Add(6 * time.Second).Truncate(time.Second)
		m.setRetention(t, bucket, short[i], until)
		mu.Lock()
		defer mu.Unlock()
		if until.After(last) {
			last = until
		}
	})
	time.Sleep(time.Until(last.Add(1500 * time.Millisecond)))
	e.ok("rm", s1.Short)

	// The dry run: what would be locked, and nothing moved.
	dry := e.ok("prune", "--dry-run", "--max-unused", "unlimited")
	if !strings.Contains(dry.stdout, "would lock the config, ") || !strings.Contains(dry.stdout, "1 snapshot and the index files it keeps until at least") {
		t.Errorf("prune --dry-run does not say what it would lock:\n%s", dry)
	}
	eachAtOnce(t, len(long), func(i int) {
		if got := m.objectRetention(t, bucket, long[i]); !got.Until.Equal(t1) {
			t.Errorf("after the dry run %s is locked until %s, want %s", long[i], got.Until, t1)
		}
	})

	start := time.Now()
	res := e.prune("--max-unused", "unlimited")
	rr := res.Retention
	if rr == nil || rr.Mode != "governance" || rr.Days != 1 || rr.Config != 1 || rr.Snapshots != 1 || rr.Packs != res.Kept || rr.IndexFiles == 0 ||
		rr.Extended < rr.Config+rr.Packs+rr.Snapshots || rr.Until.Before(start.Add(24*time.Hour).Truncate(time.Second)) {
		t.Fatalf("prune's retention report: %+v (kept %d packs)", rr, res.Kept)
	}
	// The unused packs (s1's data and tree packs) could not be deleted:
	// locked until T1, which prune says, and did not move.
	unused := map[string]bool{}
	for _, f := range res.Failed {
		if !strings.Contains(f.Error, "is locked until") {
			t.Errorf("failed delete of %s %s: %s", f.Kind, f.Pack, f.Error)
		}
		unused[f.Pack] = true
	}
	if res.Unused < 2 || len(unused) != res.Unused || res.Deleted != 0 {
		t.Fatalf("prune: %d unused packs, %d deleted, failed %+v", res.Unused, res.Deleted, res.Failed)
	}
	want := start.Add(24 * time.Hour).Truncate(time.Second)
	seen := map[string]int{}
	after := keys()
	locks := make([]retention, len(after))
	eachAtOnce(t, len(after), func(i int) { locks[i] = m.objectRetention(t, bucket, after[i]) })
	for i, k := range after {
		got := locks[i]
		if unused[filepath.Base(k)] {
			seen["unused"]++
			if !got.Until.Equal(t1) {
				t.Errorf("unused pack %s: locked until %s, want its old date %s (not extended)", k, got.Until, t1)
			}
			continue
		}
		h, ok := store.ParseObjectName(strings.TrimPrefix(k, "st/"))
		if !ok {
			t.Fatalf("%s is not a store object", k)
		}
		seen[h.Kind.String()]++
		if got.Mode != "GOVERNANCE" || got.Until.Before(want) || got.Until.After(want.Add(10*time.Minute)) {
			t.Errorf("%s: locked %s until %s, want GOVERNANCE until at least %s", k, got.Mode, got.Until, want)
		}
	}
	if seen["unused"] != res.Unused || seen["config"] != 1 || seen["snapshot"] != 1 || seen["data pack"]+seen["tree pack"] != rr.Packs || seen["index"] != rr.IndexFiles {
		t.Errorf("objects seen by kind %v; report %+v", seen, rr)
	}
	out := filepath.Join(t.TempDir(), "out")
	e.ok("restore", "-to", out, s2.Short)
	if err := testtree.Compare(src, out); err != nil {
		t.Fatal(err)
	}

	// --extend-retention=false: nothing moves.
	m.setRetention(t, bucket, "st/config", t1)
	e.fail(1, []string{"is locked until"}, "prune", "--extend-retention=false") // (s1's packs, still locked)
	if got := m.objectRetention(t, bucket, "st/config"); !got.Until.Equal(t1) {
		t.Errorf("prune --extend-retention=false moved the config's lock to %s", got.Until)
	}
}

// TestObjectLockEntry: a named store's object_lock_days and
// object_lock_mode are what create uses when its flags are not given
// (checked with the aws CLI); a flag overrides the entry; the keys are
// checked when the entry is written (S3 only, 1 to 36500 days, a known
// mode), and a mode without days is refused by create.
func TestObjectLockEntry(t *testing.T) {
	m := needMinio(t)
	bucket := bucketName("olentry")
	m.aws(t, "s3api", "create-bucket", "--bucket", bucket, "--object-lock-enabled-for-bucket")
	xdg := t.TempDir()
	e := &env{t: t, store: "@locked", pass: "correct horse battery staple", extra: append(m.awsEnv(), "XDG_CONFIG_HOME="+xdg)}
	conf := func(code int, want string, args ...string) {
		t.Helper()
		r := e.runEnv(e.extra, append([]string{"config", "store"}, args...)...)
		if r.code != code || !strings.Contains(r.stdout+r.stderr, want) {
			t.Fatalf("coffer config store %s: want exit %d and %q, got %s", strings.Join(args, " "), code, want, r)
		}
	}
	conf(0, "", "create", "locked", "location=s3://"+bucket+"/a", "object_lock_days=2", "object_lock_mode=compliance")
	conf(0, "", "create", "flagged", "location=s3://"+bucket+"/b", "object_lock_days=2", "object_lock_mode=compliance")
	conf(0, "", "create", "modeonly", "location=s3://"+bucket+"/c", "object_lock_mode=compliance")
	conf(2, "object_lock_days applies to S3 locations only", "create", "folder", "location="+filepath.Join(t.TempDir(), "st"), "object_lock_days=2")
	conf(2, "1 to 36500", "create", "zero", "location=s3://"+bucket+"/d", "object_lock_days=0")
	conf(2, "governance, compliance", "create", "strict", "location=s3://"+bucket+"/d", "object_lock_days=1", "object_lock_mode=strict")

	start := time.Now()
	r := e.ok("create", "--kdf-memory", "1024", "--kdf-time", "1")
	end := time.Now()
	if !strings.Contains(r.stdout, "locked for 2 days") || !strings.Contains(r.stdout, "compliance") {
		t.Errorf("create @locked does not lock for 2 days in compliance mode:\n%s", r)
	}
	if got := m.objectRetention(t, bucket, "a/config"); got.Mode != "COMPLIANCE" || got.Until.Before(start.Add(48*time.Hour-time.Second)) || got.Until.After(end.Add(48*time.Hour+time.Second)) {
		t.Errorf("the config of @locked: the aws CLI says %+v, want COMPLIANCE for 2 days", got)
	}

	// The flags win over the entry (the mode still from the entry).
	f := &env{t: t, store: "@flagged", pass: e.pass, extra: e.extra}
	r = f.ok("create", "--kdf-memory", "1024", "--kdf-time", "1", "--object-lock-days", "1")
	if !strings.Contains(r.stdout, "locked for 1 day ") || !strings.Contains(r.stdout, "compliance") {
		t.Errorf("create @flagged --object-lock-days 1:\n%s", r)
	}
	if got := m.objectRetention(t, bucket, "b/config"); got.Mode != "COMPLIANCE" || got.Until.After(time.Now().Add(24*time.Hour+time.Second)) {
		t.Errorf("the config of @flagged: the aws CLI says %+v, want COMPLIANCE for 1 day", got)
	}

	mo := &env{t: t, store: "@modeonly", pass: e.pass, extra: e.extra}
	mo.fail(2, []string{"@modeonly object_lock_mode needs --object-lock-days N"}, "create", "--kdf-memory", "1024", "--kdf-time", "1")
}
