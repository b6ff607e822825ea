package orchestrator

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sync"

	"github.com/casecap/casecap/agent/capture"
	"github.com/casecap/casecap/agent/pktcap"
	"github.com/casecap/casecap/hosts"
)

// maxDownloads bounds the files downloaded at once.
const maxDownloads = 16

// collectGC is the GC percent while collecting: downloads churn through
// SFTP buffers while the live heap stays small (tens of MiB), and fewer GC
// cycles were worth 5 to 10% of throughput on the lab (BENCHMARKS.md).
const collectGC = 400

// lessGC raises the GC percent for a download-heavy stretch; it returns the
// restore.
func lessGC() func() {
	old := debug.SetGCPercent(collectGC)
	return func() { debug.SetGCPercent(old) }
}

// LocalCaseDir is the case folder on this machine.
func (o *Orchestrator) LocalCaseDir() string {
	return filepath.Join(o.opt.OutDir, o.opt.Plan.CaseDir())
}

// collect downloads every stopped capture of every live host into the
// local case folder, resuming partial downloads and checking every file
// against the sha256 its agent recorded.
func (o *Orchestrator) collect(ctx context.Context) {
	defer lessGC()()
	local := o.LocalCaseDir()
	if err := os.MkdirAll(local, 0o750); err != nil {
		for _, h := range o.live() {
			o.fail(h, "collect", err)
		}
		return
	}
	sem := make(chan struct{}, maxDownloads)
	o.each(ctx, "collect", func(ctx context.Context, h *hostRun) error {
		if h.status == nil {
			st, err := o.readStatus(ctx, h)
			if err != nil {
				return fmt.Errorf("no capture status on the host (was the case started there?): %w", err)
			}
			h.status = st
		}
		if !finished(h.status) {
			return errors.New("its captures are still running: stop them (casecap stop) or wait for their end, then collect")
		}
		// Names come from the plan, never from what a host says: a host
		// cannot make casecap write outside the case folder.
		want := map[string]bool{}
		for _, c := range h.captures {
			want[c.File] = true
		}
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range h.status.Captures {
			cs := &h.status.Captures[i]
			name := path.Base(cs.File)
			if !want[name] {
				errs = append(errs, fmt.Errorf("the agent reports a capture file %q that is not in the plan; ignored", cs.File))
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				err := o.download(ctx, h, cs, name, local)
				if err == nil && h.mode == modeSSH {
					// The script knows the file's size and hash, not its
					// packets: count them here, in the verified copy.
					err = countLocal(filepath.Join(local, name), cs)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					return
				}
				if h.collected == nil {
					h.collected = map[string]bool{}
				}
				h.collected[name] = true
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	})
}

// fileSum hashes a local file.
func fileSum(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// download fetches one capture file, resumable and verified.
func (o *Orchestrator) download(ctx context.Context, h *hostRun, cs *capture.Status, name, local string) error {
	if cs.SHA256 == "" {
		return fmt.Errorf("the agent recorded no sha256 (capture %s: %s)", cs.State, cs.Error)
	}
	final := filepath.Join(local, name)
	if _, err := os.Stat(final); err == nil {
		sum, _, err := fileSum(final)
		if err != nil {
			return err
		}
		if sum == cs.SHA256 {
			return nil // already collected and verified
		}
		return fmt.Errorf("%s exists and is a different file (sha256 %s, the host's is %s): not overwriting it; move it away or use --out", final, sum, cs.SHA256)
	}
	part := final + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	// Resume: hash what is already here, then fetch the rest.
	hasher := sha256.New()
	offset, err := io.Copy(hasher, f)
	if err != nil {
		return err
	}
	if offset > cs.Size {
		offset = 0
		hasher.Reset()
		if err := f.Truncate(0); err != nil {
			return err
		}
	}
	tr := o.disp.Download(h.name(), name, cs.Size)
	tr.Add(offset)
	remote := path.Join(h.caseDir(o.opt.Plan), name)
	sum, n, err := fetch(ctx, h.conn, remote, f, offset, hasher, tr.Add)
	if err == nil && n != cs.Size {
		err = fmt.Errorf("downloaded %d bytes, the agent wrote %d", n, cs.Size)
	}
	if err == nil && sum != cs.SHA256 {
		os.Remove(part)
		err = fmt.Errorf("sha256 %s does not match the agent's %s: the download is discarded; collect again", sum, cs.SHA256)
	}
	if err == nil {
		err = errors.Join(f.Sync(), os.Chmod(part, 0o640), os.Rename(part, final))
	}
	tr.Done(err)
	return err
}

// fetch downloads remote into f from offset (hasher holds the hash of what
// is already there) and returns the whole file's sha256 and size, hashed as
// it is written. (Hashing on a goroutine of its own costs one more copy of
// every byte, and did not pay on the 2-core lab, where both ends of the
// transfer compete for the CPUs.)
func fetch(ctx context.Context, c hosts.Conn, remote string, f io.WriterAt, offset int64, hasher hash.Hash, progress func(int64)) (string, int64, error) {
	w := &hashingWriterAt{w: f, h: hasher, next: offset}
	_, err := c.Download(ctx, remote, w, offset, progress)
	return hex.EncodeToString(hasher.Sum(nil)), w.next, err
}

// Fetch downloads a whole remote file to local the way collect does
// (concurrent SFTP reads, hashed on the way) and returns its sha256 and
// size: for the benchmarks, which measure collect's own path.
func Fetch(ctx context.Context, c hosts.Conn, remote, local string) (string, int64, error) {
	defer lessGC()()
	f, err := os.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return fetch(ctx, c, remote, f, 0, sha256.New(), nil)
}

// hashingWriterAt hashes a download as it is written; downloads write in
// order, and anything else is refused rather than hashed wrong.
type hashingWriterAt struct {
	w    io.WriterAt
	h    io.Writer
	next int64
}

func (x *hashingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off != x.next {
		return 0, fmt.Errorf("out-of-order write at %d, expected %d", off, x.next)
	}
	n, err := x.w.WriteAt(p, off)
	x.h.Write(p[:n])
	x.next += int64(n)
	return n, err
}

// countLocal fills a capture's packets and bytes from its collected file.
func countLocal(file string, cs *capture.Status) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	packets, bytes, err := pktcap.Count(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("count the packets of %s: %w", file, err)
	}
	cs.Packets, cs.Bytes = packets, bytes
	return nil
}
