// Package dist carries casecap-agent inside casecap, gzip-compressed, for
// every platform casecap deploys to: linux/amd64 and linux/arm64.
//
// The binaries are built by `go generate ./internal/agent/dist` (static, CGO_ENABLED=0,
// -trimpath, stripped) and embedded when casecap is built afterwards; the
// README's build command does both. A casecap built without them still runs
// local captures (the local host runs the agent's code in casecap itself) and
// says how to build when asked to deploy to a remote host.
package dist

import (
	"bytes"
	"compress/gzip"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:generate go run ./build

//go:embed bin
var bin embed.FS

// dir, when set at link time (-X github.com/casecap/casecap/internal/agent/dist.dir=PATH),
// replaces the embedded agents with the files casecap-agent-linux-<arch>
// (not compressed) in PATH: the tests build casecap around the agent they
// have just built from the source, never around a stale generated one. A
// release build leaves it empty.
var dir string

// ErrNotEmbedded is returned for a platform this casecap carries no agent for.
var ErrNotEmbedded = errors.New("no agent embedded")

const prefix = "bin/casecap-agent-linux-"

// Agent returns the agent binary for linux/goarch.
func Agent(goarch string) ([]byte, error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "casecap-agent-linux-"+goarch))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w for linux/%s in %s (a test build)", ErrNotEmbedded, goarch, dir)
		}
		return b, err
	}
	f, err := bin.Open(prefix + goarch + ".gz")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w for linux/%s in this casecap (go install builds none): use a release build, or build it with `go generate ./internal/agent/dist && go build ./cmd/casecap`", ErrNotEmbedded, goarch)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("embedded agent for linux/%s: %w", goarch, err)
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, z); err != nil {
		return nil, fmt.Errorf("embedded agent for linux/%s: %w", goarch, err)
	}
	return b.Bytes(), nil
}

// Platforms lists the architectures embedded (amd64, arm64).
func Platforms() []string {
	if dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "casecap-agent-linux-*"))
		var out []string
		for _, f := range files {
			out = append(out, strings.TrimPrefix(filepath.Base(f), "casecap-agent-linux-"))
		}
		sort.Strings(out)
		return out
	}
	entries, _ := fs.ReadDir(bin, "bin")
	var out []string
	for _, e := range entries {
		name, ok := strings.CutPrefix("bin/"+e.Name(), prefix)
		if arch, gz := strings.CutSuffix(name, ".gz"); ok && gz {
			out = append(out, arch)
		}
	}
	sort.Strings(out)
	return out
}
