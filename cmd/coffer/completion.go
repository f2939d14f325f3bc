package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine/tree"
	"github.com/coffer-backup/coffer/internal/config"
)

// Shell completion: the scripts below ask coffer itself, by running the
// words typed so far followed by --generate-bash-completion (urfave/cli's
// completion mode), and fall back to file names. coffer answers with
// commands, flags, and the @names of the configuration where a store,
// source or destination goes.

const completeFlag = "--generate-bash-completion"

const bashCompletion = `# bash completion for coffer.
# Load it with: source <(coffer completion bash)
# or install it: coffer completion bash > ~/.local/share/bash-completion/completions/coffer
_coffer_complete() {
    local line=${COMP_LINE:0:COMP_POINT}
    local -a words
    read -r -a words <<<"$line"
    local cur=""
    if [[ $line != *[[:space:]] ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    local -a args=("${words[@]:1}")
    [[ $cur == -* ]] && args+=("$cur")
    local IFS=$'\n'
    local out
    out=$(COFFER_COMPLETE_WORD="$cur" "${words[0]}" "${args[@]}" --generate-bash-completion 2>/dev/null)
    COMPREPLY=($(compgen -W "$out" -- "$cur"))
    # Bash replaces only what follows the last character of the word that
    # is in COMP_WORDBREAKS (usually '@', ':' and '=', but setups differ:
    # without '@' there, bash keeps "@name" whole): reply with that part.
    local i pre=""
    for (( i=${#cur}-1; i>=0; i-- )); do
        if [[ $COMP_WORDBREAKS == *"${cur:i:1}"* ]]; then
            pre=${cur:0:i+1}
            break
        fi
    done
    if [[ -n $pre ]]; then
        COMPREPLY=("${COMPREPLY[@]#"$pre"}")
    fi
}
complete -o default -o bashdefault -F _coffer_complete coffer
`

const zshCompletion = `#compdef coffer
# zsh completion for coffer.
# Load it with: source <(coffer completion zsh)
# or install it as _coffer in a folder of $fpath.
_coffer() {
    local cur=${words[CURRENT]}
    local -a args
    args=("${(@)words[2,CURRENT-1]}")
    [[ $cur == -* ]] && args+=("$cur")
    local -a opts
    opts=("${(@f)$(COFFER_COMPLETE_WORD="$cur" ${words[1]} "${(@)args}" --generate-bash-completion 2>/dev/null)}")
    opts=(${opts:#})
    if (( ${#opts} )); then
        compadd -a opts && return 0
    fi
    _files
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _coffer "$@"
else
    compdef _coffer coffer
fi
`

func completionCmd() *cli.Command {
	return &cli.Command{
		Name:  "completion",
		Usage: "print the shell completion script for bash or zsh",
		UsageText: `coffer completion bash|zsh

It completes commands, flags, and @names from the configuration.

Examples:
   source <(coffer completion bash)        # in ~/.bashrc
   source <(coffer completion zsh)         # in ~/.zshrc, after compinit
   coffer completion zsh > "${fpath[1]}/_coffer"`,
		BashComplete: func(c *cli.Context) { fmt.Fprintln(c.App.Writer, "bash\nzsh") },
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion takes one shell: bash or zsh")
			}
			switch c.Args().First() {
			case "bash":
				_, err := io.WriteString(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := io.WriteString(c.App.Writer, zshCompletion)
				return err
			}
			return usagef("completion: unknown shell %q: want bash or zsh", c.Args().First())
		},
	}
}

// completeAt answers completion requests that the app cannot: the word
// after "at" (or --store), which is a store, which rewriteAt would
// mangle. It reports whether it answered; if not, it returns the
// arguments for the app without a trailing flag being typed (a partial
// flag or one missing its value makes urfave/cli's completion mode
// crash; the BashComplete functions read it from os.Args instead).
func completeAt(args []string, w io.Writer) ([]string, bool) {
	if len(args) < 3 || args[len(args)-1] != completeFlag {
		return args, false
	}
	prev := args[len(args)-2]
	switch prev {
	case "at", "--store", "-store":
		printNames(w, args, config.Store, "@")
		return nil, true
	case "--config", "-config", "--passphrase-file", "-passphrase-file":
		return nil, true // a file: the shell's own completion
	}
	if strings.HasPrefix(prev, "-") {
		args = append(append([]string{}, args[:len(args)-2]...), completeFlag)
	}
	return args, false
}

// printNames prints prefix+name for every entry of a kind, reading the
// configuration the raw arguments name (the app's Before does not run in
// completion mode).
func printNames(w io.Writer, args []string, kind config.Kind, prefix string) {
	configFlag = os.Getenv("COFFER_CONFIG")
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			configFlag = v
		} else if (a == "--config" || a == "-config") && i+1 < len(args) {
			configFlag = args[i+1]
		}
	}
	configLoaded = nil
	configWarn = io.Discard
	f, _, err := loadConfig()
	if err != nil {
		return
	}
	for _, n := range f.Names(kind) {
		fmt.Fprintln(w, prefix+n)
	}
}

// completeNames is a BashComplete that offers the @names of a kind, and
// flags after a "-".
func completeNames(kind config.Kind) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		prev := ""
		if len(os.Args) > 2 {
			prev = os.Args[len(os.Args)-2]
		}
		switch {
		case prev == "-to" || prev == "--to":
			printNames(c.App.Writer, os.Args, config.Destination, "@")
		case strings.HasPrefix(prev, "-"):
			for _, f := range c.Command.Flags {
				if bf, ok := f.(*cli.BoolFlag); ok && bf.Hidden {
					continue
				}
				fmt.Fprintln(c.App.Writer, "--"+f.Names()[0])
			}
		case kind != "":
			printNames(c.App.Writer, os.Args, kind, "@")
		}
	}
}

// completeConfigNames offers, for config KIND show/set/unset/rm, the
// names of that kind as the first argument, and keys after it.
func completeConfigNames(kind config.Kind) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if c.NArg() == 0 {
			printNames(c.App.Writer, os.Args, kind, "")
			return
		}
		for _, k := range config.Keys(kind) {
			k, _, _ = strings.Cut(k, " ")
			fmt.Fprintln(c.App.Writer, k)
		}
	}
}

// completeRefs is the BashComplete of commands that take snapshot
// references (ID[:/PATH]): flags after a "-"; else, from the store, when
// its passphrase needs no one (COFFER_PASSPHRASE, --passphrase-file, a
// named store's passphrase_file), "latest" and the snapshots' short ids,
// or, for a word with a ":", the entries of the folder it names
// ("latest:/d" → "latest:/docs/"). Metadata comes through the disk cache,
// so a completion after the first costs no download.
func completeRefs(c *cli.Context) {
	prev := ""
	if len(os.Args) > 2 {
		prev = os.Args[len(os.Args)-2]
	}
	if strings.HasPrefix(prev, "-") {
		completeNames("")(c)
		return
	}
	word := os.Getenv("COFFER_COMPLETE_WORD")
	completing, quiet = true, true
	r, _, err := openRepo(c, repoOptions{diskCache: true})
	if err != nil {
		fmt.Fprintln(c.App.Writer, "latest")
		return
	}
	ref, p, hasPath := strings.Cut(word, ":")
	if !hasPath {
		fmt.Fprintln(c.App.Writer, "latest")
		snaps, err := r.Snapshots(c.Context)
		if err != nil {
			return
		}
		for _, sn := range snaps {
			fmt.Fprintln(c.App.Writer, sn.ID.Short())
		}
		return
	}
	dir := "/"
	if i := strings.LastIndex(p, "/"); i > 0 {
		dir = p[:i+1]
	}
	sn, err := r.FindSnapshot(c.Context, ref)
	if err != nil || r.LoadIndex(c.Context) != nil {
		return
	}
	n, err := r.ResolvePath(c.Context, sn, strings.TrimSuffix(dir, "/"), false) // "" is the root
	if err != nil || n.Type != tree.TypeDir {
		return
	}
	d, err := r.LoadDir(c.Context, n.Subtree)
	if err != nil {
		return
	}
	it := r.Iter(d)
	for {
		e, ok, err := it.Next(c.Context)
		if err != nil || !ok {
			return
		}
		name := ref + ":" + dir + e.Name
		if e.Type == tree.TypeDir {
			name += "/"
		}
		fmt.Fprintln(c.App.Writer, name)
	}
}
