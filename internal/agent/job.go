package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/casecap/casecap/internal/agentproto"
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

// writeAtomic writes a file so that readers see the old or the new
// content, never half of it.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
