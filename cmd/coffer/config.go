package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/internal/config"
	"github.com/coffer-backup/coffer/s3io"
)

// The configuration file in use: --config, COFFER_CONFIG, or the XDG
// default. The app's Before sets configFlag; loadConfig reads the file
// once per run.
var (
	configFlag   string
	configLoaded *config.File
	configWarn   io.Writer = os.Stderr
)

func configPath() (string, error) {
	if configFlag != "" {
		return configFlag, nil
	}
	return config.DefaultPath()
}

// loadConfig reads the configuration file (once), warning when others
// than its owner may read it.
func loadConfig() (*config.File, string, error) {
	path, err := configPath()
	if err != nil {
		return nil, "", err
	}
	if configLoaded != nil {
		return configLoaded, path, nil
	}
	f, loose, err := config.Load(path)
	if err != nil {
		return nil, path, err
	}
	if loose {
		fmt.Fprintf(configWarn, "coffer: warning: %s may be read by other users and may hold secrets (chmod 600 %s)\n", path, path)
	}
	configLoaded = f
	return f, path, nil
}

// lockConfig locks the configuration file for a read-modify-write and
// forgets any copy read before the lock: call loadConfig after it.
func lockConfig() (unlock func(), err error) {
	path, err := configPath()
	if err != nil {
		return nil, err
	}
	unlock, err = config.Lock(path)
	if err != nil {
		return nil, err
	}
	configLoaded = nil
	return unlock, nil
}

func saveConfig(f *config.File, path string) error {
	if err := f.Save(path); err != nil {
		return err
	}
	configLoaded = f
	return nil
}

// configError turns config's KeyError into a usage error (exit 2).
func configError(err error) error {
	if ke, ok := err.(*config.KeyError); ok {
		return usagef("%s", ke.Msg)
	}
	return err
}

// isName says a location is a reference to a named entry.
func isName(loc string) bool { return strings.HasPrefix(loc, "@") }

// resolveLocation turns "@name" into the location its entry describes,
// in the form the connectors take: a folder path, or s3://BUCKET/PREFIX
// with the entry's S3 settings as options. Anything else is returned as
// it is. The environment overrides an entry's settings (see
// s3EntryLocation).
func resolveLocation(kind config.Kind, loc string) (string, config.Entry, error) {
	if !isName(loc) {
		return loc, nil, nil
	}
	name := loc[1:]
	f, path, err := loadConfig()
	if err != nil {
		return "", nil, err
	}
	e, ok := f.Get(kind, name)
	if !ok {
		hint := fmt.Sprintf("coffer config %s create %s location=…", kind, name)
		if names := f.Names(kind); len(names) > 0 {
			hint = "known: @" + strings.Join(names, ", @") + "; or " + hint
		}
		return "", nil, usagef("%s: no %s named %s in %s (%s)", loc, kind, name, path, hint)
	}
	if err := e.Validate(kind); err != nil {
		return "", nil, usagef("%s in %s: %v (fix it with 'coffer config %s set %s …')", loc, path, err, kind, name)
	}
	if e.Type() != "s3" {
		verbosef("%s is the folder %s", loc, e["location"])
		return e["location"], e, nil
	}
	l, err := s3EntryLocation(e)
	if err != nil {
		return "", nil, usagef("%s in %s: %v", loc, path, err)
	}
	verbosef("%s is %s", loc, strings.SplitN(e["location"], "?", 2)[0])
	return l, e, nil
}

// The environment variables that override an S3 entry's settings, so the
// order is flags (options in a location's query) > environment > entry.
// Credentials come wholly from one place: any credential variable set
// overrides all of access_key, secret_access_key, session_token, profile.
var (
	envCredentials = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
	envRegion      = []string{"AWS_REGION", "AWS_DEFAULT_REGION"}
	envEndpoint    = []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}
)

func envSet(names []string) string {
	for _, n := range names {
		if os.Getenv(n) != "" {
			return n
		}
	}
	return ""
}

// s3EntryLocation writes an S3 entry as the s3:// location with options
// that s3.go's s3Client parses (s3io.ParseLocation), leaving out what the
// environment overrides. The result holds secrets: it goes only to the
// connectors, which name a location by its bucket and prefix alone, never
// into a message.
//
// If s3.go grows a constructor from a location and key/value options,
// this is the one place to call it instead.
func s3EntryLocation(e config.Entry) (string, error) {
	base, rawq, _ := strings.Cut(e["location"], "?")
	q, err := url.ParseQuery(rawq)
	if err != nil {
		return "", fmt.Errorf("location options: %v", err)
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if v := envSet(envCredentials); v != "" {
		if e["access_key"] != "" || e["profile"] != "" {
			verbosef("%s is set: the entry's credentials are not used", v)
		}
	} else {
		set("access_key", e["access_key"])
		set("secret_access_key", e["secret_access_key"])
		set("session_token", e["session_token"])
		set("profile", e["profile"])
	}
	if v := envSet(envRegion); v != "" && e["region"] != "" {
		verbosef("%s is set: the entry's region is not used", v)
	} else {
		set("region", e["region"])
	}
	// Endpoint and TLS are folded into one URL here, because the order in
	// which ParseLocation applies "endpoint" and "tls" is not fixed.
	if v := envSet(envEndpoint); v != "" {
		if e["endpoint"] != "" {
			verbosef("%s is set: the entry's endpoint is not used", v)
		}
		if e["use_tls"] == "false" {
			q.Set("tls", "false")
		}
	} else if ep := e["endpoint"]; ep != "" {
		hostPart := ep
		if i := strings.Index(ep, "://"); i >= 0 {
			hostPart = ep[i+3:]
		}
		switch e["use_tls"] {
		case "false":
			ep = "http://" + hostPart
		case "true":
			ep = "https://" + hostPart
		}
		q.Set("endpoint", ep)
	} else if e["use_tls"] == "false" {
		q.Set("tls", "false")
	}
	set("use_path_style", e["use_path_style"])
	set("storage_class", e["storage_class"])
	if e["timeout"] != "" && os.Getenv(s3io.TimeoutEnv) != "" {
		verbosef("%s is set: the entry's timeout is not used", s3io.TimeoutEnv)
	} else {
		set("timeout", e["timeout"])
	}
	loc := base
	if len(q) > 0 {
		loc += "?" + q.Encode()
	}
	if _, err := s3io.ParseLocation(loc); err != nil {
		// ParseLocation's message may quote the whole location, secrets
		// and all; say what is wrong without it.
		return "", fmt.Errorf("the S3 settings do not form a valid location %s (check each key with 'coffer config … show')", base)
	}
	return loc, nil
}

// checkEntry validates an entry the way it will be used: an S3 entry's
// settings through s3Options, as the S3 connectors read them.
func checkEntry(kind config.Kind, e config.Entry) error {
	if err := e.Validate(kind); err != nil {
		return err
	}
	if e.Type() != "s3" {
		return nil
	}
	kv := map[string]string{}
	for k, v := range e {
		switch {
		case k == "passphrase_cmd", k == "passphrase_file", k == "compression", slices.Contains(config.FilterKeys, k), slices.Contains(config.PolicyKeys, k), slices.Contains(config.CreateKeys, k):
		default:
			kv[k] = v
		}
	}
	if _, err := s3Options("", kv); err != nil {
		return &config.KeyError{Msg: err.Error()}
	}
	return nil
}

// storeLocation is the store's location as the connectors see it (for
// choosing defaults; errors surface when the store is opened).
func storeLocation(c *cli.Context) string {
	loc, _, err := resolveLocation(config.Store, c.String("store"))
	if err != nil {
		return ""
	}
	return loc
}

func configCmd() *cli.Command {
	var sub []*cli.Command
	for _, k := range config.Kinds {
		sub = append(sub, configKindCmd(k))
	}
	sub = append(sub, &cli.Command{
		Name:      "path",
		Usage:     "print the configuration file's path",
		UsageText: "coffer config path\n\nExample:\n   coffer --config ./coffer.json config path",
		Action: func(c *cli.Context) error {
			p, err := configPath()
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, p)
			return nil
		},
	})
	return &cli.Command{
		Name:  "config",
		Usage: "name stores, sources and destinations, to use as @name",
		UsageText: `coffer config store|source|destination create|set|unset|show|ls|rm NAME [KEY VALUE | KEY=VALUE …]

The configuration lives in $XDG_CONFIG_HOME/coffer/config.json (default
~/.config/coffer/config.json), or the file given by --config or
COFFER_CONFIG. It is written atomically, with mode 0600.

Settings are applied in this order, the first that says something wins:
command-line flags (and options in an s3:// location's query), then the
environment (COFFER_PASSPHRASE; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN and AWS_PROFILE together; AWS_REGION; AWS_ENDPOINT_URL;
COFFER_S3_TIMEOUT), then the entry.

Examples:
   coffer config store create mystore location=s3://my-kloset/prod access_key=AKIA… secret_access_key=…
   coffer config store set mystore passphrase_cmd 'pass show coffer/mystore'
   coffer config source create photos location=s3://photos-bucket/ region=eu-west-1
   coffer config destination create scratch location=/srv/restore
   coffer config store show mystore
   coffer at @mystore backup @photos`,
		Subcommands: sub,
	}
}

func configKindCmd(kind config.Kind) *cli.Command {
	k := string(kind)
	nameArg := func(c *cli.Context) (string, error) {
		if c.NArg() < 1 {
			return "", usagef("config %s %s: give the %s's NAME", k, c.Command.Name, k)
		}
		name := strings.TrimPrefix(c.Args().First(), "@")
		if err := config.CheckName(name); err != nil {
			return "", configError(err)
		}
		return name, nil
	}
	// edit loads the file, lets change modify the named entry, validates
	// it and saves the file.
	edit := func(c *cli.Context, mustExist bool, change func(e config.Entry) error) error {
		name, err := nameArg(c)
		if err != nil {
			return err
		}
		unlock, err := lockConfig()
		if err != nil {
			return err
		}
		defer unlock()
		f, path, err := loadConfig()
		if err != nil {
			return err
		}
		m := f.Entries(kind, true)
		e, ok := m[name]
		switch {
		case mustExist && !ok:
			return usagef("no %s named %s in %s (create it with 'coffer config %s create %s location=…')", k, name, path, k, name)
		case !mustExist && ok:
			return fmt.Errorf("a %s named %s exists already in %s (change it with 'coffer config %s set %s …'); nothing was changed", k, name, path, k, name)
		case !ok:
			e = config.Entry{}
		}
		next := config.Entry{}
		for key, v := range e {
			next[key] = v
		}
		if err := change(next); err != nil {
			return configError(err)
		}
		if err := checkEntry(kind, next); err != nil {
			return configError(err)
		}
		m[name] = next
		if err := saveConfig(f, path); err != nil {
			return err
		}
		verbosef("wrote %s", path)
		return nil
	}
	assign := func(c *cli.Context) func(e config.Entry) error {
		return func(e config.Entry) error {
			pairs, err := config.ParseAssignments(kind, c.Args().Tail())
			if err != nil {
				return err
			}
			if len(pairs) == 0 && c.Command.Name == "set" {
				return &config.KeyError{Msg: fmt.Sprintf("set: give KEY VALUE or KEY=VALUE; valid keys: %s", strings.Join(config.Keys(kind), ", "))}
			}
			return e.Apply(kind, pairs)
		}
	}
	keyHelp := "Keys:\n" + config.KeyHelp(kind)
	ex := map[config.Kind]string{
		config.Store:       "mystore location=s3://my-kloset/prod region=eu-west-1",
		config.Source:      "photos location=s3://photos-bucket/",
		config.Destination: "preview location=s3://restore-bucket/preview/",
	}[kind]
	return &cli.Command{
		Name:  k,
		Usage: fmt.Sprintf("manage named %ss (@NAME)", k),
		UsageText: fmt.Sprintf(`coffer config %s create|set|unset|show|ls|rm NAME …

%s
Examples:
   coffer config %s create %s
   coffer config %s ls`, k, keyHelp, k, ex, k),
		Subcommands: []*cli.Command{
			{
				Name:    "create",
				Aliases: []string{"add"},
				Usage:   fmt.Sprintf("create a named %s", k),
				UsageText: fmt.Sprintf(`coffer config %s create NAME location=LOCATION [KEY=VALUE | KEY VALUE …]

%s
Examples:
   coffer config %s create %s
   coffer config %s create local location ./backups`, k, keyHelp, k, ex, k),
				Action: func(c *cli.Context) error {
					if err := edit(c, false, assign(c)); err != nil {
						return err
					}
					if !quiet {
						fmt.Fprintf(c.App.ErrWriter, "coffer: created %s @%s\n", k, strings.TrimPrefix(c.Args().First(), "@"))
					}
					return nil
				},
			},
			{
				Name:         "set",
				BashComplete: completeConfigNames(kind),
				Usage:        fmt.Sprintf("set keys of a named %s", k),
				UsageText: fmt.Sprintf(`coffer config %s set NAME KEY VALUE
   coffer config %s set NAME KEY=VALUE [KEY=VALUE …]

%s
Examples:
   coffer config %s set NAME region eu-west-1
   coffer config %s set NAME endpoint=127.0.0.1:9000 use_tls=false use_path_style=true`, k, k, keyHelp, k, k),
				Action: func(c *cli.Context) error { return edit(c, true, assign(c)) },
			},
			{
				Name:         "unset",
				BashComplete: completeConfigNames(kind),
				Usage:        fmt.Sprintf("remove keys from a named %s", k),
				UsageText:    fmt.Sprintf("coffer config %s unset NAME KEY …\n\nExample:\n   coffer config %s unset NAME region", k, k),
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return usagef("config %s unset: give NAME and the keys to remove", k)
					}
					return edit(c, true, func(e config.Entry) error {
						for _, key := range c.Args().Tail() {
							if err := e.Unset(kind, key); err != nil {
								return err
							}
						}
						return nil
					})
				},
			},
			{
				Name:         "show",
				BashComplete: completeConfigNames(kind),
				Usage:        fmt.Sprintf("show a named %s, secrets masked", k),
				UsageText:    fmt.Sprintf("coffer config %s show [--json] NAME\n\nExample:\n   coffer config %s show NAME", k, k),
				Flags:        []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					f, path, err := loadConfig()
					if err != nil {
						return err
					}
					e, ok := f.Get(kind, name)
					if !ok {
						return usagef("no %s named %s in %s", k, name, path)
					}
					m := e.Masked()
					if c.Bool("json") {
						return printJSON(c.App.Writer, m)
					}
					keys := make([]string, 0, len(m))
					for key := range m {
						keys = append(keys, key)
					}
					sort.Strings(keys)
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					for _, key := range keys {
						// A list key's items, one a line, in the value column.
						fmt.Fprintf(tw, "%s\t%s\n", key, strings.ReplaceAll(m[key], "\n", "\n\t"))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "ls",
				Aliases:   []string{"list"},
				Usage:     fmt.Sprintf("list the named %ss", k),
				UsageText: fmt.Sprintf("coffer config %s ls [--json]\n\nExample:\n   coffer config %s ls", k, k),
				Flags:     []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					f, _, err := loadConfig()
					if err != nil {
						return err
					}
					if c.Bool("json") {
						out := map[string]config.Entry{}
						for _, n := range f.Names(kind) {
							e, _ := f.Get(kind, n)
							out[n] = e.Masked()
						}
						return printJSON(c.App.Writer, out)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					for _, n := range f.Names(kind) {
						e, _ := f.Get(kind, n)
						fmt.Fprintf(tw, "@%s\t%s\t%s\n", n, e.Type(), s3io.Redact(e["location"]))
					}
					return tw.Flush()
				},
			},
			{
				Name:         "rm",
				BashComplete: completeConfigNames(kind),
				Aliases:      []string{"remove"},
				Usage:        fmt.Sprintf("remove a named %s (only the name: nothing it points to)", k),
				UsageText:    fmt.Sprintf("coffer config %s rm NAME\n\nExample:\n   coffer config %s rm NAME", k, k),
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					if c.NArg() > 1 {
						return usagef("config %s rm takes one NAME", k)
					}
					unlock, err := lockConfig()
					if err != nil {
						return err
					}
					defer unlock()
					f, path, err := loadConfig()
					if err != nil {
						return err
					}
					m := f.Entries(kind, false)
					if _, ok := m[name]; !ok {
						return usagef("no %s named %s in %s", k, name, path)
					}
					delete(m, name)
					return saveConfig(f, path)
				},
			},
		},
	}
}
