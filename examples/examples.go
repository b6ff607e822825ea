// Package examples holds casecap's runbook plans. They are embedded in the
// casecap binary: `casecap run --demo` runs LocalDemo without a file, and a
// test validates every plan here.
package examples

import "embed"

// FS holds every example plan (*.yaml).
//
//go:embed *.yaml
var FS embed.FS

// LocalDemoFile is the plan `casecap run --demo` runs.
const LocalDemoFile = "local-demo.yaml"
