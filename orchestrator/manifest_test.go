package orchestrator

import (
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans"
)

// TestManifestCarriesBeginLate: a host whose agent heard of the begin late
// says so in the manifest (begin_late_ns), as its status said.
func TestManifestCarriesBeginLate(t *testing.T) {
	p, err := plans.Parse("p.yaml", []byte("case: L\ndatastore: /ds\nhosts:\n  - { name: h1, kind: linux, address: 192.0.2.1, captures: [ { interface: eth0 } ] }\n  - { name: h2, kind: linux, address: 192.0.2.2, captures: [ { interface: eth0 } ] }\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := New(Options{Plan: p})
	o.hosts[0].run.status = &agentproto.Status{BeginLate: 42 * time.Millisecond}
	o.hosts[1].run.status = &agentproto.Status{}
	m := o.manifest("run")
	if m.Hosts[0].BeginLateNs != 42*time.Millisecond || m.Hosts[1].BeginLateNs != 0 {
		t.Errorf("begin_late_ns %v and %v, want 42ms and 0", m.Hosts[0].BeginLateNs, m.Hosts[1].BeginLateNs)
	}
}
