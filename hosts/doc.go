// Package hosts is how casecap talks to one host: a small connection
// interface (run, upload, download, close) with SSH/SFTP behind it, a local
// implementation for the `local` host, and an in-process fake for tests. It
// is built in issue 5.
package hosts
