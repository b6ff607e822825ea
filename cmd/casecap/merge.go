package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/analysis/merge"
	"github.com/casecap/casecap/internal/atomicfile"
)

// mergedFile is merge's output in the case folder unless -o says otherwise.
const mergedFile = "merged.pcapng"

// mergeCommand: casecap merge CASE_DIR [-o FILE].
func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "write a case's captures as one pcapng, in time order, on casecap's clock",
		ArgsUsage: "CASE_DIR",
		Description: "Every collected capture of the case folder becomes an interface of one pcapng named after its\n" +
			"file (esxi01.app01.eth0.VnicTxRx), its timestamps moved by its host's measured clock offset\n" +
			"where the run applied it (the interface's comment says by how much, and with what uncertainty).\n" +
			"It streams: memory does not grow with the case. Captures not collected are named and left out.",
		Flags: []cli.Flag{jsonFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` (- for stdout); default CASE_DIR/" + mergedFile}},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} },
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{fmt.Sprintf("merge needs exactly one CASE_DIR, got %d arguments", c.NArg())}
			}
			dir := c.Args().First()
			cd, err := casedir.Open(dir)
			if err != nil {
				if cd == nil {
					return usageError{err.Error()} // not a case folder
				}
				return err
			}
			for _, s := range cd.Skipped {
				fmt.Fprintf(c.App.ErrWriter, "casecap: left out %s (%s): %s\n", s.File, s.Host, s.Why)
			}
			out := c.String("output")
			if out == "" {
				out = filepath.Join(dir, mergedFile)
			}
			var st merge.Stats
			if out == "-" {
				st, err = merge.Merge(cd, c.App.Writer)
			} else {
				// Whole or not at all: a reader of FILE never sees half a merge.
				pr, pw := io.Pipe()
				go func() {
					var merr error
					st, merr = merge.Merge(cd, pw)
					pw.CloseWithError(merr)
				}()
				err = atomicfile.Write(out, pr, 0o640)
				pr.Close()
			}
			if err != nil {
				return fmt.Errorf("merge %s: %w", dir, err)
			}
			if c.Bool("json") && out != "-" {
				return writeJSON(c.App.Writer, struct {
					File    string            `json:"file"`
					Sources int               `json:"sources"`
					Ifaces  int               `json:"interfaces"`
					Packets uint64            `json:"packets"`
					Skipped []casedir.Skipped `json:"skipped,omitempty"`
				}{out, st.Sources, st.Interfaces, st.Packets, cd.Skipped})
			}
			fmt.Fprintf(c.App.ErrWriter, "casecap: merged %s, %s, into %s\n", plural(st.Sources, "capture"), plural(int(st.Packets), "packet"), out)
			if len(cd.Skipped) > 0 {
				return errors.New("some captures of the case were left out (above)")
			}
			return nil
		},
	}
}
