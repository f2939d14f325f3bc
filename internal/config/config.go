// Package config is coffer's named configuration: stores, sources and
// destinations that commands refer to as @name. It owns the file's format,
// the keys each kind accepts and their validation, masking secrets for
// display, and writing the file atomically with mode 0600. It knows
// nothing of S3 clients or stores: cmd/coffer turns an entry into one.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/engine/format"
	"github.com/coffer-backup/coffer/engine/retention"
	"github.com/coffer-backup/coffer/s3io"
)

// Kind is what an entry names.
type Kind string

const (
	Store       Kind = "store"
	Source      Kind = "source"
	Destination Kind = "destination"
)

// Kinds lists the kinds in the order commands show them.
var Kinds = []Kind{Store, Source, Destination}

func (k Kind) plural() string { return string(k) + "s" }

// Entry is one named store, source or destination: key → value, every
// value a string as the user typed it (after validation).
type Entry map[string]string

// File is the whole configuration file.
type File struct {
	Version      int              `json:"version"`
	Stores       map[string]Entry `json:"stores,omitempty"`
	Sources      map[string]Entry `json:"sources,omitempty"`
	Destinations map[string]Entry `json:"destinations,omitempty"`
}

// FileName is the file's name in the config folder.
const FileName = "config.json"

// DefaultPath returns $XDG_CONFIG_HOME/coffer/config.json, or
// ~/.config/coffer/config.json.
func DefaultPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the XDG spec says to ignore a relative one
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("config: no home folder to keep the configuration in (set XDG_CONFIG_HOME or use --config): %w", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "coffer", FileName), nil
}

// Entries returns the map of one kind, creating it when create is set.
func (f *File) Entries(k Kind, create bool) map[string]Entry {
	var m *map[string]Entry
	switch k {
	case Store:
		m = &f.Stores
	case Source:
		m = &f.Sources
	case Destination:
		m = &f.Destinations
	default:
		panic("config: unknown kind " + string(k))
	}
	if *m == nil && create {
		*m = map[string]Entry{}
	}
	return *m
}

// Get returns the entry of kind k named name.
func (f *File) Get(k Kind, name string) (Entry, bool) {
	e, ok := f.Entries(k, false)[name]
	return e, ok
}

// Names lists the entries of a kind, sorted.
func (f *File) Names(k Kind) []string {
	var out []string
	for n := range f.Entries(k, false) {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Load reads a configuration file; a missing file is an empty
// configuration. The second result says the file is readable by others
// than its owner (it may hold secrets): callers warn.
func Load(path string) (*File, bool, error) {
	f := &File{Version: 1}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("config: %w", err)
	}
	loose := false
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		loose = true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		return nil, false, fmt.Errorf("config: %s: not a coffer configuration: %w", path, err)
	}
	if f.Version > 1 {
		return nil, false, fmt.Errorf("config: %s: version %d is newer than this coffer reads (1)", path, f.Version)
	}
	return f, loose, nil
}

// Save writes the file atomically: a temporary file in the same folder,
// written, synced, given mode 0600 and renamed over the old one, then the
// folder synced. The folder is created with mode 0700 when missing.
func (f *File) Save(path string) error {
	if f.Version == 0 {
		f.Version = 1
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("config: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("config: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// A key is one setting an entry may hold.
type key struct {
	name    string
	aliases []string
	kinds   []Kind // nil: every kind
	s3Only  bool
	fsOnly  bool
	secret  bool
	// list: the value is a list, one item a line; a key given several
	// times in one create or set (Apply) sets all the items.
	list  bool
	help  string
	check func(string) error
}

// StorageClasses are the S3 storage classes storage_class accepts.
var StorageClasses = []string{"STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
	"GLACIER_IR", "GLACIER", "DEEP_ARCHIVE", "EXPRESS_ONEZONE", "OUTPOSTS", "SNOW"}

// Types are the values of the type key.
var Types = []string{"fs", "s3"}

func checkBool(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return errors.New("want true or false")
	}
	return nil
}

func checkTimeout(v string) error {
	_, err := s3io.ParseTimeout(v)
	return err
}

func checkOneOf(valid []string, fold bool) func(string) error {
	return func(v string) error {
		if !slices.ContainsFunc(valid, func(s string) bool { return s == v || fold && strings.EqualFold(s, v) }) {
			return fmt.Errorf("want one of %s", strings.Join(valid, ", "))
		}
		return nil
	}
}

func checkNonEmpty(v string) error {
	if v == "" {
		return errors.New("want a value")
	}
	return nil
}

// Lines splits a list value into its items.
func Lines(v string) []string {
	var out []string
	for _, l := range strings.Split(v, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// List returns the items of a list key (nil when unset).
func (e Entry) List(name string) []string { return Lines(e[name]) }

func checkNonEmptyLines(v string) error {
	if len(Lines(v)) == 0 {
		return errors.New("want a value")
	}
	return nil
}

// checkPatterns checks the glob syntax of patterns (engine/backup has the
// matcher and says more at backup time).
func checkPatterns(v string) error {
	if err := checkNonEmptyLines(v); err != nil {
		return err
	}
	for _, p := range Lines(v) {
		p = strings.TrimPrefix(p, "!")
		if strings.HasPrefix(p, "prefix:") {
			continue
		}
		for _, seg := range strings.Split(p, "/") {
			if _, err := path.Match(seg, ""); err != nil {
				return fmt.Errorf("pattern %q: %v", p, err)
			}
		}
	}
	return nil
}

func checkSize(v string) error {
	if _, err := humanize.ParseBytes(v); err != nil {
		return errors.New("want a size like 500MiB, 2GB or 1048576")
	}
	return nil
}

func checkEndpoint(v string) error {
	if v == "" {
		return errors.New("want a URL like https://s3.example.com or host:port")
	}
	s := v
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("want a URL like https://s3.example.com or host:port")
	}
	return nil
}

var keys = []key{
	{name: "type", help: "fs or s3; taken from the location when unset", check: checkOneOf(Types, false)},
	{name: "location", aliases: []string{"uri"}, help: "a folder path or s3://BUCKET/PREFIX", check: checkNonEmpty},
	{name: "access_key", s3Only: true, help: "S3 access key id", check: checkNonEmpty},
	{name: "secret_access_key", s3Only: true, secret: true, help: "S3 secret access key", check: checkNonEmpty},
	{name: "session_token", s3Only: true, secret: true, help: "S3 session token", check: checkNonEmpty},
	{name: "profile", s3Only: true, help: "AWS shared config profile", check: checkNonEmpty},
	{name: "region", s3Only: true, help: "S3 region", check: checkNonEmpty},
	{name: "endpoint", s3Only: true, help: "S3 endpoint URL or host:port", check: checkEndpoint},
	{name: "use_path_style", s3Only: true, help: "true or false", check: checkBool},
	{name: "use_tls", s3Only: true, help: "true or false (false: http to the endpoint)", check: checkBool},
	{name: "timeout", s3Only: true, help: "wait for an S3 answer, e.g. 30s (default)", check: checkTimeout},
	{name: "storage_class", s3Only: true, kinds: []Kind{Store, Destination}, help: "S3 storage class of what is written", check: checkOneOf(StorageClasses, true)},
	{name: "exclude", kinds: []Kind{Source}, list: true, help: "a pattern of entries (or keys) to leave out (repeatable)", check: checkPatterns},
	{name: "iexclude", kinds: []Kind{Source}, list: true, help: "as exclude, ignoring case (repeatable)", check: checkPatterns},
	{name: "exclude_file", kinds: []Kind{Source}, list: true, help: "a file of exclude patterns, one a line (repeatable)", check: checkNonEmptyLines},
	{name: "include", kinds: []Kind{Source}, list: true, s3Only: true, help: "back up only keys matching this pattern (repeatable)", check: checkPatterns},
	{name: "exclude_if_present", kinds: []Kind{Source}, list: true, fsOnly: true, help: "leave out folders holding an entry of this name (repeatable)", check: checkNonEmptyLines},
	{name: "exclude_larger_than", kinds: []Kind{Source}, help: "leave out files larger than this size (e.g. 500MiB)", check: checkSize},
	{name: "one_file_system", kinds: []Kind{Source}, fsOnly: true, help: "true: do not cross into other file systems", check: checkBool},
	{name: "passphrase_cmd", kinds: []Kind{Store}, help: "a command whose standard output is the passphrase", check: checkNonEmpty},
	{name: "passphrase_file", kinds: []Kind{Store}, help: "a file whose first line is the passphrase", check: checkNonEmpty},
	{name: "compression", kinds: []Kind{Store}, help: "how hard backups compress: " + strings.Join(format.LevelNames, ", ") + " (zstd's levels; default when unset)", check: checkOneOf(format.LevelNames, true)},
	{name: "object_lock_days", kinds: []Kind{Store}, s3Only: true, help: "create: lock every object the store writes for N days (S3 Object Lock, as --object-lock-days; 1 to 36500)", check: checkLockDays},
	{name: "object_lock_mode", kinds: []Kind{Store}, s3Only: true, help: "create: governance (default) or compliance, as --object-lock-mode", check: checkOneOf([]string{"governance", "compliance"}, true)},
	{name: "keep_last", kinds: []Kind{Store}, help: "forget's policy: keep the newest N snapshots (N or unlimited)", check: checkCount},
	{name: "keep_hourly", kinds: []Kind{Store}, help: "forget's policy: keep the newest snapshot of each of the last N hours that have one", check: checkCount},
	{name: "keep_daily", kinds: []Kind{Store}, help: "forget's policy: the same for the last N days", check: checkCount},
	{name: "keep_weekly", kinds: []Kind{Store}, help: "forget's policy: the same for the last N weeks", check: checkCount},
	{name: "keep_monthly", kinds: []Kind{Store}, help: "forget's policy: the same for the last N months", check: checkCount},
	{name: "keep_yearly", kinds: []Kind{Store}, help: "forget's policy: the same for the last N years", check: checkCount},
	{name: "keep_within", kinds: []Kind{Store}, help: "forget's policy: keep every snapshot within this span of the newest (e.g. 1y2m3d4h)", check: checkWithin},
	{name: "keep_tag", kinds: []Kind{Store}, list: true, help: "forget's policy: keep every snapshot with these tags (T or T1,T2; repeatable)", check: checkNonEmptyLines},
	{name: "group_by", kinds: []Kind{Store}, help: "forget's groups: a list of source, host and tags, or none (default source,host)", check: checkGroupBy},
	{name: "time_zone", kinds: []Kind{Store}, help: "forget's hours, days, weeks...: in this zone (e.g. Europe/Berlin, UTC; default the local zone)", check: checkZone},
}

// PolicyKeys are a store's keys that set forget's policy, not how to
// reach the store.
var PolicyKeys = []string{"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "keep_tag", "group_by", "time_zone"}

// CreateKeys are a store's keys that only create reads (they are kept
// in the store's own config once it exists).
var CreateKeys = []string{"object_lock_days", "object_lock_mode"}

// MaxLockDays is engine.MaxObjectLockDays (S3's own limit is 100 years).
const MaxLockDays = 36500

func checkLockDays(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n < 1 || n > MaxLockDays {
		return fmt.Errorf("want a number of days from 1 to %d", MaxLockDays)
	}
	return nil
}

func checkCount(v string) error {
	_, err := retention.ParseCount(v)
	return err
}

func checkWithin(v string) error {
	_, err := retention.ParseDuration(v)
	return err
}

func checkGroupBy(v string) error {
	_, err := retention.ParseGroupBy(v)
	return err
}

func checkZone(v string) error {
	if v == "" || v == "Local" {
		return errors.New("want a zone name such as Europe/Berlin or UTC")
	}
	if _, err := time.LoadLocation(v); err != nil {
		return errors.New("unknown time zone: want a name such as Europe/Berlin, America/New_York or UTC")
	}
	return nil
}

// FilterKeys are a source's keys that choose what to back up, not how
// to reach it.
var FilterKeys = []string{"exclude", "iexclude", "exclude_file", "include", "exclude_if_present", "exclude_larger_than", "one_file_system"}

func (k *key) appliesTo(kind Kind) bool { return k.kinds == nil || slices.Contains(k.kinds, kind) }

// lookup finds a key by name or alias for a kind.
func lookup(kind Kind, name string) *key {
	for i := range keys {
		k := &keys[i]
		if (k.name == name || slices.Contains(k.aliases, name)) && k.appliesTo(kind) {
			return k
		}
	}
	return nil
}

// Keys lists the keys a kind accepts, aliases in parentheses.
func Keys(kind Kind) []string {
	var out []string
	for _, k := range keys {
		if !k.appliesTo(kind) {
			continue
		}
		s := k.name
		if len(k.aliases) > 0 {
			s += " (" + strings.Join(k.aliases, ", ") + ")"
		}
		out = append(out, s)
	}
	return out
}

// KeyHelp returns "name: help" lines for a kind, for help texts.
func KeyHelp(kind Kind) string {
	var b strings.Builder
	for _, k := range keys {
		if !k.appliesTo(kind) {
			continue
		}
		name := k.name
		if len(k.aliases) > 0 {
			name += " (" + strings.Join(k.aliases, ", ") + ")"
		}
		fmt.Fprintf(&b, "   %-26s %s\n", name, k.help)
	}
	return b.String()
}

// IsSecret says a key's value must not be shown.
func IsSecret(name string) bool {
	for _, k := range keys {
		if k.name == name {
			return k.secret
		}
	}
	return false
}

// KeyError is an unknown key or a bad value; commands report it as a
// usage error.
type KeyError struct{ Msg string }

func (e *KeyError) Error() string { return e.Msg }

func keyErrorf(format string, a ...any) error { return &KeyError{fmt.Sprintf(format, a...)} }

// Canonical returns the canonical name of a key, or a KeyError listing
// the valid ones.
func Canonical(kind Kind, name string) (string, error) {
	k := lookup(kind, name)
	if k == nil {
		return "", keyErrorf("unknown key %q for a %s; valid keys: %s", name, kind, strings.Join(Keys(kind), ", "))
	}
	return k.name, nil
}

// Set validates and sets one key. A relative folder location is made
// absolute, and "~/" is the home folder, so the entry means the same
// from any working folder.
func (e Entry) Set(kind Kind, name, value string) error {
	k := lookup(kind, name)
	if k == nil {
		return keyErrorf("unknown key %q for a %s; valid keys: %s", name, kind, strings.Join(Keys(kind), ", "))
	}
	if err := k.check(value); err != nil {
		if k.secret {
			return keyErrorf("bad value for %s: %v", k.name, err)
		}
		return keyErrorf("bad value %q for %s: %v", value, k.name, err)
	}
	switch k.name {
	case "location":
		if !strings.Contains(value, "://") {
			p, err := absPath(value)
			if err != nil {
				return err
			}
			value = p
		}
	case "passphrase_file":
		p, err := absPath(value)
		if err != nil {
			return err
		}
		value = p
	case "exclude_file":
		var files []string
		for _, l := range Lines(value) {
			p, err := absPath(l)
			if err != nil {
				return err
			}
			files = append(files, p)
		}
		value = strings.Join(files, "\n")
	case "one_file_system":
		b, _ := strconv.ParseBool(value)
		value = strconv.FormatBool(b)
	case "storage_class":
		value = strings.ToUpper(value)
	case "compression":
		value = strings.ToLower(value)
	case "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly":
		n, _ := retention.ParseCount(value)
		value = retention.FormatCount(n)
	case "keep_within":
		d, _ := retention.ParseDuration(value)
		value = d.String()
	case "group_by":
		g, _ := retention.ParseGroupBy(value)
		value = g.String()
	case "use_path_style", "use_tls":
		b, _ := strconv.ParseBool(value)
		value = strconv.FormatBool(b)
	}
	if k.list {
		value = strings.Join(Lines(value), "\n")
	}
	e[k.name] = value
	return nil
}

// Apply sets the pairs in order, as create and set do: a list key given
// several times gets all the values (replacing what it held), any other
// key the last.
func (e Entry) Apply(kind Kind, pairs [][2]string) error {
	seen := map[string]bool{}
	for _, p := range pairs {
		k := lookup(kind, p[0])
		if k == nil {
			return keyErrorf("unknown key %q for a %s; valid keys: %s", p[0], kind, strings.Join(Keys(kind), ", "))
		}
		prev := e[k.name]
		if err := e.Set(kind, p[0], p[1]); err != nil {
			return err
		}
		if k.list && seen[k.name] {
			e[k.name] = prev + "\n" + e[k.name]
		}
		seen[k.name] = true
	}
	return nil
}

func absPath(p string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, rest)
	}
	return filepath.Abs(p)
}

// Unset removes one key.
func (e Entry) Unset(kind Kind, name string) error {
	k := lookup(kind, name)
	if k == nil {
		return keyErrorf("unknown key %q for a %s; valid keys: %s", name, kind, strings.Join(Keys(kind), ", "))
	}
	delete(e, k.name)
	return nil
}

// Type returns the entry's type: its type key, else what its location
// says.
func (e Entry) Type() string {
	if t := e["type"]; t != "" {
		return t
	}
	if strings.HasPrefix(e["location"], "s3://") {
		return "s3"
	}
	return "fs"
}

// Validate checks an entry as a whole: a location, a type that agrees
// with it, S3 keys only on S3 entries, and the passphrase sources used
// one at a time.
func (e Entry) Validate(kind Kind) error {
	loc := e["location"]
	if loc == "" {
		return keyErrorf("a %s needs a location (location=PATH or location=s3://BUCKET/PREFIX)", kind)
	}
	isS3 := strings.HasPrefix(loc, "s3://")
	switch {
	case e.Type() == "s3" && !isS3:
		return keyErrorf("type s3 needs a location s3://BUCKET/PREFIX (got %s)", s3io.Redact(loc))
	case e.Type() == "fs" && strings.Contains(loc, "://"):
		return keyErrorf("type fs needs a folder path as location (got %s)", s3io.Redact(loc))
	}
	if isS3 {
		bucket, _, _ := strings.Cut(strings.TrimPrefix(loc, "s3://"), "/")
		if bucket == "" {
			return keyErrorf("location %s: no bucket (s3://BUCKET/PREFIX)", s3io.Redact(loc))
		}
	}
	for name := range e {
		k := lookup(kind, name)
		if k == nil {
			return keyErrorf("unknown key %q for a %s; valid keys: %s", name, kind, strings.Join(Keys(kind), ", "))
		}
		if k.s3Only && !isS3 {
			return keyErrorf("%s applies to S3 locations only (this %s's location is the folder %s)", name, kind, loc)
		}
		if k.fsOnly && isS3 {
			return keyErrorf("%s applies to folders only (this %s's location is the bucket %s)", name, kind, loc)
		}
	}
	if (e["access_key"] == "") != (e["secret_access_key"] == "") {
		return keyErrorf("give both access_key and secret_access_key, or neither")
	}
	if e["passphrase_cmd"] != "" && e["passphrase_file"] != "" {
		return keyErrorf("give passphrase_cmd or passphrase_file, not both")
	}
	return nil
}

// Masked returns a copy of the entry fit to show: secrets replaced by
// asterisks, the access key id cut to its first four characters, and
// the secrets in a location's query masked (s3io.Redact).
func (e Entry) Masked() Entry {
	out := Entry{}
	for k, v := range e {
		switch {
		case IsSecret(k):
			v = "********"
		case k == "access_key" && len(v) > 4:
			v = v[:4] + "****"
		case k == "location":
			v = s3io.Redact(v)
		}
		out[k] = v
	}
	return out
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName checks an entry's name: letters, digits, '.', '_' and '-',
// starting with a letter or digit.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return keyErrorf("bad name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64)", name)
	}
	return nil
}

var keyShapeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// shownWord quotes a word taken for a key, unless it does not look like
// one: then it is likely a value cut from its key ("secret_access_key=
// VALUE"), perhaps a secret, and is not shown.
func shownWord(w string) string {
	if keyShapeRE.MatchString(w) {
		return strconv.Quote(w)
	}
	return "(a word that is no key name, not shown: a value follows its key, as KEY VALUE or KEY=VALUE)"
}

// ParseAssignments reads "key value" pairs and "key=value" words, in any
// mix: a word with '=' whose left side is a key is an assignment; any
// other word is a key whose value is the next word.
func ParseAssignments(kind Kind, args []string) ([][2]string, error) {
	var out [][2]string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if k, v, ok := strings.Cut(a, "="); ok {
			if lookup(kind, k) == nil {
				return nil, keyErrorf("unknown key %q for a %s; valid keys: %s", k, kind, strings.Join(Keys(kind), ", "))
			}
			out = append(out, [2]string{k, v})
			continue
		}
		if lookup(kind, a) == nil {
			return nil, keyErrorf("unknown key %s for a %s; valid keys: %s", shownWord(a), kind, strings.Join(Keys(kind), ", "))
		}
		if i+1 >= len(args) {
			return nil, keyErrorf("key %s has no value (write '%s VALUE' or '%s=VALUE')", a, a, a)
		}
		out = append(out, [2]string{a, args[i+1]})
		i++
	}
	return out, nil
}

// Lock takes an exclusive lock on the configuration file at path for a
// read-modify-write, waiting for another process's: two 'config set' at
// once must not lose one's change. It is an flock(2) on path+".lock" (in
// the same 0700 folder), which the kernel drops if the process dies.
// Load the file again after taking it.
func Lock(path string) (unlock func(), err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("config: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("config: lock %s: %w", f.Name(), err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
