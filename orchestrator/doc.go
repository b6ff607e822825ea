// Package orchestrator runs a capture plan over many hosts as ordered phases
// (connect, preflight, deploy, arm, start, watch, stop, collect). A host whose
// phase fails skips the later phases while the others go on; cleanup always
// runs wherever something started. It is built in issue 5.
package orchestrator
