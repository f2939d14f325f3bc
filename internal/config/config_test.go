package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/s3io"
)

func TestParseAssignments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		err  string
	}{
		{args: []string{"location", "s3://b/p"}, want: "location=s3://b/p"},
		{args: []string{"location=s3://b/p", "region=eu-west-1"}, want: "location=s3://b/p region=eu-west-1"},
		{args: []string{"uri", "s3://b/p?x=y", "region=r"}, want: "uri=s3://b/p?x=y region=r"},
		{args: []string{"passphrase_cmd", "echo a=b"}, want: "passphrase_cmd=echo a=b"},
		{args: []string{"bogus=1"}, err: `unknown key "bogus" for a store; valid keys: type, location (uri)`},
		{args: []string{"bogus", "1"}, err: `unknown key "bogus"`},
		{args: []string{"region"}, err: "key region has no value"},
	} {
		got, err := ParseAssignments(Store, tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		var s []string
		for _, kv := range got {
			s = append(s, kv[0]+"="+kv[1])
		}
		if err != nil || strings.Join(s, " ") != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.args, s, err, tc.want)
		}
	}
	// passphrase keys are for stores only.
	if _, err := ParseAssignments(Source, []string{"passphrase_cmd=x"}); err == nil {
		t.Error("a source accepted passphrase_cmd")
	}
}

func TestSetAndValidate(t *testing.T) {
	e := Entry{}
	for _, kv := range [][2]string{{"uri", "s3://b/p"}, {"use_tls", "0"}, {"storage_class", "glacier"}, {"endpoint", "127.0.0.1:9000"}} {
		if err := e.Set(Store, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if e["location"] != "s3://b/p" || e["use_tls"] != "false" || e["storage_class"] != "GLACIER" || e.Type() != "s3" {
		t.Fatalf("entry: %v", e)
	}
	if err := e.Validate(Store); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][3]string{
		{"use_path_style", "maybe", "want true or false"},
		{"storage_class", "COLD", "want one of STANDARD, REDUCED_REDUNDANCY"},
		{"type", "ftp", "want one of fs, s3"},
		{"endpoint", "ftp://x", "want a URL"},
		{"secret_access_key", "", "want a value"},
	} {
		err := e.Set(Store, kv[0], kv[1])
		if err == nil || !strings.Contains(err.Error(), kv[2]) {
			t.Errorf("%s=%q: %v, want %q", kv[0], kv[1], err, kv[2])
		}
	}

	// Whole-entry rules.
	for _, tc := range []struct {
		e    Entry
		kind Kind
		err  string
	}{
		{Entry{}, Store, "needs a location"},
		{Entry{"location": "/x", "region": "r"}, Store, "applies to S3 locations only"},
		{Entry{"location": "/x", "type": "s3"}, Store, "type s3 needs a location s3://"},
		{Entry{"location": "s3://b/", "access_key": "a"}, Store, "both access_key and secret_access_key"},
		{Entry{"location": "/x", "passphrase_cmd": "a", "passphrase_file": "/b"}, Store, "not both"},
		{Entry{"location": "s3:///p"}, Source, "no bucket"},
	} {
		if err := tc.e.Validate(tc.kind); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: %v, want %q", tc.e, err, tc.err)
		}
	}

	// A folder location is made absolute.
	f := Entry{}
	f.Set(Destination, "location", "rel/dir")
	if !filepath.IsAbs(f["location"]) {
		t.Errorf("relative location kept: %q", f["location"])
	}
}

// Every storage class config accepts, s3io accepts too.
func TestStorageClassesAgreeWithS3io(t *testing.T) {
	for _, c := range StorageClasses {
		var o s3io.Options
		if err := o.Set("storage_class", c); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}

func TestMasked(t *testing.T) {
	e := Entry{"location": "s3://b/", "access_key": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI", "session_token": "tok"}
	m := e.Masked()
	for k, v := range m {
		if strings.Contains(v, "wJalr") || strings.Contains(v, "tok") || strings.Contains(v, "IOSFODNN") {
			t.Errorf("%s shows %q", k, v)
		}
	}
	if m["location"] != "s3://b/" || m["access_key"] != "AKIA****" {
		t.Errorf("masked: %v", m)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "coffer")
	path := filepath.Join(dir, FileName)
	f, loose, err := Load(path)
	if err != nil || loose || len(f.Names(Store)) != 0 {
		t.Fatalf("missing file: %v %v %v", f, loose, err)
	}
	f.Entries(Store, true)["s"] = Entry{"location": "/x"}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	g, _, err := Load(path)
	if err != nil || g.Stores["s"]["location"] != "/x" {
		t.Fatalf("reload: %+v %v", g, err)
	}
	os.Chmod(path, 0o644)
	if _, loose, _ := Load(path); !loose {
		t.Error("a world-readable file is not reported")
	}
	// Saving restores 0600, and leaves no temporary file behind.
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("after save: %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("folder holds %d files", len(ents))
	}
	os.WriteFile(path, []byte(`{"version":1,"stores":{},"bogus":1}`), 0o600)
	if _, _, err := Load(path); err == nil || !strings.Contains(err.Error(), "not a coffer configuration") {
		t.Errorf("unknown field: %v", err)
	}
}

// TestExcludeKeys: a list key given several times in one create or set
// holds all the values, exclude files are made absolute, sizes and
// patterns are checked, and the folder-only and bucket-only keys are
// refused on the other kind of source.
func TestExcludeKeys(t *testing.T) {
	e := Entry{}
	pairs, err := ParseAssignments(Source, []string{"location=/data", "exclude=*.tmp", "exclude", "/build/", "iexclude=*.JPG",
		"exclude_file=rel/ex.txt", "exclude_if_present=.nobackup", "exclude_larger_than=500MiB", "one_file_system=1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(Source, pairs); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(Source); err != nil {
		t.Fatal(err)
	}
	if got := e.List("exclude"); len(got) != 2 || got[0] != "*.tmp" || got[1] != "/build/" {
		t.Errorf("exclude = %q", got)
	}
	if f := e.List("exclude_file"); len(f) != 1 || !filepath.IsAbs(f[0]) || e["one_file_system"] != "true" {
		t.Errorf("entry %v", e)
	}
	// A later set replaces the list.
	if err := e.Apply(Source, [][2]string{{"exclude", "*.bak"}}); err != nil || e["exclude"] != "*.bak" {
		t.Errorf("set exclude: %q %v", e["exclude"], err)
	}
	for _, kv := range [][2]string{{"exclude", "["}, {"exclude", ""}, {"exclude_larger_than", "lots"}, {"one_file_system", "maybe"}} {
		if err := (Entry{}).Set(Source, kv[0], kv[1]); err == nil {
			t.Errorf("%s=%q accepted", kv[0], kv[1])
		}
	}
	if err := (Entry{"location": "/data", "include": "*.jpg"}).Validate(Source); err == nil {
		t.Error("include accepted on a folder")
	}
	for _, k := range []string{"one_file_system", "exclude_if_present"} {
		if err := (Entry{"location": "s3://b/", k: "true"}).Validate(Source); err == nil {
			t.Errorf("%s accepted on a bucket", k)
		}
	}
	if err := (Entry{}).Set(Store, "exclude", "*.tmp"); err == nil {
		t.Error("a store accepted exclude")
	}
}

// A value cut from its key is taken for a key; the error does not show it,
// since it may be a secret.
func TestParseAssignmentsHidesStrayValues(t *testing.T) {
	_, err := ParseAssignments(Store, []string{"location=s3://b/p", "secret_access_key=", "S3CR3T/xYz+9"})
	if err == nil || strings.Contains(err.Error(), "S3CR3T") {
		t.Fatalf("got %v", err)
	}
	_, err = ParseAssignments(Store, []string{"regoin", "x"})
	if err == nil || !strings.Contains(err.Error(), `"regoin"`) {
		t.Fatalf("a misspelt key is named: %v", err)
	}
}

// compression is a store key: its values are format's levels, stored in
// lower case; a bad value names itself and the valid ones.
func TestCompressionKey(t *testing.T) {
	e := Entry{}
	for _, v := range []string{"off", "fastest", "Default", "BETTER"} {
		if err := e.Set(Store, "compression", v); err != nil {
			t.Fatalf("compression=%s: %v", v, err)
		}
		if e["compression"] != strings.ToLower(v) {
			t.Errorf("compression=%s stored as %q", v, e["compression"])
		}
	}
	err := e.Set(Store, "compression", "max")
	var ke *KeyError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), `"max"`) || !strings.Contains(err.Error(), "off, fastest, default, better") {
		t.Errorf("compression=max: %v, want a KeyError naming the value and the valid ones", err)
	}
	if err := (Entry{}).Set(Source, "compression", "off"); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("compression on a source: %v, want unknown key", err)
	}
	if !strings.Contains(KeyHelp(Store), "compression") {
		t.Errorf("store key help lacks compression:\n%s", KeyHelp(Store))
	}
}
