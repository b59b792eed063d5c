package config

import "runtime/debug"

// GCPercent is the collector's GOGC when the environment sets none. At the
// default 100 an instance holding 10,000 busy connections (live heap about
// 25 MB, 4.6 KB allocated a message) collects every ~3 s, and with one CPU
// each mark phase holds the core from the messages for tens of
// milliseconds: about 1 % of the time, which is where the p99 lies. At 400
// it collects every ~16 s for about twice the RSS (docs/internals.md
// "Garbage collection", docs/log.md 2026-12-06 night). GOMEMLIMIT, which
// the Kubernetes stacks set from the container's memory limit, stops the
// heap from growing past the memory the instance has.
const GCPercent = 400

// ApplyGCPercent sets the collector's percent to GCPercent unless getenv
// (os.Getenv in production) names a GOGC, which the runtime has applied
// already; an empty GOGC is the runtime's default, so ours applies.
func ApplyGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
