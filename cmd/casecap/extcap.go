package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// Wireshark extcap (issue 16): Wireshark runs every program in its extcap
// folder with --extcap-interfaces, and lists what each names as capture
// interfaces; picking one runs the program with --capture --fifo PATH.
// casecap names one interface per plan registered with `casecap live
// PLAN --install-extcap`, and captures by streaming the plan live, as
// pcapng, into the fifo. The plans are listed in casecap's config folder
// (extcapPlansFile), one path per line.

// extcapPlansFile lists the plans Wireshark shows.
const extcapPlansFile = "extcap-plans"

// extcapPrefix starts each interface's name: casecap-<case>.
const extcapPrefix = "casecap-"

// configDir is casecap's own config folder: CASECAP_CONFIG_DIR, or the
// OS's user config folder + /casecap.
func configDir() (string, error) {
	if d := os.Getenv("CASECAP_CONFIG_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "casecap"), nil
}

// extcapDir is where Wireshark looks for extcaps: CASECAP_EXTCAP_DIR; or
// what the installed Wireshark says (`tshark -G folders`: its personal
// extcap folder, which Wireshark has from 4.2 on, else its only, global
// one); or, with no tshark to ask, the personal folder for this OS
// (Help > About > Folders shows it): %APPDATA%\Wireshark\extcap on
// Windows, ~/.local/lib/wireshark/extcap on Linux and macOS.
func extcapDir() (string, error) {
	if d := os.Getenv("CASECAP_EXTCAP_DIR"); d != "" {
		return d, nil
	}
	if out, err := exec.Command("tshark", "-G", "folders").Output(); err == nil {
		var personal, global string
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "Personal Extcap path":
				personal = strings.TrimSpace(v)
			case "Extcap path":
				global = strings.TrimSpace(v)
			}
		}
		if personal != "" {
			return personal, nil
		}
		if global != "" {
			return global, nil
		}
	}
	if runtime.GOOS == "windows" {
		app := os.Getenv("APPDATA")
		if app == "" {
			return "", errors.New("APPDATA is not set: cannot find Wireshark's personal extcap folder (set CASECAP_EXTCAP_DIR)")
		}
		return filepath.Join(app, "Wireshark", "extcap"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "lib", "wireshark", "extcap"), nil
}

// installExtcap links casecap into Wireshark's extcap folder and registers
// the plan; it returns what it did, to say.
func installExtcap(planFile string) (string, error) {
	abs, err := filepath.Abs(planFile)
	if err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := extcapDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	link := filepath.Join(dir, "casecap")
	if runtime.GOOS == "windows" {
		// Symbolic links need privileges there: a batch file calls casecap.
		link += ".bat"
		if err := os.WriteFile(link, []byte("@echo off\r\n\""+self+"\" %*\r\n"), 0o755); err != nil {
			return "", err
		}
	} else {
		os.Remove(link)
		if err := os.Symlink(self, link); err != nil {
			return "", err
		}
	}
	cfg, err := configDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		return "", err
	}
	list := filepath.Join(cfg, extcapPlansFile)
	have, _ := readPlanList(list)
	if !slices.Contains(have, abs) {
		f, err := os.OpenFile(list, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(f, abs)
		if err := f.Close(); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("Wireshark's extcap folder: %s now links to %s\nplan %s registered in %s\n(restart Wireshark, or tshark -D, to see it as an interface)", link, self, abs, list), nil
}

func readPlanList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// extcapPlans are the registered plans that load, by interface name.
func extcapPlans() (map[string]*plans.Plan, []string) {
	cfg, err := configDir()
	if err != nil {
		return nil, nil
	}
	files, _ := readPlanList(filepath.Join(cfg, extcapPlansFile))
	byName := map[string]*plans.Plan{}
	var names []string
	for _, f := range files {
		p, err := plans.Load(f)
		if err != nil {
			continue // an invalid plan is not offered
		}
		name := extcapPrefix + p.Case
		if _, dup := byName[name]; !dup {
			byName[name] = p
			names = append(names, name)
		}
	}
	return byName, names
}

// isExtcap says whether Wireshark is calling casecap as an extcap.
func isExtcap(args []string) bool {
	for _, a := range args {
		switch a {
		case "--extcap-interfaces", "--extcap-dlts", "--extcap-config", "--capture", "--extcap-version":
			return true
		}
	}
	return false
}

// runExtcap answers Wireshark's extcap calls.
func runExtcap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opt := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			v = args[i+1]
			i++
		}
		opt[k] = v
	}
	byName, names := extcapPlans()
	iface := opt["--extcap-interface"]
	_, has := opt["--extcap-interfaces"]
	switch {
	case has:
		fmt.Fprintf(stdout, "extcap {version=%s}{help=https://github.com/casecap/casecap}\n", version)
		for _, n := range names {
			p := byName[n]
			fmt.Fprintf(stdout, "interface {value=%s}{display=casecap live: case %s, %d hosts (%s)}\n", n, p.Case, len(p.Hosts), filepath.Base(p.File))
		}
		return exitOK
	case byName[iface] == nil:
		fmt.Fprintf(stderr, "casecap: no registered plan for interface %q (casecap live PLAN --install-extcap registers one)\n", iface)
		return exitUsage
	}
	if _, ok := opt["--extcap-dlts"]; ok {
		fmt.Fprintln(stdout, "dlt {number=1}{name=EN10MB}{display=Ethernet (pcapng: an interface per capture point)}")
		return exitOK
	}
	if _, ok := opt["--extcap-config"]; ok {
		return exitOK // the plan says everything
	}
	fifo := opt["--fifo"]
	if _, ok := opt["--capture"]; !ok || fifo == "" {
		fmt.Fprintln(stderr, "casecap: an extcap capture needs --capture and --fifo PATH")
		return exitUsage
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(stderr, "casecap:", err)
		return exitFailure
	}
	defer f.Close()
	p := byName[iface]
	ctx, cancel := cancelOnSignal(ctx)
	defer cancel()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: os.TempDir(), Version: version})
	v := &liveView{out: io.Discard, errW: stderr, ng: f}
	_, err = o.Live(ctx, v)
	v.close()
	if err != nil {
		fmt.Fprintln(stderr, "casecap:", err)
		return exitFailure
	}
	return exitOK
}
