package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/atomicfile"
)

// ReadJob reads and checks a job file.
func ReadJob(path string) (*agentproto.Job, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var j agentproto.Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("job %s: %w", path, err)
	}
	return &j, j.Check()
}

// statePath is the path of one of the job's state files.
func statePath(j *agentproto.Job, name string) string { return filepath.Join(j.StateDir, name) }

// writeAtomic writes a state file whole or not at all (atomicfile).
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, bytes.NewReader(data), mode)
}
