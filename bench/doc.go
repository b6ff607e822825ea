// Package bench holds casecap's benchmarks, each measured on the lab beside
// the tool a user would otherwise use, in the same run. They are Go
// benchmarks that run once (-benchtime=1x) and report their figures as
// metrics; BENCHMARKS.md records them with the command that produced them.
//
//	go test -run='^$' -bench=. -benchtime=1x ./bench
package bench
