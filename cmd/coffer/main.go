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
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// partialError says a command finished but left entries out.
type partialError struct{ msg string }

func (e *partialError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	args, err := rewriteAt(args)
	if err != nil {
		fmt.Fprintf(stderr, "coffer: %v\n", err)
		return exitUsage
	}
	app := newApp(stdout, stderr)
	err = app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var pe *partialError
	switch {
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "coffer: %v\n", err)
		return exitPartial
	case errors.As(err, &ue), isFlagError(err):
		fmt.Fprintf(stderr, "coffer: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "coffer: %s\n", explain(err))
	return exitFailure
}

// valueFlags are the global flags that take a value, for rewriteAt.
var valueFlags = map[string]bool{"store": true, "passphrase-file": true}

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
	return &cli.App{
		Name:    "coffer",
		Usage:   "deduplicated, compressed, encrypted backups of folders and S3 buckets",
		Version: version,
		UsageText: `coffer [global options] at STORE COMMAND [options] [arguments]
   coffer --store STORE COMMAND …     (or COFFER_STORE=STORE coffer COMMAND …)`,
		Description: `A store is a folder (or, with the S3 connectors, s3://bucket/prefix).
The passphrase comes from --passphrase-file, COFFER_PASSPHRASE, or a
prompt on the terminal.

Examples:
   coffer at /backups create
   coffer at /backups backup ~/photos
   coffer at /backups ls
   coffer at /backups ls -recursive latest:/2024
   coffer at /backups cat latest:/2024/a.jpg > a.jpg
   coffer at /backups restore -to ./restored latest:/2024
   coffer at /backups check`,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "store", EnvVars: []string{"COFFER_STORE"}, Usage: "the store: a folder path", TakesFile: true},
			&cli.StringFlag{Name: "passphrase-file", Usage: "read the passphrase from the first line of `FILE`", TakesFile: true},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors
		Commands: []*cli.Command{
			createCmd(), backupCmd(), lsCmd(), catCmd(), restoreCmd(), checkCmd(), infoCmd(), mountCmd(), versionCmd(),
		},
	}
}
