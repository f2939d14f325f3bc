package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/coffer-backup/coffer/engine/crypto"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/coffer-backup/coffer/internal/config"
)

// noPassphraseHelp says every way to give a passphrase.
const noPassphraseHelp = "set COFFER_PASSPHRASE, use --passphrase-file FILE, or give the store a passphrase_cmd or passphrase_file (coffer config store set NAME passphrase_cmd '…')"

// passphrase finds the passphrase of the store named by --store, in this
// order: --passphrase-file, COFFER_PASSPHRASE, the store entry's
// passphrase_cmd or passphrase_file (for a store given as @name), then a
// no-echo prompt when stdin is a terminal (twice when confirm). With none
// of them it fails at once rather than wait for input.
func passphrase(c *cli.Context, confirm bool) ([]byte, error) {
	if f := c.String("passphrase-file"); f != "" {
		verbosef("passphrase from --passphrase-file %s", f)
		return readPassphraseFile(f, "--passphrase-file")
	}
	if p, ok := os.LookupEnv("COFFER_PASSPHRASE"); ok {
		if p == "" {
			return nil, fmt.Errorf("COFFER_PASSPHRASE is set but empty")
		}
		verbosef("passphrase from COFFER_PASSPHRASE")
		return []byte(p), nil
	}
	if store := c.String("store"); isName(store) {
		_, e, err := resolveLocation(config.Store, store)
		if err != nil {
			return nil, err
		}
		if cmd := e["passphrase_cmd"]; cmd != "" && !completing {
			verbosef("passphrase from the passphrase_cmd of %s", store)
			return runPassphraseCmd(c.Context, store, cmd)
		}
		if f := e["passphrase_file"]; f != "" {
			verbosef("passphrase from the passphrase_file of %s", store)
			return readPassphraseFile(f, "passphrase_file of "+store)
		}
	}
	if completing {
		// Completion never asks, nor runs a command that might.
		return nil, errNoTerminal
	}
	p, err := promptPassphrase("passphrase: ", confirm)
	if errors.Is(err, errNoTerminal) {
		return nil, fmt.Errorf("no passphrase: %s (stdin is not a terminal, so coffer cannot ask)", noPassphraseHelp)
	}
	return p, err
}

var errNoTerminal = errors.New("stdin is not a terminal")

// completing is set while coffer answers the shell's completion: the
// passphrase then comes only from places that need no one (a file, the
// environment).
var completing bool

// promptPassphrase asks on the terminal without echo, twice when confirm.
func promptPassphrase(prompt string, confirm bool) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errNoTerminal
	}
	ask := func(prompt string) ([]byte, error) {
		restore := echoOff(fd) // before the prompt, which invites typing
		fmt.Fprint(os.Stderr, prompt)
		p, err := term.ReadPassword(fd)
		restore()
		fmt.Fprintln(os.Stderr)
		return p, err
	}
	p, err := ask(prompt)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("empty passphrase")
	}
	if confirm {
		q, err := ask("again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, q) {
			return nil, fmt.Errorf("the passphrases differ; nothing was changed")
		}
	}
	return p, nil
}

// firstLine is a passphrase as a file or command gives it: its first
// line, without the line end.
func firstLine(data []byte) []byte {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

func readPassphraseFile(path, what string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	line := firstLine(data)
	if len(line) == 0 {
		return nil, fmt.Errorf("%s %s: the first line is empty", what, path)
	}
	return line, nil
}

// runPassphraseCmd runs a store's passphrase_cmd with the shell. Its
// stdin and stderr are coffer's (so it may ask on the terminal); its
// first output line is the passphrase, and is never shown.
func runPassphraseCmd(ctx context.Context, store, command string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	var out bytes.Buffer
	cmd.Stdout = &limitedBuffer{buf: &out, max: 64 << 10}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("the passphrase_cmd of store %s failed (%v); its own messages, if any, are above", store, err)
	}
	line := firstLine(out.Bytes())
	if len(line) == 0 {
		return nil, fmt.Errorf("the passphrase_cmd of store %s printed no passphrase (its first output line is empty)", store)
	}
	return line, nil
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// newPassphrase finds a second passphrase, for passphrase add:
// --new-passphrase-file, COFFER_NEW_PASSPHRASE, or the terminal.
func newPassphrase(c *cli.Context) ([]byte, error) {
	if f := c.String("new-passphrase-file"); f != "" {
		return readPassphraseFile(f, "--new-passphrase-file")
	}
	if p, ok := os.LookupEnv("COFFER_NEW_PASSPHRASE"); ok {
		if p == "" {
			return nil, fmt.Errorf("COFFER_NEW_PASSPHRASE is set but empty")
		}
		return []byte(p), nil
	}
	p, err := promptPassphrase("new passphrase: ", true)
	if errors.Is(err, errNoTerminal) {
		return nil, fmt.Errorf("no new passphrase: set COFFER_NEW_PASSPHRASE or use --new-passphrase-file FILE (stdin is not a terminal, so coffer cannot ask)")
	}
	return p, err
}

func passphraseCmd() *cli.Command {
	return &cli.Command{
		Name:  "passphrase",
		Usage: "list, add and remove the passphrases (key slots) that open a store",
		UsageText: `coffer at STORE passphrase ls|add|rm …

Each passphrase unlocks its own key slot; all of them open the same data.
Adding or removing one rewrites only the store's config object.

Examples:
   coffer at @mystore passphrase ls
   COFFER_NEW_PASSPHRASE=… coffer at @mystore passphrase add
   coffer at @mystore passphrase rm 3fa2b1c0`,
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Aliases:   []string{"list"},
				Usage:     "list the key slots",
				UsageText: "coffer at STORE passphrase ls [--json]\n\nExample:\n   coffer at /backups passphrase ls",
				Flags:     []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					r, _, err := openRepo(c, repoOptions{})
					if err != nil {
						return err
					}
					slots, err := r.KeySlots(c.Context)
					if err != nil {
						return err
					}
					var out []slotOut
					for _, s := range slots {
						out = append(out, slotOut{s.ID, s.Created, s.KDF, s.Params, s.ID == r.SlotID()})
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, out)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tCREATED\tKDF\t\t")
					for _, s := range out {
						mark := ""
						if s.Current {
							mark = "(the passphrase given)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Created.Local().Format("2006-01-02 15:04:05"), s.KDF, kdfCost(s.Params), mark)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					// A slot made with an older default (64 MiB × 3, 32 MiB ×
					// 8) takes more memory to open than a new one, for no
					// more work per guess: say how to move it, once per slot.
					d := crypto.DefaultKDF
					for _, s := range out {
						p := s.Params
						if p.Memory > d.Memory && uint64(p.Memory)*uint64(p.Time) <= uint64(d.Memory)*uint64(d.Time) {
							fmt.Fprintf(c.App.ErrWriter, "coffer: key slot %s uses %s; new slots use %s, as much work per guess in less memory: 'passphrase add', then 'passphrase rm %s', moves it\n",
								s.ID, kdfCost(p), kdfCost(d), s.ID)
						}
					}
					return nil
				},
			},
			{
				Name:  "add",
				Usage: "add a passphrase",
				UsageText: `coffer at STORE passphrase add [--new-passphrase-file FILE]

The store is opened with a passphrase it knows (found as usual); the new
one comes from --new-passphrase-file, COFFER_NEW_PASSPHRASE, or the
terminal (asked twice).

Example:
   coffer at @mystore passphrase add --new-passphrase-file ~/.coffer-second`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "new-passphrase-file", Usage: "read the new passphrase from the first line of `FILE`", TakesFile: true},
					&cli.UintFlag{Name: "kdf-time", Value: uint(crypto.DefaultKDF.Time), Hidden: true},
					&cli.UintFlag{Name: "kdf-memory", Value: uint(crypto.DefaultKDF.Memory), Hidden: true, Usage: "KiB"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return usagef("passphrase add takes no arguments")
					}
					r, _, err := openRepo(c, repoOptions{})
					if err != nil {
						return err
					}
					np, err := newPassphrase(c)
					if err != nil {
						return err
					}
					kdf := crypto.DefaultKDF
					kdf.Time, kdf.Memory = uint32(c.Uint("kdf-time")), uint32(c.Uint("kdf-memory"))
					slot, err := r.AddKeySlot(c.Context, np, kdf)
					if err != nil {
						return fmt.Errorf("store %s: adding a passphrase: %w", shownStore(c), err)
					}
					if !quiet {
						fmt.Fprintf(c.App.Writer, "added key slot %s\n", slot.ID)
					}
					return nil
				},
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove a key slot (never the last one)",
				UsageText: "coffer at STORE passphrase rm ID\n\nExample:\n   coffer at @mystore passphrase rm 3fa2b1c0",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("passphrase rm takes one key slot ID (see 'passphrase ls')")
					}
					r, _, err := openRepo(c, repoOptions{})
					if err != nil {
						return err
					}
					id := c.Args().First()
					if err := r.RemoveKeySlot(c.Context, id); err != nil {
						return fmt.Errorf("store %s: %w", shownStore(c), err)
					}
					if !quiet {
						fmt.Fprintf(c.App.Writer, "removed key slot %s\n", id)
						if id == r.SlotID() {
							fmt.Fprintln(c.App.ErrWriter, "coffer: note: that was the slot of the passphrase just given; it no longer opens the store")
						}
					}
					return nil
				},
			},
		},
	}
}

// verbosity, set from -q and -v before a command runs.
var (
	quiet       bool
	verbose     bool
	verboseTo   io.Writer = os.Stderr
	verboseMu   sync.Mutex
	verboseSaid = map[string]bool{}
)

// verbosef prints a note under -v, each note once.
func verbosef(format string, a ...any) {
	if !verbose {
		return
	}
	msg := fmt.Sprintf(format, a...)
	verboseMu.Lock()
	defer verboseMu.Unlock()
	if !verboseSaid[msg] {
		verboseSaid[msg] = true
		fmt.Fprintf(verboseTo, "coffer: %s\n", msg)
	}
}

// kdfCost is a key slot's KDF cost as passphrase ls shows it.
func kdfCost(p crypto.KDFParams) string {
	if p.Time == 1 {
		return mib(p.Memory) + " × 1 pass"
	}
	return fmt.Sprintf("%s × %d passes", mib(p.Memory), p.Time)
}

// mib writes KiB of Argon2 memory in MiB when whole.
func mib(kib uint32) string {
	if kib%1024 == 0 {
		return fmt.Sprintf("%d MiB", kib/1024)
	}
	return fmt.Sprintf("%d KiB", kib)
}

// slotOut is a key slot as passphrase ls --json prints it.
type slotOut struct {
	ID      string           `json:"id"`
	Created time.Time        `json:"created"`
	KDF     string           `json:"kdf"`
	Params  crypto.KDFParams `json:"params"`
	Current bool             `json:"current"`
}
