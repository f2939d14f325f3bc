package test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// secretMarker is the secret every case below hides somewhere; no output of
// any command may hold it (issue 9).
const secretMarker = "S3CR3TM4RK3R"

// refusingS3 answers every request with status and an S3 error code, so that
// commands against it fail at once, through the SDK's error path.
func refusingS3(t *testing.T, status int, code string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>1</RequestId></Error>`, code, code)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// deadEndpoint returns an address on 127.0.0.1 where nothing listens.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// secretsEnv keeps the host's AWS settings out of the runs.
var secretsEnv = []string{"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
	"AWS_ENDPOINT_URL=", "AWS_ENDPOINT_URL_S3=", "COFFER_NEW_PASSPHRASE=another passphrase"}

// secretCase is one place a secret comes in, against one failing store.
type secretCase struct {
	name   string
	envs   []string
	global []string // flags before "at"
	store  string
	src    string     // what backup reads
	dst    string     // where restore writes
	config [][]string // config commands that set the case up
}

// commands are the runs of every command a case makes, each without
// and with -v.
func (sc secretCase) commands(mnt string) [][]string {
	var out [][]string
	for _, cmd := range [][]string{
		{"backup", sc.src}, {"backup", "--json", sc.src},
		{"ls"}, {"ls", "--json"}, {"ls", "latest:/"},
		{"cat", "latest:/f"},
		{"restore", "-to", sc.dst, "latest"}, {"restore", "--json", "-to", sc.dst, "latest"},
		{"check"}, {"check", "--json"},
		{"info"}, {"info", "--json"},
		{"mount", mnt},
		{"passphrase", "ls"}, {"passphrase", "ls", "--json"}, {"passphrase", "add"}, {"passphrase", "rm", "0123abcd"},
		{"create", "--kdf-memory", "1024", "--kdf-time", "1"}, // last: on a missing store it succeeds
	} {
		for _, v := range [][]string{nil, {"-v"}} {
			args := append(append(append([]string{}, sc.global...), v...), "at", sc.store)
			out = append(out, append(args, cmd...))
		}
	}
	return append(out, sc.configCommands()...)
}

// sourceCommands are the runs of a case whose location is a source and a
// destination of a store that opens.
func (sc secretCase) sourceCommands() [][]string {
	var out [][]string
	for _, cmd := range [][]string{{"backup", sc.src}, {"backup", "--json", sc.src},
		{"restore", "-to", sc.dst, "latest"}, {"restore", "--json", "-to", sc.dst, "latest"}} {
		for _, v := range [][]string{nil, {"-v"}} {
			args := append(append(append([]string{}, sc.global...), v...), "at", sc.store)
			out = append(out, append(args, cmd...))
		}
	}
	return append(out, sc.configCommands()...)
}

// configCommands list and show the entries a case made.
func (sc secretCase) configCommands() [][]string {
	var out [][]string
	for _, cfg := range sc.config {
		kind := cfg[1]
		out = append(out, []string{"config", kind, "ls", "-v"}, []string{"config", kind, "ls", "--json"},
			[]string{"config", kind, "show", "-v", "s"}, []string{"config", kind, "show", "--json", "s"})
	}
	return out
}

// noMarker fails the test when a run's output holds the secretMarker.
func noMarker(t *testing.T, args []string, r result) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, secretMarker) {
		t.Errorf("coffer %s: the secret is in the output:\n%s", strings.Join(args, " "), r)
	}
}

// A secret given in any of the ways coffer takes one (location options,
// the AWS environment, a named entry, the passphrase's sources) never
// shows in any command's output, on failures (a server that refuses, a
// missing bucket or store, an endpoint nobody listens on, a wrong
// passphrase) and on success, with and without -v and --json.
func TestSecretsNeverShown(t *testing.T) {
	deny := refusingS3(t, http.StatusForbidden, "AccessDenied")
	missing := refusingS3(t, http.StatusNotFound, "NoSuchBucket")
	dead := deadEndpoint(t)

	// A real folder store, opened with another passphrase than the secretMarker.
	good := newCLIEnv(t)
	good.must([]string{"COFFER_PASSPHRASE=" + good.pass}, "at", good.store, "create", "--kdf-memory", "1024", "--kdf-time", "1")
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "f"), []byte("some data\n"), 0o644)
	good.must([]string{"COFFER_PASSPHRASE=" + good.pass}, "at", good.store, "backup", data)
	const absent = "ABSENT" // a store that is not there: each case's own, since create makes it
	restoreTo := t.TempDir()
	passFile := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(passFile, []byte(secretMarker+"\n"), 0o600)

	// The S3 ways: each gives a location (for a store, a source and a
	// destination), or an @name, and its environment.
	type s3way struct {
		name string
		loc  func(ep string) string
		envs []string
		// entry, if set, is the named entry's keys besides location
		// and endpoint; the case then uses @s.
		entry []string
	}
	q := func(opts string) func(string) string {
		return func(ep string) string { return "s3://bucket/prefix?endpoint=" + ep + "&" + opts }
	}
	ways := []s3way{
		{name: "query secret_access_key", loc: q("access_key=AKIAEXAMPLE&secret_access_key=" + secretMarker)},
		{name: "query secret_key", loc: q("region=us-east-1&secret_key=" + secretMarker + "&access_key_id=AKIAEXAMPLE")},
		{name: "query session_token", loc: q("access_key=AKIAEXAMPLE&secret_access_key=x&session_token=" + secretMarker)},
		{name: "query access_key", loc: q("access_key=" + secretMarker + "&secret_access_key=x")},
		{name: "query misspelt key", loc: q("access_key=AKIAEXAMPLE&secret_access_key=x&secret_acess_key=" + secretMarker)},
		{name: "query bad value", loc: q("secret_access_key=" + secretMarker + "&access_key=AKIAEXAMPLE&use_tls=maybe")},
		{name: "query malformed", loc: q("secret_access_key=" + secretMarker + "&access_key=AKIAEXAMPLE&x=%zz")},
		{name: "userinfo", loc: func(ep string) string { return "s3://AKIAEXAMPLE:" + secretMarker + "@bucket/prefix?endpoint=" + ep }},
		{name: "AWS_SECRET_ACCESS_KEY", loc: q("region=us-east-1"), envs: []string{"AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=" + secretMarker}},
		{name: "AWS_SESSION_TOKEN", loc: q("region=us-east-1"), envs: []string{"AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=x", "AWS_SESSION_TOKEN=" + secretMarker}},
		{name: "entry secret_access_key", entry: []string{"access_key=AKIAEXAMPLE", "secret_access_key=" + secretMarker}},
		{name: "entry session_token", entry: []string{"access_key=AKIAEXAMPLE", "secret_access_key=x", "session_token=" + secretMarker}},
		{name: "entry location query", entry: []string{"location=s3://bucket/prefix?access_key=AKIAEXAMPLE&secret_access_key=" + secretMarker}},
	}
	var cases []secretCase
	var deadRuns []secretCase
	for _, w := range ways {
		for _, target := range []struct{ name, ep string }{{"denied", deny}, {"no bucket", missing}, {"unreachable", dead}} {
			sc := secretCase{name: w.name + "/" + target.name,
				envs: append(append([]string{"COFFER_PASSPHRASE=" + good.pass}, secretsEnv...), w.envs...)}
			if w.entry != nil {
				kv := []string{"location=s3://bucket/prefix", "endpoint=" + target.ep}
				kv = append(kv, w.entry...)
				for _, kind := range []string{"store", "source", "destination"} {
					sc.config = append(sc.config, append([]string{"config", kind, "create", "s"}, kv...))
				}
				sc.store, sc.src, sc.dst = "@s", "@s", "@s"
			} else {
				l := w.loc(target.ep)
				sc.store, sc.src, sc.dst = l, l, l
			}
			if target.ep == dead {
				deadRuns = append(deadRuns, sc)
				continue
			}
			cases = append(cases, sc)
			// The same location as a source and a destination of a
			// store that opens.
			src := sc
			src.name = w.name + "/" + target.name + " as source and destination"
			src.store = good.store
			cases = append(cases, src)
		}
	}
	// The passphrase's ways, against a store it does not open and a
	// store that is not there.
	for _, store := range []struct{ name, loc string }{{"wrong passphrase", good.store}, {"no store", absent}} {
		base := secretCase{store: store.loc, src: data, dst: restoreTo, envs: secretsEnv}
		sc := base
		sc.name, sc.envs = "COFFER_PASSPHRASE/"+store.name, append([]string{"COFFER_PASSPHRASE=" + secretMarker}, secretsEnv...)
		cases = append(cases, sc)
		sc = base
		sc.name, sc.global = "--passphrase-file/"+store.name, []string{"--passphrase-file", passFile}
		cases = append(cases, sc)
		sc = base
		sc.name, sc.store = "passphrase_cmd/"+store.name, "@s"
		sc.config = [][]string{{"config", "store", "create", "s", "location=" + store.loc, "passphrase_cmd=cat '" + passFile + "'"}}
		cases = append(cases, sc)
	}

	start := time.Now()
	for _, sc := range cases {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			c := newCLIEnv(t)
			here := filepath.Join(t.TempDir(), "absent")
			fill := func(args []string) []string {
				out := make([]string, len(args))
				for i, a := range args {
					out[i] = strings.ReplaceAll(a, absent, here)
				}
				return out
			}
			for _, cfg := range sc.config {
				noMarker(t, cfg, c.must(sc.envs, fill(cfg)...))
			}
			runs := sc.commands(t.TempDir())
			if sc.store == good.store && sc.src != data {
				runs = sc.sourceCommands()
			}
			for _, args := range runs {
				r := c.coffer(sc.envs, fill(args)...)
				noMarker(t, args, r)
				// Every run but config's listings and the create of an
				// absent store is a failure path: one that succeeded never
				// met the refusal it was meant to.
				if r.code == 0 && args[0] != "config" && !slices.Contains(args, "create") {
					t.Errorf("coffer %s: exit 0, want the failure this case sets up:\n%s", strings.Join(args, " "), r)
				}
			}
		})
	}
	// An endpoint where nothing listens: the SDK retries for a minute,
	// so these runs are runInterrupted (Ctrl-C) after a while, all at once.
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		for _, sc := range deadRuns {
			c := newCLIEnv(t)
			for _, cfg := range sc.config {
				noMarker(t, cfg, c.must(sc.envs, cfg...))
			}
			for _, cmd := range [][]string{{"-v", "at", sc.store, "ls", "--json"}, {"at", sc.store, "create"},
				{"at", good.store, "backup", "--json", sc.src}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := runInterrupted(t, c, sc.envs, 2*time.Second, cmd...)
					noMarker(t, cmd, r)
				}()
			}
		}
		wg.Wait()
	})
	t.Cleanup(func() { t.Logf("%d cases in %v", len(cases)+1, time.Since(start)) })
}

// runInterrupted runs coffer and sends it SIGINT after d, as Ctrl-C would.
func runInterrupted(t *testing.T, c *cliEnv, envs []string, d time.Duration, args ...string) result {
	cmd := exec.Command(coffer, args...)
	cmd.Env = append(append(cleanEnv(), "XDG_CONFIG_HOME="+c.xdg), envs...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return result{}
	}
	timer := time.AfterFunc(d, func() { cmd.Process.Signal(os.Interrupt) })
	err := cmd.Wait()
	timer.Stop()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{code, out.String(), errb.String()}
}

// The success paths: a backup and its listing with -v and --json, the
// passphrase given each way, never show it.
func TestSecretsNotShownOnSuccess(t *testing.T) {
	c := newCLIEnv(t)
	passFile := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(passFile, []byte(secretMarker+"\n"), 0o600)
	env := append([]string{"COFFER_PASSPHRASE=" + secretMarker}, secretsEnv...)
	c.must(env, "at", c.store, "create", "--kdf-memory", "1024", "--kdf-time", "1")
	c.must(nil, "config", "store", "create", "s", "location="+c.store, "passphrase_cmd=cat '"+passFile+"'")
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "f"), []byte("some data\n"), 0o644)
	for _, way := range []struct {
		envs []string
		at   []string
	}{
		{env, []string{"at", c.store}},
		{secretsEnv, []string{"--passphrase-file", passFile, "at", c.store}},
		{secretsEnv, []string{"at", "@s"}},
	} {
		for _, cmd := range [][]string{{"-v", "backup", "--json", data}, {"-v", "ls", "--json"}, {"ls", "-v", "latest:/"},
			{"-v", "restore", "--json", "-to", t.TempDir(), "latest"}, {"-v", "check", "--json"}, {"-v", "info", "--json"},
			{"-v", "passphrase", "ls", "--json"}, {"-v", "cat", "latest:/f"}} {
			args := append(append([]string{}, way.at...), cmd...)
			noMarker(t, args, c.must(way.envs, args...))
		}
	}
}

// On a real S3 server, credentials given in the locations of a store, a
// source and a destination show in no output, and the snapshot of a
// bucket records its source as s3://BUCKET/PREFIX/ alone: the store keeps
// no secret either.
func TestSecretsS3Success(t *testing.T) {
	m := needMinio(t)
	c := newCLIEnv(t)
	bucket := bucketName("secrets")
	creds := "endpoint=" + m.endpoint + "&access_key=" + m.user + "&secret_access_key=" + m.pass
	storeLoc := "s3://" + bucket + "/store?" + creds
	srcLoc := "s3://" + bucket + "/restored?" + creds
	envs := append([]string{"COFFER_PASSPHRASE=" + c.pass}, secretsEnv...)
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "f"), []byte("some data\n"), 0o644)
	var snaps []struct {
		Source string `json:"source"`
	}
	for _, args := range [][]string{
		{"-v", "at", storeLoc, "create", "--kdf-memory", "1024", "--kdf-time", "1"},
		{"-v", "at", storeLoc, "backup", "--json", data},
		{"-v", "at", storeLoc, "restore", "--json", "-to", srcLoc, "latest"},
		{"-v", "at", storeLoc, "backup", "--json", srcLoc},
		{"at", storeLoc, "backup", srcLoc},
		{"-v", "at", storeLoc, "ls"},
		{"-v", "at", storeLoc, "info", "--json"},
		{"-v", "at", storeLoc, "check", "--json"},
		{"-v", "at", storeLoc, "ls", "--json"},
	} {
		r := c.must(envs, args...)
		if strings.Contains(r.stdout+r.stderr, m.pass) {
			t.Errorf("coffer %s: the secret is in the output:\n%s", strings.Join(args, " "), r)
		}
		if args[len(args)-1] == "--json" && args[len(args)-2] == "ls" {
			if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(snaps) != 3 || snaps[1].Source != "s3://"+bucket+"/restored/" {
		t.Fatalf("snapshots' sources: %+v", snaps)
	}
}

// Mistakes in 'coffer config' that put a secret where a key or a
// location goes do not echo it.
func TestSecretsConfigMistakes(t *testing.T) {
	c := newCLIEnv(t)
	for _, args := range [][]string{
		{"config", "store", "create", "s", "location=s3://b/p", "access_key=AKIAEXAMPLE", "secret_access_key=", secretMarker},
		{"config", "store", "create", "s", "location=s3://b/p?access_key=AKIAEXAMPLE&secret_access_key=" + secretMarker, "type=fs"},
		{"config", "store", "create", "s", "location=s3://?secret_access_key=" + secretMarker},
		{"config", "store", "create", "s", "location=s3://b/p?secret_access_key=" + secretMarker + "&use_tls=maybe"},
		{"config", "source", "create", "s", "location=s3://AKIAEXAMPLE:" + secretMarker + "@b/p"},
	} {
		r := c.mustFail(2, nil, secretsEnv, args...)
		noMarker(t, args, r)
	}
}
