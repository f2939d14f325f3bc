package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// helpCmd is 'coffer help [COMMAND …]': the same text as --help.
func helpCmd() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show the help of coffer or of a command",
		UsageText: "coffer help [COMMAND [SUBCOMMAND …]]",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowAppHelp(c)
			}
			args := c.Args().Slice()
			cmds := c.App.Commands
			for i, name := range args {
				cmd := findCommand(cmds, name)
				if cmd == nil {
					return unknownCommand(strings.Join(args[:i+1], " "), name, cmds)
				}
				cmds = cmd.Subcommands
			}
			// Print the command's help as its own --help does.
			return c.App.RunContext(c.Context, append(append([]string{c.App.Name}, args...), "--help"))
		},
	}
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// unknownCommand is the usage error for a command name that is not one,
// with the closest of cmds when one is close.
func unknownCommand(what, name string, cmds []*cli.Command) error {
	best, bestD := "", 3 // suggest only names within 2 edits
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, n := range c.Names() {
			if d := editDistance(name, n); d < bestD || (strings.HasPrefix(n, name) && best == "") {
				best, bestD = n, min(d, bestD)
			}
		}
	}
	if best != "" {
		return usagef("unknown command %q: did you mean %q? ('coffer help' lists the commands)", what, best)
	}
	return usagef("unknown command %q ('coffer help' lists the commands)", what)
}

// noCommand is the Action of the app and of commands that only group
// subcommands: with no argument it shows the help and fails (a command
// was expected); with one it names the unknown command.
func noCommand(c *cli.Context) error {
	group := c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name
	cmds, what := c.App.Commands, ""
	if group {
		cmds, what = c.Command.Subcommands, c.Command.FullName()+" "
	}
	if c.NArg() == 0 {
		if group {
			cli.ShowSubcommandHelp(c)
		} else {
			cli.ShowAppHelp(c)
		}
		return usagef("no command given: the commands are listed above")
	}
	return unknownCommand(what+c.Args().First(), c.Args().First(), cmds)
}

// setNoCommand gives every command that only groups subcommands the
// noCommand action.
func setNoCommand(cmds []*cli.Command) {
	for _, c := range cmds {
		if len(c.Subcommands) > 0 {
			if c.Action == nil {
				c.Action = noCommand
			}
			setNoCommand(c.Subcommands)
		}
	}
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
