//go:build linux

package orchestrator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/plans"
)

// hostSHA256 hashes a file on a host with the host's own sha256sum: a hash
// casecap had no part in.
func hostSHA256(t *testing.T, h *lab.Host, file string) string {
	t.Helper()
	out, err := h.Command(context.Background(), "sha256sum", file).Output()
	if err != nil {
		t.Fatalf("sha256sum %s on %s: %v", file, h.Name, err)
	}
	return strings.Fields(string(out))[0]
}

// corruption spoils one capture file on the host (or, for the .part case,
// the partial download here) after its agent closed it.
type corruption struct {
	name   string
	spoil  func(remote, partial string, data []byte) error
	reason string // what collect's error says of it
}

var corruptions = []corruption{
	{"flipped", func(remote, _ string, data []byte) error {
		b := bytes.Clone(data)
		b[len(b)/2] ^= 0x01
		return os.WriteFile(remote, b, 0o640)
	}, "the download is discarded"},
	{"truncated", func(remote, _ string, data []byte) error {
		return os.WriteFile(remote, data[:len(data)-100], 0o640)
	}, "bytes, the agent wrote"},
	{"appended", func(remote, _ string, data []byte) error {
		return os.WriteFile(remote, append(bytes.Clone(data), 0), 0o640)
	}, "bytes, the agent wrote"},
	{"badpart", func(_, partial string, data []byte) error {
		b := make([]byte, len(data)/2)
		rand.Read(b)
		return os.WriteFile(partial, b, 0o640)
	}, "the download is discarded"},
}

// testCorruptedFilesRefused: captures are spoilt after their agent closed
// them (a flipped byte, a truncation, an appended byte on the host; a
// partial download here with wrong bytes). collect refuses each, naming
// the file, and claims none of them collected or verified; a capture left
// alone is collected. Once the files are whole again, collect takes every
// one, and the manifest's sha256 of each is the host's own sha256sum.
func testCorruptedFilesRefused(t *testing.T, p *plans.Plan, l *lab.Lab, h *lab.Host, remoteDir string) {
	out := t.TempDir()
	m, err := newOrch(t, p, out).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// A second case folder: the files go wrong before collect meets them.
	out = t.TempDir()
	caseDir := filepath.Join(out, p.CaseDir())
	if err := os.MkdirAll(caseDir, 0o750); err != nil {
		t.Fatal(err)
	}
	originals := map[string][]byte{}
	spoilt := map[string]corruption{}
	for i, c := range m.Captures {
		remote := filepath.Join(remoteDir, c.File)
		data, err := os.ReadFile(remote)
		if err != nil || len(data) < 1000 {
			t.Fatalf("%s: %d bytes, %v", remote, len(data), err)
		}
		originals[c.File] = data
		if i >= len(corruptions) {
			continue // left alone
		}
		k := corruptions[i]
		if err := k.spoil(remote, filepath.Join(caseDir, c.File+".part"), data); err != nil {
			t.Fatal(err)
		}
		spoilt[c.File] = k
	}
	if len(spoilt) < 2 || len(spoilt) == len(m.Captures) {
		t.Fatalf("the plan has %d captures: want some spoilt, one left alone", len(m.Captures))
	}
	m, err = newOrch(t, p, out).Collect(context.Background())
	if err == nil {
		t.Fatal("collect of spoilt files succeeded")
	}
	for _, c := range m.Captures {
		local := filepath.Join(caseDir, c.File)
		k, bad := spoilt[c.File]
		if !bad {
			if !c.Collected || !c.Verified || hostSHA256(t, h, filepath.Join(remoteDir, c.File)) != c.SHA256 {
				t.Errorf("%s (left alone): %+v, want collected and verified", c.File, c)
			}
			continue
		}
		if c.Collected || c.Verified {
			t.Errorf("%s (%s): the manifest says collected %v, verified %v", c.File, k.name, c.Collected, c.Verified)
		}
		if _, err := os.Stat(local); err == nil {
			t.Errorf("%s (%s): a file of that name is in the case folder", c.File, k.name)
		}
		if !strings.Contains(err.Error(), c.File) || !strings.Contains(err.Error(), k.reason) {
			t.Errorf("%s (%s): collect's error does not name it with %q:\n%v", c.File, k.name, k.reason, err)
		}
	}
	// Whole again: collect gets every file, the host's own hash in the
	// manifest.
	for file, data := range originals {
		if err := os.WriteFile(filepath.Join(remoteDir, file), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if m, err = newOrch(t, p, out).Collect(context.Background()); err != nil {
		t.Fatalf("collect of whole files: %v", err)
	}
	for _, c := range m.Captures {
		want := hostSHA256(t, h, filepath.Join(remoteDir, c.File))
		if !c.Collected || !c.Verified || c.SHA256 != want || sum(t, filepath.Join(caseDir, c.File)) != want {
			t.Errorf("%s: %+v, want collected and verified with the host's sha256 %s", c.File, c, want)
		}
	}
}

// TestCorruptedFilesRefused: a Linux host, its agent's CRC-32C checked.
func TestCorruptedFilesRefused(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 1)
	labtest.Stream(t, l, 36, 200*time.Microsecond)
	var caps strings.Builder
	for _, label := range []string{"a", "b", "c", "d", "e"} {
		fmt.Fprintf(&caps, "      - interface: eth0\n        filter: { udpport: 9999 }\n        label: %s\n", label)
	}
	p := labPlan(t, l, "SPOILT", time.Second, caps.String())
	testCorruptedFilesRefused(t, p, l, l.Hosts[0], filepath.Join(l.Datastore, "Case_SPOILT"))
}

// TestCorruptedFilesRefusedSSHMode: an ESXi host in ssh mode, the host's
// own SHA-256 checked.
func TestCorruptedFilesRefusedSSHMode(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: true})
	h := l.Hosts[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	var caps strings.Builder
	for _, label := range []string{"a", "b", "c", "d", "e"} {
		fmt.Fprintf(&caps, "      - uplink: vmnic0\n        points: [UplinkRcvKernel]\n        label: %s\n", label)
	}
	p := planText(t, fmt.Sprintf("case: SPOILT-SSH\ndatastore: %s\nduration: 2s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n  - name: %s\n    kind: esxi\n    address: %s\n    captures:\n%s",
		lab.ESXiDatastore, l.ClientKey, l.KnownHosts, h.Name, h.Addr, caps.String()))
	testCorruptedFilesRefused(t, p, l, h, filepath.Join(l.Datastore, "Case_SPOILT-SSH"))
}
