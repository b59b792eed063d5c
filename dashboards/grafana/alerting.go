package grafana

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"gopkg.in/yaml.v3"
)

// Rules is a Prometheus rule file.
type Rules struct {
	Groups []RuleGroup `yaml:"groups" json:"groups"`
}

// RuleGroup is one group of a rule file.
type RuleGroup struct {
	Name     string `yaml:"name" json:"name"`
	Interval string `yaml:"interval,omitempty" json:"interval,omitempty"`
	Rules    []Rule `yaml:"rules" json:"rules"`
}

// Rule is an alerting rule (recording rules have Record set instead).
type Rule struct {
	Alert       string            `yaml:"alert,omitempty" json:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty" json:"record,omitempty"`
	Expr        string            `yaml:"expr" json:"expr"`
	For         string            `yaml:"for,omitempty" json:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty" json:"annotations,omitempty"`
}

// ParseRules reads a Prometheus rule file, refusing unknown fields.
func ParseRules(b []byte) (Rules, error) {
	var r Rules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return Rules{}, fmt.Errorf("parse rule file: %w", err)
	}
	return r, nil
}

// Alerting options: where the provisioned rules go.
type AlertingOptions struct {
	Folder string
	OrgID  int
}

// provisioning is Grafana's alerting file-provisioning format
// (provisioning/alerting/*.yaml, the format of "Export" in Grafana's UI). The
// SDK's alerting package types the HTTP provisioning API instead, whose rule
// also carries orgID, folderUID and ruleGroup and whose group has a folder
// uid and an interval in seconds; the file format holds those once per
// group (orgId, folder by title, name, interval as a duration). So each rule
// is the SDK's alerting.Rule, written without the three keys its group
// states, inside this small envelope.
type provisioning struct {
	APIVersion int         `yaml:"apiVersion"`
	Groups     []fileGroup `yaml:"groups"`
}

type fileGroup struct {
	OrgID    int64            `yaml:"orgId"`
	Name     string           `yaml:"name"`
	Folder   string           `yaml:"folder"`
	Interval string           `yaml:"interval"`
	Rules    []map[string]any `yaml:"rules"`
}

// GroupKeys are the keys of the SDK's alerting.Rule that the file format
// states on the group instead: orgID as orgId, ruleGroup as name, and the
// folder by title rather than folderUID.
var GroupKeys = []string{"orgID", "ruleGroup", "folderUID"}

// firing is Grafana's own translation of a Prometheus alert: the query
// returns only the series past the threshold, and each returned series,
// whatever its value, is an alert instance.
const firing = "is_number($A) || is_nan($A) || is_inf($A)"

// MaxUID is the longest uid Grafana accepts, for alert rules as for
// dashboards; its characters are letters, digits, '-' and '_' (Grafana's
// pkg/util/shortid_generator.go: MaxUIDLength, ErrUIDTooLong,
// ErrUIDFormatInvalid). Provisioning refuses the whole file otherwise.
const MaxUID = 40

var (
	uidUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)
	wordStart = regexp.MustCompile(`([a-z0-9])([A-Z])`)
)

// ruleUID is an alert's uid: its name in kebab case, which reads well in
// Grafana's URLs (SwitchboardInstanceDown: switchboard-instance-down). A
// name too long for MaxUID keeps its start and ends with a hash of the
// whole name, so that two long names sharing a start stay apart.
func ruleUID(alert string) string {
	uid := strings.Trim(uidUnsafe.ReplaceAllString(strings.ToLower(wordStart.ReplaceAllString(alert, "$1-$2")), "-"), "-")
	if len(uid) <= MaxUID {
		return uid
	}
	sum := sha256.Sum256([]byte(alert))
	return strings.TrimRight(uid[:MaxUID-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// Alerting turns a Prometheus rule file into Grafana's alerting provisioning
// format: the same expressions, durations, labels and annotations, evaluated
// by Grafana against the datasource whose uid is in the environment
// variable DS_PROMETHEUS. Grafana expands $NAME from its environment in
// provisioning files, so every literal $ of the rules is written as $$.
func Alerting(ruleFile []byte, o AlertingOptions) ([]byte, error) {
	rules, err := ParseRules(ruleFile)
	if err != nil {
		return nil, err
	}
	out := provisioning{APIVersion: 1}
	uids := map[string]string{} // uid → the group that has it
	for _, g := range rules.Groups {
		fg := fileGroup{OrgID: int64(o.OrgID), Name: g.Name, Folder: o.Folder, Interval: g.Interval}
		if fg.Interval == "" {
			fg.Interval = "1m" // Prometheus's default evaluation_interval
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				return nil, fmt.Errorf("group %s: recording rule %s: Grafana alerting has no recording rules here; keep them out of the alert file", g.Name, r.Record)
			}
			uid := ruleUID(r.Alert)
			if other, dup := uids[uid]; dup {
				return nil, fmt.Errorf("group %s: alert %s: its uid %s is taken by an alert of group %s; Grafana needs a uid unique in the organisation: give the alerts distinct names", g.Name, r.Alert, uid, other)
			}
			uids[uid] = g.Name
			rule, err := alertRule(uid, g.Name, int64(o.OrgID), r)
			if err != nil {
				return nil, fmt.Errorf("group %s: alert %s: %w", g.Name, r.Alert, err)
			}
			fg.Rules = append(fg.Rules, rule)
		}
		out.Groups = append(out.Groups, fg)
	}
	var buf bytes.Buffer
	buf.WriteString("# Generated by `go generate ./dashboards` from alerts.yaml: edit that file, not this one.\n" +
		"# Grafana-managed alert rules (file provisioning). Set DS_PROMETHEUS in Grafana's\n" +
		"# environment to the uid of the Prometheus datasource.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("write alerting provisioning: %w", err)
	}
	return buf.Bytes(), nil
}

// exprUID is the datasource uid of Grafana's server-side expressions.
var exprUID = expr.Expr{}.DataqueryType() // "__expr__"

// alertRule builds one rule with the SDK's alerting builders and returns it
// as the file format writes it: the SDK's JSON, less GroupKeys.
func alertRule(uid, group string, orgID int64, r Rule) (map[string]any, error) {
	rule, err := alerting.NewRuleBuilder(r.Alert).
		Uid(uid).
		RuleGroup(group).
		OrgID(orgID).
		Condition("B").
		WithQuery(alerting.NewQueryBuilder("A").
			RelativeTimeRange(600, 0).
			DatasourceUid("${" + Input + "}").
			Model(prometheus.NewDataqueryBuilder().
				RefId("A").
				Expr(escape(r.Expr)).
				Instant().
				Datasource(datasource()))).
		WithQuery(alerting.NewQueryBuilder("B").
			DatasourceUid(exprUID).
			Model(expr.NewExprBuilder().TypeMath(expr.NewTypeMathBuilder().
				RefId("B").
				Expression(escape(firing)).
				Datasource(common.DataSourceRef{Type: cog.ToPtr(exprUID), Uid: cog.ToPtr(exprUID)})))).
		// No series back means no threshold crossed, as in Prometheus.
		NoDataState(alerting.RuleNoDataStateOK).
		ExecErrState(alerting.RuleExecErrStateError).
		For(orDefault(r.For, "0s")).
		Labels(r.Labels).
		Annotations(annotations(r.Annotations)).
		Build()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(rule)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	for _, k := range GroupKeys {
		delete(m, k)
	}
	return numbers(m).(map[string]any), nil
}

// numbers turns the json.Numbers of a decoded document into int64 or
// float64, which yaml.v3 writes as numbers (a json.Number it would quote).
func numbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = numbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = numbers(e)
		}
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	}
	return v
}

// annotations carries Prometheus templates over to Grafana's: $labels is
// the same, and the query's value is $values.A.Value rather than $value.
func annotations(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = escape(strings.ReplaceAll(v, "$value", "$values.A.Value"))
	}
	return out
}

func escape(s string) string { return strings.ReplaceAll(s, "$", "$$") }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
