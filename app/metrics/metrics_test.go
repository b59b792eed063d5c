package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestEveryLabelValueIsExportedAtZero: the dashboards' rate() panels and the
// alerts need a series before the first event, e.g. the closes panel on a
// healthy instance.
func TestEveryLabelValueIsExportedAtZero(t *testing.T) {
	m := New()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				seen[f.GetName()+"{"+l.GetName()+"="+l.GetValue()+"}"] = true
			}
		}
	}
	for _, want := range []string{
		`chat_connections_closed_total{code=client}`,
		`chat_connections_closed_total{code=1001}`,
		`chat_connections_closed_total{code=1008}`,
		`chat_connections_closed_total{code=1009}`,
		`chat_connections_closed_total{code=1011}`,
		`chat_connections_closed_total{code=1013}`,
		`chat_messages_received_total{result=overloaded}`,
	} {
		if !seen[want] {
			t.Errorf("%s is not exported before its first event", want)
		}
	}
	for _, name := range []string{"chat_persist_backlog_cap_messages", "chat_persist_lost_total"} {
		if n, err := testutil.GatherAndCount(m.Registry, name); err != nil || n != 1 {
			t.Errorf("%s: %d series, %v; want 1", name, n, err)
		}
	}
}
