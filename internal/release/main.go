// Command release builds casecap for every platform it runs on, with the
// capture agents embedded and the version stamped from git, and writes a
// SHA256SUMS file beside the binaries:
//
//	go run ./internal/release [-o DIR]   # default DIR: ./bin/release
//
// It runs `go generate ./internal/agent/dist` first, so that the agents
// embedded are built from the same source. The binaries are static
// (CGO_ENABLED=0), built with -trimpath and stripped: the same source and
// Go version give the same bytes.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// platforms are the systems casecap runs on (the controller; the agent is
// Linux-only and embedded).
var platforms = []struct{ os, arch string }{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

func main() {
	out := flag.String("o", filepath.Join("bin", "release"), "write the binaries and SHA256SUMS here")
	flag.Parse()
	if err := build(*out); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func build(dir string) error {
	v, err := gitVersion()
	if err != nil {
		return err
	}
	if err := run(nil, "go", "generate", "./internal/agent/dist"); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var names []string
	for _, p := range platforms {
		name := fmt.Sprintf("casecap-%s-%s-%s", v, p.os, p.arch)
		if p.os == "windows" {
			name += ".exe"
		}
		env := []string{"CGO_ENABLED=0", "GOOS=" + p.os, "GOARCH=" + p.arch}
		if err := run(env, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+v,
			"-o", filepath.Join(dir, name), "./cmd/casecap"); err != nil {
			return fmt.Errorf("%s/%s: %w", p.os, p.arch, err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var sums strings.Builder
	for _, name := range names {
		sum, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(&sums, "%s  %s\n", sum, name) // sha256sum -c reads this
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("casecap %s: %d binaries and SHA256SUMS in %s (built with %s)\n", v, len(names), dir, runtime.Version())
	return nil
}

// gitVersion is `git describe`: the tag, commits since and the commit, and
// "-dirty" when the checkout has changes.
func gitVersion() (string, error) {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "", fmt.Errorf("git describe (a release is built from a git checkout): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func run(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
