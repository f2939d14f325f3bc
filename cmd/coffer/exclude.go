package main

import (
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/internal/config"
	"github.com/coffer-backup/coffer/s3io"
)

// patternList is a repeatable flag whose values are kept whole: a
// StringSliceFlag would cut a pattern at its commas.
type patternList []string

func (p *patternList) Set(v string) error { *p = append(*p, v); return nil }
func (p *patternList) String() string {
	if p == nil {
		return ""
	}
	return strings.Join(*p, " ")
}

func listFlag(name, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Value: &patternList{}, Usage: usage}
}

func flagList(c *cli.Context, name string) []string {
	if v, ok := c.Generic(name).(*patternList); ok && v != nil {
		return *v
	}
	return nil
}

// excludeFlags are backup's exclusion flags; the config keys of a named
// source are the same names with "_" (docs: README "Choosing what to back
// up").
func excludeFlags() []cli.Flag {
	return []cli.Flag{
		listFlag("exclude", "leave out entries (bucket keys) matching a gitignore-style `PATTERN` (repeatable)"),
		listFlag("iexclude", "as --exclude, ignoring case: `PATTERN` (repeatable)"),
		listFlag("exclude-file", "read exclude patterns from `FILE`, one a line, # comments (repeatable)"),
		listFlag("include", "buckets: back up only keys matching `PATTERN`, or prefix:P for a plain key prefix (repeatable)"),
		listFlag("exclude-if-present", "folders: leave out folders holding an entry named `NAME`, e.g. .nobackup (repeatable)"),
		&cli.StringFlag{Name: "exclude-larger-than", Usage: "leave out files (keys) larger than `SIZE`, e.g. 500MiB"},
		&cli.BoolFlag{Name: "one-file-system", Usage: "folders: stay on the source's file system (mount points are kept empty)"},
	}
}

// filterFor builds the filter of one source from the flags and its
// named entry (e, nil for a plain location): list flags add to the
// entry's lists, --exclude-larger-than and --one-file-system override
// its value. It returns nil when nothing is filtered. Every error is a
// usage error, found before any backup starts.
func filterFor(c *cli.Context, given, loc string, e config.Entry) (*backup.Filter, error) {
	bucket := isS3(loc)
	if bucket {
		for _, fl := range []string{"exclude-if-present", "one-file-system"} {
			if c.IsSet(fl) {
				return nil, usagef("--%s applies to folders only, and %s is a bucket (name the folders in their own backup command, or give the setting to their named sources)", fl, given)
			}
		}
	} else if c.IsSet("include") {
		return nil, usagef("--include applies to buckets only, and %s is a folder (use --exclude, with !PATTERN to keep some of what it excludes)", given)
	}
	list := func(flag, key string) []string {
		return append(e.List(key), flagList(c, flag)...)
	}
	f := &backup.Filter{}
	used := false
	exclude := list("exclude", "exclude")
	for _, file := range list("exclude-file", "exclude_file") {
		pats, err := backup.ReadPatternFile(file)
		if err != nil {
			return nil, usagef("%s: %v", given, err)
		}
		exclude = append(exclude, pats...)
	}
	if err := f.Exclude.AddAll(exclude, false); err != nil {
		return nil, usagef("%s: --exclude: %v", given, err)
	}
	if err := f.Exclude.AddAll(list("iexclude", "iexclude"), true); err != nil {
		return nil, usagef("%s: --iexclude: %v", given, err)
	}
	if err := f.Include.AddAll(list("include", "include"), false); err != nil {
		return nil, usagef("%s: --include: %v", given, err)
	}
	used = !f.Exclude.Empty() || !f.Include.Empty()
	f.IfPresent = list("exclude-if-present", "exclude_if_present")
	size := e["exclude_larger_than"]
	if c.IsSet("exclude-larger-than") {
		size = c.String("exclude-larger-than")
	}
	if size != "" {
		n, err := humanize.ParseBytes(size)
		if err != nil {
			return nil, usagef("%s: --exclude-larger-than %q: want a size like 500MiB, 2GB or 1048576", given, size)
		}
		f.LargerThan = n
	}
	f.OneFileSystem = e["one_file_system"] == "true"
	if c.IsSet("one-file-system") {
		f.OneFileSystem = c.Bool("one-file-system")
	}
	if !used && len(f.IfPresent) == 0 && f.LargerThan == 0 && !f.OneFileSystem {
		return nil, nil
	}
	verbosef("%s: excluding %d patterns, %d include patterns, if present %q, larger than %d bytes, one file system %v",
		given, len(exclude)+len(list("iexclude", "iexclude")), len(list("include", "include")), f.IfPresent, f.LargerThan, f.OneFileSystem)
	return f, nil
}

// setFilter gives a source its filter.
func setFilter(src backup.Source, f *backup.Filter) {
	switch s := src.(type) {
	case *backup.Folder:
		s.Filter = f
	case *s3io.Source:
		s.Filter = f
	}
}
