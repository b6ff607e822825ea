package hosts

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// AcceptNewFlag is the flag that lets casecap record unknown host keys.
const AcceptNewFlag = "--accept-new-host-keys"

// UnknownHostError is a host whose key is in no known_hosts file.
type UnknownHostError struct {
	Host        string
	Fingerprint string
	KeyType     string
}

func (e *UnknownHostError) Error() string {
	return fmt.Sprintf("host key of %s is unknown (%s %s): check the fingerprint with the host's administrator, then run again with %s to record it",
		e.Host, e.KeyType, e.Fingerprint, AcceptNewFlag)
}

// ChangedHostKeyError is a host that offers a different key than recorded:
// possibly someone in the middle. It is always refused.
type ChangedHostKeyError struct {
	Host        string
	Fingerprint string
	Files       []string
}

func (e *ChangedHostKeyError) Error() string {
	return fmt.Sprintf("HOST KEY OF %s HAS CHANGED (it now offers %s): refusing to connect; if the host was reinstalled, remove its old key from %v",
		e.Host, e.Fingerprint, e.Files)
}

// KnownHosts checks host keys strictly against known_hosts files, shared by
// every connection of a run.
type KnownHosts struct {
	files     []string
	db        *knownhosts.HostKeyDB
	acceptNew bool
	hashed    bool       // files[0] hashes its host names: new ones are hashed too
	mu        sync.Mutex // appends to files[0] from parallel dials
}

// NewKnownHosts reads the known_hosts files (missing ones count as empty).
// With acceptNew, unknown keys are accepted and appended to the first file.
func NewKnownHosts(files []string, acceptNew bool) (*KnownHosts, error) {
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	k := &KnownHosts{files: files, acceptNew: acceptNew}
	if len(files) > 0 {
		k.hashed = hashesNames(files[0])
	}
	if len(existing) > 0 {
		db, err := knownhosts.NewDB(existing...)
		if err != nil {
			return nil, fmt.Errorf("read known hosts: %w", err)
		}
		k.db = db
	}
	return k, nil
}

// Algorithms restricts the host key types offered for hostport to the ones
// recorded for it (so a host known by its ECDSA key is not mistaken for a
// changed host when it also has an ed25519 key). Nil means no preference.
func (k *KnownHosts) Algorithms(hostport string) []string {
	if k.db == nil {
		return nil
	}
	return k.db.HostKeyAlgorithms(hostport)
}

// Callback is the ssh.HostKeyCallback for one host.
func (k *KnownHosts) Callback() ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		var err error
		if k.db != nil {
			err = k.db.HostKeyCallback()(hostname, remote, key)
			if err == nil {
				return nil
			}
		}
		switch {
		case k.db != nil && knownhosts.IsHostKeyChanged(err):
			return &ChangedHostKeyError{Host: hostname, Fingerprint: ssh.FingerprintSHA256(key), Files: k.files}
		case k.db == nil || knownhosts.IsHostUnknown(err):
			if !k.acceptNew {
				return &UnknownHostError{Host: hostname, Fingerprint: ssh.FingerprintSHA256(key), KeyType: key.Type()}
			}
			return k.record(hostname, remote, key)
		}
		return err
	}
}

// record appends a new host key to the first known_hosts file.
func (k *KnownHosts) record(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if len(k.files) == 0 {
		return errors.New("no known_hosts file to record the new host key in")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	path := k.files[0]
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record the host key of %s: %w", hostname, err)
	}
	defer f.Close()
	if k.hashed {
		err = writeHashed(f, hostname, remote, key)
	} else {
		err = knownhosts.WriteKnownHost(f, hostname, remote, key)
	}
	if err != nil {
		return fmt.Errorf("record the host key of %s: %w", hostname, err)
	}
	return nil
}

// hashesNames reports whether a known_hosts file keeps its host names
// hashed (OpenSSH's HashKnownHosts): an entry of it begins with "|1|".
func hashesNames(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "@") { // a marker: the names follow it
			_, line, _ = strings.Cut(line, " ")
		}
		if strings.HasPrefix(line, "|1|") {
			return true
		}
	}
	return false
}

// writeHashed records a key the way OpenSSH does in a hashed file: one line
// per name it is known by (the host as dialled, and its address if that
// differs), each name hashed.
func writeHashed(w io.Writer, hostname string, remote net.Addr, key ssh.PublicKey) error {
	names := []string{knownhosts.Normalize(hostname)}
	if remote != nil {
		if r := knownhosts.Normalize(remote.String()); r != names[0] && r != "[0.0.0.0]:0" {
			names = append(names, r)
		}
	}
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "%s %s", xknownhosts.HashHostname(n), ssh.MarshalAuthorizedKey(key)); err != nil {
			return err
		}
	}
	return nil
}
