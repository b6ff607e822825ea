//go:build !windows

package main

import "os"

// openTerminal opens the controlling terminal, to ask for a password even
// when stdin and stdout are redirected.
func openTerminal() (in, out *os.File, err error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	return tty, tty, err
}
