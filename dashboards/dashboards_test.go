package dashboards_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/dashboards"
	"github.com/switchboard-dev/switchboard/dashboards/grafana"
)

func TestGeneratedFilesMatchTheirSources(t *testing.T) {
	files, err := dashboards.Generated()
	if err != nil {
		t.Fatal(err)
	}
	committed := map[string][]byte{"switchboard.json": dashboards.Dashboard, "grafana-alerting.yaml": dashboards.GrafanaAlerting}
	for name, want := range files {
		if !bytes.Equal(committed[name], want) {
			t.Errorf("%s differs from what panels.go and alerts.yaml generate: run `go generate ./dashboards` and commit it", name)
		}
	}
}

// The Grafana rules carry every Prometheus alert over unchanged, whatever
// the generator's own code does.
func TestGrafanaAlertingAgreesWithAlertsYAML(t *testing.T) {
	var prov struct {
		Groups []struct {
			Rules []struct {
				Title, For, Condition string
				Data                  []struct {
					RefID string `yaml:"refId"`
					Model map[string]any
				}
				Labels, Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(dashboards.GrafanaAlerting, &prov); err != nil {
		t.Fatal(err)
	}
	type grafanaRule = struct {
		expr, forDur        string
		labels, annotations map[string]string
	}
	got := map[string]grafanaRule{}
	for _, g := range prov.Groups {
		for _, r := range g.Rules {
			if len(r.Data) == 0 || r.Data[0].RefID != "A" || r.Condition != "B" {
				t.Errorf("%s: want query A and condition B, got %+v", r.Title, r)
				continue
			}
			unescape := func(s string) string { return strings.ReplaceAll(s, "$$", "$") }
			ann := map[string]string{}
			for k, v := range r.Annotations {
				ann[k] = strings.ReplaceAll(unescape(v), "$values.A.Value", "$value")
			}
			expr, _ := r.Data[0].Model["expr"].(string)
			got[r.Title] = grafanaRule{unescape(expr), r.For, r.Labels, ann}
		}
	}
	for _, a := range alerts(t) {
		g, ok := got[a.Alert]
		if !ok {
			t.Errorf("%s: missing from grafana-alerting.yaml", a.Alert)
			continue
		}
		delete(got, a.Alert)
		if g.expr != a.Expr || g.forDur != a.For || !maps.Equal(g.labels, a.Labels) || !maps.Equal(g.annotations, a.Annotations) {
			t.Errorf("%s: grafana-alerting.yaml has %+v, alerts.yaml has expr %q for %s labels %v annotations %v", a.Alert, g, a.Expr, a.For, a.Labels, a.Annotations)
		}
	}
	for title := range got {
		t.Errorf("%s: in grafana-alerting.yaml but not in alerts.yaml", title)
	}
}

func TestEveryAlertHasSeverityTextRunbookAndPromtoolCase(t *testing.T) {
	runbook := read(t, "RUNBOOK.md")
	cases := read(t, "alerts_test.yaml")
	const prefix = "https://github.com/switchboard-dev/switchboard/blob/main/dashboards/RUNBOOK.md#"
	for _, a := range alerts(t) {
		t.Run(a.Alert, func(t *testing.T) {
			if s := a.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("severity %q: want critical or warning", s)
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if a.Annotations[k] == "" {
					t.Errorf("no %s annotation", k)
				}
			}
			if want := prefix + strings.ToLower(a.Alert); a.Annotations["runbook_url"] != want {
				t.Errorf("runbook_url %q: want %q", a.Annotations["runbook_url"], want)
			}
			if !strings.Contains(runbook, "\n## "+a.Alert+"\n") {
				t.Errorf("RUNBOOK.md has no section \"## %s\"", a.Alert)
			}
			if !strings.Contains(cases, "alertname: "+a.Alert+"\n") {
				t.Errorf("alerts_test.yaml has no case for it")
			}
		})
	}
}

func TestRulesPassPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool is missing: `make deps` installs the Debian package prometheus")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var hardCodedInstance = regexp.MustCompile(`instance\s*=~?\s*"[^$]|chat-\d|127\.0\.0\.1|:808\d`)

func TestDashboardImportsWithoutEdits(t *testing.T) {
	var d struct {
		Inputs        []struct{ Name, Type, PluginID string } `json:"__inputs"`
		UID           string
		Tags          []string
		SchemaVersion int
		Templating    struct{ List []struct{ Name string } }
		Panels        []struct {
			ID          int
			Type        string
			Title       string
			Description string
			Datasource  struct{ UID string }
			FieldConfig struct{ Defaults struct{ Unit string } }
			Targets     []struct {
				Expr       string
				Datasource struct{ UID string }
			}
		}
	}
	if err := json.Unmarshal(dashboards.Dashboard, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v: want one Prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	if d.UID == "" || len(d.Tags) == 0 || d.SchemaVersion != grafana.SchemaVersion {
		t.Errorf("uid %q, tags %v, schemaVersion %d: want a uid, tags and schemaVersion %d", d.UID, d.Tags, d.SchemaVersion, grafana.SchemaVersion)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if strings.Join(vars, ",") != "namespace,job,instance" {
		t.Errorf("variables %v: want namespace, job, instance", vars)
	}
	var rows []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if p.Description == "" || p.FieldConfig.Defaults.Unit == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want a description, a unit and queries", p.Title)
		}
		if p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource %q, want ${DS_PROMETHEUS}", p.Title, p.Datasource.UID)
		}
		for _, q := range p.Targets {
			if q.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: query datasource %q, want ${DS_PROMETHEUS}", p.Title, q.Datasource.UID)
			}
			if !strings.Contains(q.Expr, `instance=~"$instance"`) || hardCodedInstance.MatchString(q.Expr) {
				t.Errorf("panel %q: query %s: want every selector narrowed by $instance and no instance named", p.Title, q.Expr)
			}
		}
	}
	if want := "Traffic,Latency,Health,Back-pressure,Dependencies,Runtime"; strings.Join(rows, ",") != want {
		t.Errorf("rows %v: want %s", rows, want)
	}
}

func alerts(t *testing.T) []grafana.Rule {
	t.Helper()
	all, err := dashboards.AlertRules()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 10 {
		t.Fatalf("alerts.yaml has %d rules; issue 4 lists 10", len(all))
	}
	return all
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRulesForSetsTheInstanceMinimum(t *testing.T) {
	rules, err := dashboards.RulesFor(5)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "SwitchboardInstancesBelowMinimum" {
				if !strings.HasSuffix(r.Expr, ") < 5") || !strings.HasPrefix(r.Annotations["description"], "Fewer than 5 ") {
					t.Errorf("expr %q, description %q: want the minimum 5", r.Expr, r.Annotations["description"])
				}
				return
			}
		}
	}
	t.Fatal("no SwitchboardInstancesBelowMinimum")
}

// Grafana refuses a rule uid longer than 40 characters, or with characters
// other than letters, digits, '-' and '_' (pkg/util/shortid_generator.go:
// MaxUIDLength = 40, "Only letters, numbers, '-' and '_' are allowed"),
// and a uid used twice in an organisation; one bad uid and provisioning
// loads none of the file's rules.
func TestEveryGrafanaRuleUIDIsOneGrafanaAccepts(t *testing.T) {
	long := "SwitchboardPersistenceBacklogGrowingFasterThanWritten"
	ruleFile := func(groups ...string) []byte {
		var b strings.Builder
		b.WriteString("groups:\n")
		for _, g := range groups {
			b.WriteString(g)
		}
		return []byte(b.String())
	}
	group := func(name string, alerts ...string) string {
		s := "  - name: " + name + "\n    rules:\n"
		for _, a := range alerts {
			s += "      - alert: " + a + "\n        expr: up == 0\n"
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		file    []byte
		refused string // empty: accepted
	}{
		{"alerts.yaml", dashboards.Alerts, ""},
		{"names past 40 characters sharing their start", ruleFile(group("g", long, long+"Again", "Short")), ""},
		{"non-ASCII and punctuation", ruleFile(group("g", "Ünïcode.Alert:Name")), ""},
		{"one name in two groups", ruleFile(group("a", "SameName"), group("b", "SameName")), "uid same-name is taken by an alert of group a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := grafana.Alerting(tc.file, grafana.AlertingOptions{Folder: "f", OrgID: 1})
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err %v: want a refusal saying %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			uids := ruleUIDs(t, out)
			if len(uids) == 0 {
				t.Fatal("no rules generated")
			}
			checkUIDs(t, uids)
		})
	}
	// The committed file, which Grafana loads.
	checkUIDs(t, ruleUIDs(t, dashboards.GrafanaAlerting))
}

func ruleUIDs(t *testing.T, provisioning []byte) []string {
	t.Helper()
	var prov struct {
		Groups []struct{ Rules []struct{ UID string } }
	}
	if err := yaml.Unmarshal(provisioning, &prov); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, g := range prov.Groups {
		for _, r := range g.Rules {
			uids = append(uids, r.UID)
		}
	}
	return uids
}

func checkUIDs(t *testing.T, uids []string) {
	t.Helper()
	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	seen := map[string]bool{}
	for _, uid := range uids {
		if len(uid) > grafana.MaxUID || !valid.MatchString(uid) {
			t.Errorf("rule uid %q (%d characters): Grafana wants at most %d of [a-zA-Z0-9-_]", uid, len(uid), grafana.MaxUID)
		}
		if seen[uid] {
			t.Errorf("rule uid %q used twice", uid)
		}
		seen[uid] = true
	}
}
