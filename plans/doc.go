// Package plans loads a capture plan (YAML), validates it and compiles it into
// plain values: every capture on every host with its target, capture points,
// filter, limits and output file name, with defaults already applied
// (plan -> host -> capture).
//
// Validation reports every problem at once, each as "file:line:col: yaml.path:
// message", so that a mistake costs seconds at validate time instead of an
// incident on host 37 of 50. Nothing here touches a host: names that only a
// host can resolve (a VM's switchport, an "auto" uplink, an "auto" kind) are
// left for preflight.
package plans
