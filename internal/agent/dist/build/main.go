// Command build cross-compiles casecap-agent for every platform casecap
// deploys to and writes them, gzip-compressed, to ../bin. It is run by
// `go generate ./internal/agent/dist`.
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

var platforms = []string{"amd64", "arm64"}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "internal/agent/dist/build:", err)
		os.Exit(1)
	}
}

// version is the agent's version: git describe when the source is a
// checkout, else "dev".
func version() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

func run() error {
	tmp, err := os.MkdirTemp("", "casecap-agent-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	v := version()
	for _, arch := range platforms {
		raw := filepath.Join(tmp, "casecap-agent-"+arch)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+v, "-o", raw, "github.com/casecap/casecap/cmd/casecap-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build linux/%s: %w", arch, err)
		}
		data, err := os.ReadFile(raw)
		if err != nil {
			return err
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			return err
		}
		out := filepath.Join("bin", "casecap-agent-linux-"+arch+".gz")
		if err := os.WriteFile(out, z.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("internal/agent/dist: %s: %d bytes (%d gzipped), version %s\n", out, len(data), z.Len(), v)
	}
	return nil
}
