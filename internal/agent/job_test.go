package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

func TestJobCheck(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	good := func() *agentproto.Job {
		return &agentproto.Job{Version: agentproto.JobVersion, Case: "1", Host: "h01", StateDir: "/ds/.casecap/cases/1/h01", CaseDir: "/ds/Case_1",
			Captures: []agentproto.JobCapture{{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0", Start: t0, Stop: t0.Add(time.Minute)}}}
	}
	if err := good().Check(); err != nil {
		t.Fatalf("good job: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*agentproto.Job)
		want string
	}{
		{"old format", func(j *agentproto.Job) { j.Version = 0 }, "job format"},
		{"relative dir", func(j *agentproto.Job) { j.CaseDir = "Case_1" }, "absolute"},
		{"no captures", func(j *agentproto.Job) { j.Captures = nil }, "no captures"},
		{"path in file", func(j *agentproto.Job) { j.Captures[0].File = "../../etc/passwd" }, "plain file name"},
		{"hidden file", func(j *agentproto.Job) { j.Captures[0].File = ".x" }, "plain file name"},
		{"twice", func(j *agentproto.Job) { j.Captures = append(j.Captures, j.Captures[0]) }, "twice"},
		{"no stop", func(j *agentproto.Job) { j.Captures[0].Stop = time.Time{} }, "nothing runs forever"},
		{"stop before start", func(j *agentproto.Job) { j.Captures[0].Stop = t0.Add(-time.Second) }, "nothing runs forever"},
	}
	for _, c := range cases {
		j := good()
		c.mod(j)
		if err := j.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error about %q", c.name, err, c.want)
		}
	}
}
