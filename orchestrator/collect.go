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
	"sync"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/pcapfile"
)

// maxDownloads bounds the files downloaded at once.
const maxDownloads = 16

// LocalCaseDir is the case folder on this machine.
func (o *Orchestrator) LocalCaseDir() string {
	return filepath.Join(o.opt.OutDir, o.opt.Plan.CaseDir())
}

// collect downloads every stopped capture of every live host into the
// local case folder, resuming partial downloads and checking every file
// against the checksum its agent recorded (CRC-32C; SHA-256 from ESXi's ssh
// mode). The manifest gets the SHA-256 of every file collected.
func (o *Orchestrator) collect(ctx context.Context) {
	if o.opt.Collecting != nil {
		defer o.opt.Collecting()()
	}
	local := o.LocalCaseDir()
	if err := os.MkdirAll(local, 0o750); err != nil {
		for _, h := range o.live() {
			o.fail(h, phaseCollect, err)
		}
		return
	}
	sem := make(chan struct{}, maxDownloads)
	o.each(ctx, phaseCollect, func(ctx context.Context, h *hostRun) error {
		if h.run.status == nil {
			st, err := o.readStatus(ctx, h)
			if err != nil {
				return fmt.Errorf("no capture status on the host (was the case started there?): %w", err)
			}
			h.run.status = st
		}
		if !finished(h.run.status) {
			ended, err := h.drv.ended(ctx, o, h)
			if err != nil {
				return fmt.Errorf("its captures have not finished, and whether its agent still runs could not be told: %w", err)
			}
			if !ended {
				return errors.New("its captures are still running: stop them (casecap stop) or wait for their end, then collect")
			}
			// The agent died first: take what is there, the finished
			// captures verified, the others as they are.
			h.run.agentGone = true
			o.log.Warn("the agent ended before its captures: collecting what is there", "host", h.name())
		}
		// Names come from the plan, never from what a host says: a host
		// cannot make casecap write outside the case folder.
		want := map[string]bool{}
		for _, c := range h.facts.captures {
			want[c.File] = true
		}
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range h.run.status.Captures {
			cs := &h.run.status.Captures[i]
			name := path.Base(cs.File)
			if !want[name] {
				errs = append(errs, fmt.Errorf("the agent reports a capture file %q that is not in the plan; ignored", cs.File))
				continue
			}
			if cs.StopReason == agentproto.StopDisarmed {
				continue // stopped before it began: no file, nothing to collect
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				// A capture the dead agent never finished has no final
				// checksum: it comes as it is on the host.
				asIs := h.run.agentGone && cs.State != agentproto.CaptureStopped && cs.State != agentproto.CaptureFailed
				sha, err := o.download(ctx, h, cs, name, local, asIs)
				if err == nil {
					err = h.drv.collected(filepath.Join(local, name), cs)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					return
				}
				if h.run.collected == nil {
					h.run.collected, h.run.asIs = map[string]string{}, map[string]bool{}
				}
				h.run.collected[name] = sha
				h.run.asIs[name] = asIs
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	})
}

// sums checksums a file both ways as it arrives: CRC-32C to check it
// against the agent's, SHA-256 for the manifest (and to check it where the
// host recorded one instead: ESXi's ssh mode).
type sums struct {
	sha hash.Hash
	crc hash.Hash32
}

func newSums() *sums { return &sums{sha: sha256.New(), crc: agentproto.NewCRC32C()} }

func (s *sums) Write(p []byte) (int, error) {
	s.sha.Write(p)
	s.crc.Write(p)
	return len(p), nil
}

func (s *sums) reset() { s.sha.Reset(); s.crc.Reset() }

func (s *sums) sha256() string { return hex.EncodeToString(s.sha.Sum(nil)) }

// check compares the sums with what the host recorded.
func (s *sums) check(cs *agentproto.CaptureStatus) error {
	switch {
	case cs.CRC32C != "":
		if got := agentproto.CRC32CHex(s.crc); got != cs.CRC32C {
			return fmt.Errorf("crc32c %s, the agent's is %s", got, cs.CRC32C)
		}
	case cs.SHA256 != "":
		if got := s.sha256(); got != cs.SHA256 {
			return fmt.Errorf("sha256 %s, the host's is %s", got, cs.SHA256)
		}
	default:
		return errors.New("the host recorded no checksum")
	}
	return nil
}

// fileSums checksums a local file.
func fileSums(p string) (*sums, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := newSums()
	_, err = io.Copy(s, f)
	return s, err
}

// download fetches one capture file, resumable and verified, and returns
// its SHA-256. asIs takes the file as it is on the host, unverified: a
// capture its agent never finished has no final checksum (or size).
func (o *Orchestrator) download(ctx context.Context, h *hostRun, cs *agentproto.CaptureStatus, name, local string, asIs bool) (string, error) {
	remote := path.Join(h.caseDir(o.opt.Plan), name)
	if asIs {
		size, err := h.conn.Stat(remote)
		if err != nil {
			return "", fmt.Errorf("the agent died before this capture finished, and its file cannot be read: %w", err)
		}
		c := *cs
		c.Size, c.CRC32C, c.SHA256 = size, "", ""
		cs = &c
	} else if cs.CRC32C == "" && cs.SHA256 == "" {
		return "", fmt.Errorf("the agent recorded no checksum (capture %s: %s)", cs.State, cs.Error)
	}
	final := filepath.Join(local, name)
	if fi, err := os.Stat(final); err == nil {
		s, err := fileSums(final)
		if err != nil {
			return "", err
		}
		if asIs && fi.Size() != cs.Size {
			err = fmt.Errorf("%d bytes here, %d on the host", fi.Size(), cs.Size)
		} else if !asIs {
			err = s.check(cs)
		}
		if err != nil {
			return "", fmt.Errorf("%s exists and is a different file (%v): not overwriting it; move it away or use --out", final, err)
		}
		return s.sha256(), nil // already collected (and verified)
	}
	part := final + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Resume: checksum what is already here, then fetch the rest.
	s := newSums()
	offset, err := io.Copy(s, f)
	if err != nil {
		return "", err
	}
	if offset > cs.Size {
		offset = 0
		s.reset()
		if err := f.Truncate(0); err != nil {
			return "", err
		}
	}
	tr := o.disp.Download(h.name(), name, cs.Size)
	tr.Add(offset)
	fl := newFlusher(f, offset)
	n, err := fetch(ctx, h.conn, remote, f, offset, s, fl, tr.Add)
	if err == nil && n != cs.Size {
		err = fmt.Errorf("downloaded %d bytes, the agent wrote %d", n, cs.Size)
	}
	if err == nil && !asIs {
		if cerr := s.check(cs); cerr != nil {
			os.Remove(part)
			err = fmt.Errorf("%v: the download is discarded; collect again", cerr)
		}
	}
	if err == nil {
		err = errors.Join(fl.sync(), os.Chmod(part, 0o640), os.Rename(part, final))
	}
	tr.Done(err)
	if err != nil {
		return "", err
	}
	return s.sha256(), nil
}

// fetch downloads remote into f from offset, feeding every byte to sums
// (which holds what is already there) as it is written, and returns the
// whole file's size. (Checksumming on a goroutine of its own costs one
// more copy of every byte, and did not pay on the 2-core lab, where both
// ends of the transfer compete for the CPUs.)
func fetch(ctx context.Context, c hosts.Conn, remote string, f io.WriterAt, offset int64, sums io.Writer, fl *flusher, progress func(int64)) (int64, error) {
	w := &hashingWriterAt{w: f, h: sums, next: offset, fl: fl}
	_, err := c.Download(ctx, remote, w, offset, progress)
	return w.next, err
}

// Fetch downloads a whole remote file to local the way collect does
// (concurrent SFTP reads, checksummed on the way) and returns its sha256
// and size: for the benchmarks, which measure collect's own path.
func Fetch(ctx context.Context, c hosts.Conn, remote, local string) (string, int64, error) {
	f, err := os.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	s := newSums()
	n, err := fetch(ctx, c, remote, f, 0, s, nil, nil)
	return s.sha256(), n, err
}

// hashingWriterAt hashes a download as it is written; downloads write in
// order, and anything else is refused rather than hashed wrong.
type hashingWriterAt struct {
	w    io.WriterAt
	h    io.Writer
	next int64
	fl   *flusher // nil: no background fsyncs
}

func (x *hashingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off != x.next {
		return 0, fmt.Errorf("out-of-order write at %d, expected %d", off, x.next)
	}
	n, err := x.w.WriteAt(p, off)
	x.h.Write(p[:n])
	x.next += int64(n)
	x.fl.wrote(x.next)
	return n, err
}

// countLocal fills a capture's packets and bytes from its collected file.
func countLocal(file string, cs *agentproto.CaptureStatus) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	packets, bytes, err := pcapfile.Count(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("count the packets of %s: %w", file, err)
	}
	cs.Packets, cs.Bytes = packets, bytes
	return nil
}
