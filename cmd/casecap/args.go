package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves a command's flags ahead of its arguments, so that
// `casecap validate plan.yaml --json` means what it says: urfave/cli v2
// (the project's CLI library) stops reading flags at the first argument,
// and people type flags after the plan at least as often as before it.
// A flag's value goes with it (unless the flag is a bool, or its value
// is given with "="); "--" ends flags, as usual; a token that looks like
// a flag but is no flag of the command moves too, so that the library
// refuses it (exit 2) instead of it being taken for a plan. Commands that
// parse their own flags (the hidden `agent`) are left alone.
func flagsFirst(app *cli.App, args []string) []string {
	// The command is the first argument after the global flags (and
	// their values).
	at := 1
	global := valueFlags(app.Flags)
	for at < len(args) && strings.HasPrefix(args[at], "-") && args[at] != "--" {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[at], "-"), "=")
		if global[name] && !hasValue {
			at++
		}
		at++
	}
	if at >= len(args) {
		return args
	}
	var cmd *cli.Command
	for _, c := range app.Commands {
		if c.HasName(args[at]) {
			cmd = c
		}
	}
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	takesValue := valueFlags(cmd.Flags)
	var flags, rest []string
	rest = append(rest, args[at+1:]...)
	var positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		flags = append(flags, a)
		if takesValue[name] && !hasValue && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	out := append(append([]string{}, args[:at+1]...), flags...)
	return append(out, positional...)
}

// valueFlags says which of the flags' names take a value (all but bools).
func valueFlags(fs []cli.Flag) map[string]bool {
	takesValue := map[string]bool{}
	for _, f := range fs {
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name] = !isBool
		}
	}
	return takesValue
}
