package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cliEnv runs coffer with its own configuration folder (XDG_CONFIG_HOME)
// and no passphrase unless a test gives one.
type cliEnv struct {
	*env
	xdg string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	xdg := t.TempDir()
	e := &env{t: t, store: filepath.Join(t.TempDir(), "store"), pass: "correct horse battery staple",
		extra: []string{"XDG_CONFIG_HOME=" + xdg}}
	return &cliEnv{env: e, xdg: xdg}
}

// configFile is where coffer keeps the configuration under the test's XDG folder.
func (c *cliEnv) configFile() string { return filepath.Join(c.xdg, "coffer", "config.json") }

// coffer runs coffer with the test's XDG folder, envs, and no stdin.
func (c *cliEnv) coffer(envs []string, args ...string) result {
	c.t.Helper()
	return c.runEnv(append([]string{"XDG_CONFIG_HOME=" + c.xdg}, envs...), args...)
}

// must runs coffer and fails the test unless it exits 0.
func (c *cliEnv) must(envs []string, args ...string) result {
	c.t.Helper()
	r := c.coffer(envs, args...)
	if r.code != 0 {
		c.t.Fatalf("coffer %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// mustFail runs coffer and fails the test unless it exits with code and
// its output holds every one of want.
func (c *cliEnv) mustFail(code int, want []string, envs []string, args ...string) result {
	c.t.Helper()
	r := c.coffer(envs, args...)
	if r.code != code {
		c.t.Fatalf("coffer %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout+r.stderr, w) {
			c.t.Fatalf("coffer %s: output lacks %q:\n%s", strings.Join(args, " "), w, r)
		}
	}
	return r
}

func fileMode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

const testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

func TestConfigRoundTrip(t *testing.T) {
	c := newCLIEnv(t)
	// key=value form, several at once.
	c.must(nil, "config", "store", "create", "prod", "location=s3://my-kloset/prod", "access_key=AKIAIOSFODNN7EXAMPLE",
		"secret_access_key="+testSecret, "region=eu-west-1", "use_path_style=true", "storage_class=standard_ia")
	if m := fileMode(t, c.configFile()); m != 0o600 {
		t.Fatalf("config file mode %v after create, want 0600", m)
	}
	if m := fileMode(t, filepath.Dir(c.configFile())); m != 0o700 {
		t.Fatalf("config folder mode %v, want 0700", m)
	}
	// key value form.
	c.must(nil, "config", "source", "create", "photos", "location", "s3://photos-bucket/")
	c.must(nil, "config", "destination", "create", "local", "location", "rel/dir")

	// show masks the secret and shortens the access key id; every other
	// value reads back as set (storage class upper-cased).
	show := c.must(nil, "config", "store", "show", "prod").stdout
	for _, want := range []string{"s3://my-kloset/prod", "eu-west-1", "AKIA****", "********", "STANDARD_IA", "use_path_style"} {
		if !strings.Contains(show, want) {
			t.Fatalf("show lacks %q:\n%s", want, show)
		}
	}
	var shown map[string]string
	if err := json.Unmarshal([]byte(c.must(nil, "config", "store", "show", "--json", "@prod").stdout), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["location"] != "s3://my-kloset/prod" || shown["region"] != "eu-west-1" || shown["secret_access_key"] != "********" {
		t.Fatalf("show --json: %v", shown)
	}
	ls := c.must(nil, "config", "store", "ls", "--json").stdout + c.must(nil, "config", "store", "ls").stdout
	if !strings.Contains(ls, "prod") || strings.Contains(show+ls, testSecret) || strings.Contains(show+ls, "IOSFODNN7") {
		t.Fatalf("ls shows a secret or lacks the store:\n%s", ls)
	}
	// A relative folder is kept absolute.
	if d := c.must(nil, "config", "destination", "show", "local").stdout; !strings.Contains(d, string(filepath.Separator)+filepath.Join("rel", "dir")) ||
		strings.Contains(d, " rel/dir") {
		t.Fatalf("destination:\n%s", d)
	}

	// set keeps 0600, even over a file someone loosened, and warns about that.
	os.Chmod(c.configFile(), 0o644)
	r := c.must(nil, "config", "store", "set", "prod", "region", "us-east-2")
	if !strings.Contains(r.stderr, "may be read by other users") {
		t.Fatalf("no warning about a mode 0644 config file:\n%s", r)
	}
	if m := fileMode(t, c.configFile()); m != 0o600 {
		t.Fatalf("config file mode %v after set, want 0600", m)
	}
	c.must(nil, "config", "store", "set", "prod", "endpoint=127.0.0.1:9000", "use_tls=false")
	c.must(nil, "config", "store", "unset", "prod", "storage_class", "use_path_style")
	show = c.must(nil, "config", "store", "show", "prod").stdout
	if !strings.Contains(show, "us-east-2") || !strings.Contains(show, "127.0.0.1:9000") || strings.Contains(show, "STANDARD_IA") || strings.Contains(show, "use_path_style") {
		t.Fatalf("after set and unset:\n%s", show)
	}

	// The file is plain JSON holding exactly what was set.
	var file struct {
		Stores, Sources, Destinations map[string]map[string]string
	}
	data, _ := os.ReadFile(c.configFile())
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if file.Stores["prod"]["secret_access_key"] != testSecret || file.Sources["photos"]["location"] != "s3://photos-bucket/" {
		t.Fatalf("file: %s", data)
	}

	// rm removes the name only.
	c.must(nil, "config", "source", "rm", "photos")
	c.mustFail(2, []string{"no source named photos"}, nil, "config", "source", "show", "photos")
	if ls := c.must(nil, "config", "path").stdout; strings.TrimSpace(ls) != c.configFile() {
		t.Fatalf("config path: %q", ls)
	}
}

func TestConfigRejectsBadKeysAndValues(t *testing.T) {
	c := newCLIEnv(t)
	c.must(nil, "config", "store", "create", "s", "location=s3://b/p")
	c.must(nil, "config", "source", "create", "f", "location", t.TempDir())
	before, _ := os.ReadFile(c.configFile())
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"store", "set", "s", "colour=blue"}, []string{`unknown key "colour"`, "valid keys: type, location (uri), access_key", "passphrase_cmd"}},
		{[]string{"store", "set", "s", "colour", "blue"}, []string{`unknown key "colour"`, "valid keys"}},
		{[]string{"source", "set", "f", "passphrase_cmd=x"}, []string{`unknown key "passphrase_cmd" for a source`}},
		{[]string{"store", "set", "s", "use_tls=maybe"}, []string{`bad value "maybe" for use_tls`, "true or false"}},
		{[]string{"store", "set", "s", "use_path_style", "yes please"}, []string{"use_path_style", "true or false"}},
		{[]string{"store", "set", "s", "storage_class=COLD"}, []string{"storage_class", "STANDARD, REDUCED_REDUNDANCY", "DEEP_ARCHIVE"}},
		{[]string{"store", "set", "s", "type=ftp"}, []string{"want one of fs, s3"}},
		{[]string{"store", "set", "s", "endpoint=ftp://x"}, []string{"endpoint", "want a URL"}},
		{[]string{"store", "set", "s", "region"}, []string{"key region has no value"}},
		{[]string{"store", "set", "s", "access_key=AKIA"}, []string{"both access_key and secret_access_key"}},
		{[]string{"source", "set", "f", "region=eu-west-1"}, []string{"region applies to S3 locations only"}},
		{[]string{"store", "unset", "s", "location"}, []string{"needs a location"}},
		{[]string{"store", "create", "n"}, []string{"needs a location"}},
		{[]string{"store", "create", "bad/name", "location=/x"}, []string{"bad name"}},
		{[]string{"store", "set", "nope", "region=r"}, []string{"no store named nope"}},
	} {
		c.mustFail(2, tc.want, nil, append([]string{"config"}, tc.args...)...)
	}
	c.mustFail(1, []string{"exists already"}, nil, "config", "store", "create", "s", "location=/x")
	if after, _ := os.ReadFile(c.configFile()); string(after) != string(before) {
		t.Fatalf("a rejected change altered the file:\n%s\nvs\n%s", before, after)
	}
	// A secret's bad value is not echoed.
	r := c.mustFail(2, []string{"bad value for secret_access_key"}, nil, "config", "store", "set", "s", "secret_access_key=")
	if strings.Contains(r.stderr, `bad value "`) {
		t.Fatalf("quoted a secret's value:\n%s", r)
	}
}

func TestConfigFlagOverridesLocation(t *testing.T) {
	c := newCLIEnv(t)
	other := filepath.Join(t.TempDir(), "sub", "mine.json")
	c.must(nil, "--config", other, "config", "store", "create", "x", "location=/srv/x")
	if _, err := os.Stat(c.configFile()); err == nil {
		t.Fatal("--config also wrote the default file")
	}
	if m := fileMode(t, other); m != 0o600 {
		t.Fatalf("--config file mode %v", m)
	}
	if ls := c.must([]string{"COFFER_CONFIG=" + other}, "config", "store", "ls").stdout; !strings.Contains(ls, "@x") {
		t.Fatalf("COFFER_CONFIG: %q", ls)
	}
	if ls := c.must(nil, "config", "store", "ls").stdout; strings.Contains(ls, "@x") {
		t.Fatalf("the default file sees the --config entry: %q", ls)
	}
}

// TestConfigConcurrentChanges: config changes from several processes at
// once all land (each one locks the file for its read-modify-write).
func TestConfigConcurrentChanges(t *testing.T) {
	c := newCLIEnv(t)
	const n = 12
	results := make(chan result, n)
	for i := range n {
		go func() {
			results <- c.coffer(nil, "config", "source", "create", fmt.Sprintf("s%02d", i), "location="+filepath.Join(c.xdg, fmt.Sprint(i)))
		}()
	}
	for range n {
		if r := <-results; r.code != 0 {
			t.Fatalf("config source create: %s", r)
		}
	}
	ls := c.must(nil, "config", "source", "ls").stdout
	for i := range n {
		if !strings.Contains(ls, fmt.Sprintf("@s%02d", i)) {
			t.Errorf("source s%02d lost by a concurrent change:\n%s", i, ls)
		}
	}
}
