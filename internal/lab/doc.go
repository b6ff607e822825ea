// Package lab runs several "hosts" on this machine so that casecap is tested
// against real SSH servers, real packets and real files instead of mocks.
//
// A lab host is one init process cloned into its own network, PID, UTS and
// mount namespaces. The init mounts a private /proc, /run and /tmp, hides
// root's shell start-up files (this machine's .bashrc is slow), sets the
// hostname, configures eth0 (a veth whose peer sits in the lab's bridge),
// starts a real OpenSSH sshd with its own host key, reaps orphans and answers
// a small control socket used for fault injection (kill and restart sshd).
// Every host sees one shared directory, the lab's datastore.
//
// The init is this very binary, re-executed with an environment variable set:
// any program that imports lab (the lab command, a test binary) can therefore
// serve as a host's init without a separate helper binary.
//
// Addresses come from 198.18.0.0/15: lab number K uses 198.18.K.0/24, the
// bridge is 198.18.K.1 and host i is 198.18.K.(10+i). No host has a default
// route, so nothing a lab host sends can leave the lab.
package lab
