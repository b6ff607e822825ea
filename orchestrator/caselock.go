package orchestrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// lockCaseFolder takes the local case folder for one command's collect and
// manifest, waiting while another casecap has it: two collects into one
// --out once raced for the same .part files, and the loser's manifest
// could be the one left. The lock is the operating system's (flock, or
// LockFileEx on Windows): it goes with the process, so a casecap that died
// holds nothing.
func (o *Orchestrator) lockCaseFolder(ctx context.Context) (unlock func(), err error) {
	dir := o.LocalCaseDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	l := flock.New(filepath.Join(dir, ".casecap.lock"), flock.SetPermissions(0o640))
	ok, err := l.TryLock()
	if err == nil && !ok {
		o.log.Warn("another casecap is collecting into this case folder: waiting for it", "folder", dir)
		ok, err = l.TryLockContext(ctx, 100*time.Millisecond)
	}
	if err != nil || !ok {
		return nil, fmt.Errorf("lock the case folder %s: %v", dir, err)
	}
	return func() { _ = l.Unlock() }, nil
}
