package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine"
)

// onUsageError is the OnUsageError of the app and of every command:
// urfave/cli calls it when a command line's flags do not parse (an
// unknown flag, a missing or bad value, bad syntax). It prints what cli
// prints without one, the error and the command's help, and marks the
// error as a usage error.
func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	fmt.Fprintf(c.App.Writer, "Incorrect Usage: %s\n\n", err)
	switch {
	case c.Command != nil && c.Command.HideHelp:
	case isSubcommand:
		_ = cli.ShowCommandHelp(c.Lineage()[1], c.Command.Name)
	default:
		_ = cli.ShowAppHelp(c)
	}
	return &usageError{err}
}

// setOnUsageError gives cmds, their subcommands and the help command cli
// adds beside subcommands onUsageError.
func setOnUsageError(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		setOnUsageError(cmd.Subcommands)
	}
	cliHelpCommand.OnUsageError = onUsageError
}

// cliHelpCommand is the "help" subcommand urfave/cli adds to every
// command with subcommands: one value, which an app's Setup adds too.
var cliHelpCommand = func() *cli.Command {
	app := &cli.App{}
	app.Setup()
	return app.Command("help")
}()

// cliUsageErrors are the types of the errors urfave/cli returns for a bad
// command line without calling OnUsageError: a required flag left out,
// and an exit error, which cli's help returns for a command that does not
// exist ("No help topic for …") and coffer never makes. cli exports
// neither type, so they are taken from cli: cli.Exit makes the one, an
// app run without its required flag returns the other.
var cliUsageErrors = []reflect.Type{
	reflect.TypeOf(cli.Exit("", exitUsage)),
	reflect.TypeOf((&cli.App{
		Flags:          []cli.Flag{&cli.BoolFlag{Name: "x", Required: true}},
		Action:         func(*cli.Context) error { return nil },
		Writer:         io.Discard,
		ErrWriter:      io.Discard,
		ExitErrHandler: func(*cli.Context, error) {},
	}).Run([]string{"probe"})),
}

// isUsageError says err is about how coffer was called: a usageError, or
// one of cli's own.
func isUsageError(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return true
	}
	// A snapshot reference that cannot name one is a bad argument, like a
	// missing one (ls xyz and cat latest exit alike).
	if errors.Is(err, engine.ErrBadSnapshotRef) {
		return true
	}
	for _, t := range cliUsageErrors {
		if t != nil && errors.As(err, reflect.New(t).Interface()) {
			return true
		}
	}
	return false
}

// explain turns an engine error into a sentence that says what to do.
func explain(err error) string {
	var nf *engine.NewerFormatError
	switch {
	case errors.Is(err, engine.ErrWrongPassphrase):
		return err.Error() + " (check COFFER_PASSPHRASE or --passphrase-file)"
	case errors.As(err, &nf):
		return err.Error()
	case errors.Is(err, syscall.ENOSPC):
		return err.Error() + " (the disk is full: free space and run the command again; nothing already stored was changed)"
	case errors.Is(err, fs.ErrPermission):
		return err.Error() + " (permission denied: run as a user who may read/write it)"
	}
	return err.Error()
}
