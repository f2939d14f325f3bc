// Command coffer backs up folders (and, with the S3 connectors, buckets)
// into a deduplicated, compressed, encrypted snapshot store, and lists,
// reads, restores and checks what it holds.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// Exit codes, as documented in the README.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitPartial = 3 // finished, but some entries were left out
	// exitInterrupted: stopped by Ctrl-C or SIGTERM, like restic and the
	// shell's 128+SIGINT.
	exitInterrupted = 130
)

var version = "0.1.0-dev"

func main() {
	if p := os.Getenv("COFFER_CPUPROFILE"); p != "" { // for development
		f, err := os.Create(p)
		if err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	if p := os.Getenv("COFFER_MEMPROFILE"); p != "" { // for development
		go memProfiler(p)
	}
	if os.Getenv("GOGC") == "" {
		// coffer's heap is a few large, recycled buffers (packs, chunker
		// windows): collecting twice as often costs little CPU and keeps
		// peak memory well below the default's 2x of the live heap.
		debug.SetGCPercent(50)
	}
	code := mainCode()
	pprof.StopCPUProfile() // no-op unless started
	os.Exit(code)
}

// memProfiler writes a heap profile whenever the live heap reaches a new
// high, so the profile shows what was live at the peak.
func memProfiler(path string) {
	var peak uint64
	for range time.Tick(50 * time.Millisecond) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak {
			peak = ms.HeapInuse
			runtime.GC()
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}
}

func mainCode() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args, os.Stdout, os.Stderr)
}

// usageError marks errors in how coffer was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// partialError says a command finished but left entries out.
type partialError struct{ msg string }

func (e *partialError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	stderrTerminal = isTerminal(stderr)
	configWarn, verboseTo = stderr, stderr
	args, done := completeAt(args, stdout)
	if done {
		return exitOK
	}
	args, err := rewriteAt(args)
	if err != nil {
		fmt.Fprintf(stderr, "coffer: %v\n", err)
		return exitUsage
	}
	app := newApp(stdout, stderr)
	s3Memory = nil
	err = app.RunContext(ctx, args)
	reportMemory()
	reportIndexCache(stderr)
	if err == nil {
		return exitOK
	}
	var pe *partialError
	switch {
	case ctx.Err() != nil:
		// A signal stopped the command: whatever error the stop caused
		// (a cancelled request, a closed pipeline), it is an interruption,
		// and the command cleaned up as it unwound.
		fmt.Fprintln(stderr, "coffer: interrupted")
		return exitInterrupted
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "coffer: %v\n", err)
		return exitPartial
	case isUsageError(err):
		fmt.Fprintf(stderr, "coffer: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "coffer: %s\n", explain(err))
	return exitFailure
}

// valueFlags are the global flags that take a value, for rewriteAt.
var valueFlags = map[string]bool{"store": true, "passphrase-file": true, "config": true, "memory": true}

// rewriteAt turns the Plakar-style "coffer [flags] at STORE CMD …" into
// "coffer [flags] --store STORE CMD …".
func rewriteAt(args []string) ([]string, error) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) > 1 && a[0] == '-' {
			name := a[1:]
			if name[0] == '-' {
				name = name[1:]
			}
			if !containsEq(name) && valueFlags[name] {
				i++
			}
			continue
		}
		if a != "at" {
			return args, nil
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("at: missing the store (coffer at PATH COMMAND …)")
		}
		out := append([]string{}, args[:i]...)
		out = append(out, "--store", args[i+1])
		return append(out, args[i+2:]...), nil
	}
	return args, nil
}

func containsEq(s string) bool {
	for _, c := range s {
		if c == '=' {
			return true
		}
	}
	return false
}

func newApp(stdout, stderr *os.File) *cli.App {
	// -v is --verbose here; the version is --version or 'coffer version'.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
	app := &cli.App{
		Name:    "coffer",
		Usage:   "deduplicated, compressed, encrypted backups of folders and S3 buckets",
		Version: version,
		UsageText: `coffer [global options] at STORE COMMAND [options] [arguments]
   coffer --store STORE COMMAND …     (or COFFER_STORE=STORE coffer COMMAND …)
   coffer config …                    (named stores, sources, destinations)`,
		Description: `A store, a source or a destination is a folder, s3://BUCKET/PREFIX, or
@NAME, a named entry of the configuration (see 'coffer config').

The passphrase comes from, in this order: --passphrase-file,
COFFER_PASSPHRASE, the passphrase_cmd or passphrase_file of a store given
as @NAME, or a prompt when stdin is a terminal. Settings in general:
flags > environment > configuration entry.

Exit codes: 0 success; 1 failure; 2 usage error (a bad flag, argument,
name or config key); 3 finished, but some entries were skipped; 130
interrupted (Ctrl-C or SIGTERM).

Examples:
   coffer config store create mystore location=s3://my-kloset/prod
   coffer at @mystore create
   coffer at /backups backup ~/photos
   coffer at /backups ls
   coffer at /backups ls -recursive latest:/2024
   coffer at /backups cat latest:/2024/a.jpg > a.jpg
   coffer at /backups restore -to ./restored latest:/2024
   coffer at /backups check
   source <(coffer completion bash)`,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		EnableBashCompletion:   true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "store", EnvVars: []string{"COFFER_STORE"}, Usage: "the store: a folder, s3://BUCKET/PREFIX or @NAME", TakesFile: true},
			&cli.StringFlag{Name: "passphrase-file", Usage: "read the passphrase from the first line of `FILE`", TakesFile: true},
			&cli.StringFlag{Name: "config", EnvVars: []string{"COFFER_CONFIG"}, Usage: "the configuration `FILE` (default: $XDG_CONFIG_HOME/coffer/config.json)", TakesFile: true},
			quietFlag(), verboseFlag(), memoryFlag(),
		},
		Before: func(c *cli.Context) error {
			configFlag = c.String("config")
			configLoaded = nil
			return setVerbosity(c)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors
		OnUsageError:   onUsageError,
		Commands: []*cli.Command{
			createCmd(), backupCmd(), lsCmd(), catCmd(), restoreCmd(), checkCmd(), infoCmd(), mountCmd(), tagCmd(), forgetCmd(), rmCmd(), pruneCmd(), unlockCmd(), repairCmd(),
			passphraseCmd(), configCmd(), completionCmd(), versionCmd(), helpCmd(), genDocsCmd(),
		},
		Action: noCommand,
	}
	addSelectFlags(app.Commands)
	for _, cmd := range app.Commands {
		addCommonFlags(cmd)
	}
	setOnUsageError(app.Commands)
	setNoCommand(app.Commands)
	return app
}

func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors and asked-for output (--json)"}
}

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say where settings and the passphrase came from"}
}

// addCommonFlags gives every command -q and -v too, so they work before
// or after the command's name.
func addCommonFlags(cmd *cli.Command) {
	if len(cmd.Subcommands) > 0 {
		for _, sub := range cmd.Subcommands {
			addCommonFlags(sub)
		}
		return
	}
	cmd.Flags = append(cmd.Flags, quietFlag(), verboseFlag())
	if cmd.Name == "backup" || cmd.Name == "restore" {
		cmd.Flags = append(cmd.Flags, memoryFlag())
	}
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if err := setVerbosity(c); err != nil {
			return err
		}
		if err := setMemory(c); err != nil {
			return err
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
}

// setVerbosity reads -q and -v wherever they were given.
func setVerbosity(c *cli.Context) error {
	quiet, verbose = false, false
	for _, x := range c.Lineage() {
		quiet = quiet || x.Bool("quiet")
		verbose = verbose || x.Bool("verbose")
	}
	if quiet && verbose {
		return usagef("-q and -v contradict each other: give one")
	}
	return nil
}
