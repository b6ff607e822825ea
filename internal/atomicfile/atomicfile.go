// Package atomicfile writes files whole or not at all, so that a reader (a
// later casecap, `status` polling an agent, Wireshark on the case folder)
// sees the old content or the new, never half of it, and concurrent
// writers of one file never share a temporary file.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// TempName is the name of a temporary file for base, unique to its writer
// (random), hidden, beside the file it becomes.
func TempName(base string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "." + base + "." + hex.EncodeToString(b[:]) + ".tmp"
}

// Write writes r to path through a temporary file of its own (created
// exclusively), renamed into place. On failure the temporary file is
// removed and the error names path.
func Write(path string, r io.Reader, mode fs.FileMode) error { return write(path, r, mode, false) }

// WriteDurable is Write with the data synced to the disk before the
// rename: for files that must survive a crash (the case folder's).
func WriteDurable(path string, r io.Reader, mode fs.FileMode) error {
	return write(path, r, mode, true)
}

func write(path string, r io.Reader, mode fs.FileMode, sync bool) (err error) {
	tmp := filepath.Join(filepath.Dir(path), TempName(filepath.Base(path)))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err = io.Copy(f, r); err != nil {
		return err
	}
	// The mode as asked, whatever the umask made of it.
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
