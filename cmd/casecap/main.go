// Command casecap runs coordinated packet captures on many hosts at once.
//
// This package only turns flags into options and calls into the packages
// that do the work; exit codes are decided in one place, exitCode.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/plans"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Each command decides what Ctrl-C, SIGTERM and SIGHUP mean (run: stop
	// together, then stop waiting); see watchSignals and cancelOnSignal.
	// A reader of casecap's output that goes away (casecap ... | head) must
	// not kill it half-way, with agents armed or files half-collected: a
	// write to a broken pipe fails instead, and the work goes on.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it with their own writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if isExtcap(args[1:]) {
		return runExtcap(ctx, args[1:], stdout, stderr)
	}
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, flagsFirst(app, args))
	var (
		invalid *plans.Error
		shown   invalidPlan
	)
	switch {
	case err == nil:
	case errors.As(err, &shown): // already printed
	case errors.As(err, new(runtimeError)):
		fmt.Fprintln(stderr, "casecap: not everything succeeded; see the errors above")
	case err.Error() == "": // an exit code alone: the message was printed
	case errors.As(err, &invalid):
		fmt.Fprintf(stderr, "%v\ncasecap: the plan is invalid (%s); no host was touched\n", invalid, problems(len(invalid.Diags)))
	default:
		fmt.Fprintln(stderr, "casecap:", err)
	}
	return exitCode(err)
}

// Exit codes (docs/design.md section 2).
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure on at least one host or capture
	exitUsage   = 2 // bad usage or an invalid plan; no host was touched
)

// usageError marks errors in how casecap was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitCode is the one place where errors become exit codes.
func exitCode(err error) int {
	var (
		usage   usageError
		invalid *plans.Error
		shown   invalidPlan
		coded   cli.ExitCoder
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &coded):
		return coded.ExitCode()
	case errors.As(err, &usage), errors.As(err, &invalid), errors.As(err, &shown):
		return exitUsage
	}
	return exitFailure
}

func init() {
	// --version only: -v is every command's --verbose.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "casecap",
		Usage:     "coordinated packet captures on many hosts at once",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Description: "casecap reads a capture plan (YAML), connects to every host over SSH, starts every\n" +
			"capture at one agreed instant, stops them together and collects the files, verified,\n" +
			"into a local case folder. See README.md and examples/.",
		HideHelpCommand: true,
		Flags:           []cli.Flag{cpuProfileFlag()},
		Before:          startProfile,
		After:           stopProfile,
		Commands: []*cli.Command{
			validateCommand(),
			runCommand(),
			startCommand(),
			statusCommand(),
			stopCommand(),
			triggerCommand(),
			liveCommand(),
			collectCommand(),
			mergeCommand(),
			analyzeCommand(),
			targetsCommand(),
			pointsCommand(),
			agentCommand(),
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		// Reached only when no command matched.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Sprintf("unknown command %q; see casecap --help", c.Args().First())}
			}
			_ = cli.ShowAppHelp(c)
			return usageError{"a command is needed"}
		},
	}
}

// jsonFlag is on every command: machine-readable output on stdout.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON on stdout"}
}

// planArg returns the single PLAN argument.
func planArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageError{fmt.Sprintf("%s needs exactly one PLAN file, got %d arguments", c.Command.FullName(), c.NArg())}
	}
	return c.Args().First(), nil
}

// planCommand builds a command that takes one PLAN argument.
func planCommand(name, usage, description string, action func(c *cli.Context, plan string) error, flags ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:        name,
		Usage:       usage,
		Description: description,
		ArgsUsage:   "PLAN",
		Flags:       append([]cli.Flag{jsonFlag()}, flags...),
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		Action: func(c *cli.Context) error {
			plan, err := planArg(c)
			if err != nil {
				return err
			}
			return action(c, plan)
		},
	}
}

// problems counts problems in words: "1 problem", "3 problems".
func problems(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}
