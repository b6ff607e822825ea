// Package hosts is how casecap talks to one host: a small connection
// interface (run a command, read and write files, download, close) with
// SSH and SFTP behind it for remote hosts, plain processes and files for the
// local host, and an in-process fake for unit tests.
//
// Remote commands are argument lists, never strings: Quote turns one into a
// POSIX shell command line (what sshd hands to the user's shell, bash on
// Linux, BusyBox ash on ESXi), and nothing from a plan or a host reaches a
// shell any other way.
package hosts
