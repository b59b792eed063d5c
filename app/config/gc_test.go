package config

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
)

// gcProbe, set in a child's environment, makes the test binary a chat
// server's start in miniature: apply the default, print the percent in
// force, exit.
const gcProbe = "CONFIG_GC_PROBE"

func TestMain(m *testing.M) {
	if os.Getenv(gcProbe) != "" {
		ApplyGCPercent(os.Getenv)
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		fmt.Println(int64(s[0].Value.Uint64())) // GOGC=off reads as -1
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The server's GC percent is GCPercent unless the operator's GOGC says
// otherwise (docs/configuration.md): GOGC=100 gets Go's own default back.
func TestGCPercentDefaultsOnlyWhenGOGCIsUnset(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want int
	}{
		{"unset", nil, GCPercent},
		{"empty", []string{"GOGC="}, GCPercent},
		{"Go's default asked for", []string{"GOGC=100"}, 100},
		{"lower", []string{"GOGC=50"}, 50},
		{"off", []string{"GOGC=off"}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, gcProbe+"=1"), tc.env...)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("probe: %v\n%s", err, out)
			}
			got, err := strconv.Atoi(strings.TrimSpace(string(out)))
			if err != nil || got != tc.want {
				t.Errorf("GC percent in force %q, want %d", out, tc.want)
			}
		})
	}
}
