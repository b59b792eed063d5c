package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/dashboards"
	"github.com/switchboard-dev/switchboard/dashboards/grafana"
	"github.com/switchboard-dev/switchboard/tests/target"
)

// grafanaVars are the values Grafana puts in for the dashboard's variables
// with "All" selected, and a $__rate_interval fit for a 1 s scrape interval.
var grafanaVars = strings.NewReplacer(
	"$namespace", ".*", "$job", "switchboard", "$instance", ".*", "$__rate_interval", "10s",
)

// metricName finds the metric of each selector: every selector in the
// dashboards and alerts carries matchers, so a name is followed by {.
var metricName = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// The dashboard and the alert rules of dashboards/, evaluated by the real
// Prometheus of the local target while clients chat through its NGINX.
func TestDashboardsAndAlertsOnLiveData(t *testing.T) {
	s, stop := deployLocal(t)
	defer stop()
	l := s.Target.(*target.Local)
	prom := prometheusAPI(l.Prometheus.URL())
	start := time.Now()

	room := chattest.Room()
	members := s.members(t, "dash", room, 900, 9)
	traffic := startLoad(room, members[:3], 50*time.Millisecond, 0)
	defer traffic.Stop()
	members[len(members)-1].Close() // a client leaving, for the closes by code

	panels := dashboardQueries(t)
	rules := alertRules(t)

	t.Run("EveryMetricUsedIsExportedAndScraped", func(t *testing.T) {
		exported := map[string]bool{}
		for _, c := range l.Chats {
			maps.Copy(exported, exportedNames(t, c.URL()))
		}
		used := map[string]bool{}
		for _, p := range panels {
			for _, m := range metricName.FindAllStringSubmatch(p.expr, -1) {
				used[m[1]] = true
			}
		}
		for _, r := range rules {
			for _, m := range metricName.FindAllStringSubmatch(r.Expr, -1) {
				used[m[1]] = true
			}
		}
		for name := range used {
			// up is Prometheus's own series for every target.
			if name != "up" && !exported[name] {
				t.Errorf("%s is used by the dashboards or alerts but the server does not export it", name)
				continue
			}
			until(t, "Prometheus holds "+name, 30*time.Second, func() error {
				res, err := prom.query(`count(` + name + `{job="switchboard"})`)
				if err != nil {
					return retry.FatalError{Underlying: err}
				}
				if len(res) == 0 {
					return errorf("no %s scraped yet", name)
				}
				return nil
			})
		}
		report.Logf(t, "metrics: the %d names the dashboard and alerts use are all on the instances' /metrics and in Prometheus", len(used))
	})

	t.Run("EveryPanelQueryReturnsData", func(t *testing.T) {
		var counts []string
		for _, p := range panels {
			expr := grafanaVars.Replace(p.expr)
			var series int
			until(t, p.panel+": "+expr, 30*time.Second, func() error {
				res, err := prom.queryRange(expr, start, time.Now(), time.Second)
				if err != nil {
					return retry.FatalError{Underlying: fmt.Errorf("panel %q: %w", p.panel, err)}
				}
				if len(res) == 0 {
					return errorf("panel %q: no data yet", p.panel)
				}
				series = len(res)
				return nil
			})
			counts = append(counts, fmt.Sprintf("%s=%d", p.panel, series))
		}
		for _, v := range []string{"job", "instance"} {
			values, err := prom.labelValues(v, `websocket_connections_active{job="switchboard"}`)
			if err != nil || len(values) == 0 {
				t.Errorf("variable %s: label_values gave %v, %v; want values", v, values, err)
			}
		}
		report.Logf(t, "panels: %d queries returned data; series per query: %s", len(panels), strings.Join(counts, ", "))
	})

	t.Run("EveryAlertEvaluates", func(t *testing.T) {
		for _, r := range rules {
			if _, err := prom.query(r.Expr); err != nil {
				t.Errorf("%s: %v", r.Alert, err)
			}
		}
		until(t, "every rule evaluated without error", 30*time.Second, func() error {
			health, err := prom.ruleHealth()
			if err != nil {
				return err
			}
			for _, r := range rules {
				if health[r.Alert] != "ok" {
					return errorf("%s: health %q", r.Alert, health[r.Alert])
				}
			}
			return nil
		})
		// An instance scraped before its first readiness check counts as
		// not ready, so an alert may go pending at start-up; on a healthy
		// target every one is inactive by the next evaluations.
		until(t, "no alert active on a healthy target", 30*time.Second, func() error {
			active, err := prom.alerts()
			if err != nil {
				return err
			}
			if len(active) > 0 {
				return errorf("alerts active: %v", active)
			}
			return nil
		})
	})

	t.Run("KilledInstanceAlertsGoPendingThenFiring", func(t *testing.T) {
		// Test-only: every `for` becomes 5s so that a state change shows in seconds.
		short := regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAll(dashboards.Alerts, []byte("$1 5s"))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.Prometheus.ReplaceRules(ctx, short); err != nil {
			t.Fatal(err)
		}
		defer l.Prometheus.ReplaceRules(context.Background(), dashboards.Alerts)
		until(t, "Prometheus runs the rules with for: 5s", 10*time.Second, func() error {
			d, err := prom.ruleDuration("SwitchboardInstanceDown")
			if err != nil || d != 5 {
				return errorf("for = %vs, %v", d, err)
			}
			return nil
		})
		victim := l.Chats[1]
		killed := time.Now()
		if err := s.Kill(ctx, victim.ID); err != nil {
			t.Fatal(err)
		}
		down := &watched{alert: "SwitchboardInstanceDown", instance: victim.Addr()}
		below := &watched{alert: "SwitchboardInstancesBelowMinimum"}
		watchAlerts(t, prom, killed, down, below)
		report.Logf(t, "kill %s: %s; %s", victim.ID, down, below)

		// A survivor cut off from Redis turns unready without draining.
		stopped := time.Now()
		if err := s.StopRedis(ctx); err != nil {
			t.Fatal(err)
		}
		notReady := &watched{alert: "SwitchboardInstanceNotReady", instance: l.Chats[0].Addr()}
		watchAlerts(t, prom, stopped, notReady)
		report.Logf(t, "stop Redis: on %s %s", l.Chats[0].ID, notReady)

		if err := s.StartRedis(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx, victim.ID); err != nil {
			t.Fatal(err)
		}
		resolved := time.Now()
		// Redis errors stay above their threshold for the 5m of their rate window.
		until(t, "instance and readiness alerts resolved once the instance and Redis are back", time.Minute, func() error {
			active, err := prom.alerts()
			if err != nil {
				return err
			}
			for _, a := range active {
				for _, w := range []*watched{down, below, notReady} {
					if a.Labels["alertname"] == w.alert {
						return errorf("%s still %s", w.alert, a.State)
					}
				}
			}
			return nil
		})
		report.Logf(t, "instance and Redis back: those alerts resolved within %s", time.Since(resolved).Round(100*time.Millisecond))
	})

	t.Run("RedisDownAlertReachesAWebhookAndResolves", func(t *testing.T) { redisDownAlertReachesAWebhook(t, s, l, prom) })
}

// watched is an alert, on one instance if set, and when it was first seen
// pending and firing.
type watched struct {
	alert, instance string
	pending, firing time.Duration
}

func (w *watched) String() string {
	return fmt.Sprintf("%s pending after %s, firing after %s", w.alert, w.pending.Round(100*time.Millisecond), w.firing.Round(100*time.Millisecond))
}

// watchAlerts polls Prometheus until each alert has been seen pending and
// then firing, timing both from since.
func watchAlerts(t *testing.T, prom prometheusAPI, since time.Time, ws ...*watched) {
	t.Helper()
	until(t, "alerts pending, then firing", 30*time.Second, func() error {
		active, err := prom.alerts()
		if err != nil {
			return err
		}
		for _, w := range ws {
			for _, a := range active {
				if a.Labels["alertname"] != w.alert || w.instance != "" && a.Labels["instance"] != w.instance {
					continue
				}
				switch {
				case a.State == "pending" && w.pending == 0:
					w.pending = time.Since(since)
				case a.State == "firing" && w.pending == 0:
					return retry.FatalError{Underlying: fmt.Errorf("%s firing without having been seen pending", w.alert)}
				case a.State == "firing" && w.firing == 0:
					w.firing = time.Since(since)
				}
			}
		}
		for _, w := range ws {
			if w.firing == 0 {
				return errorf("%s", w)
			}
		}
		return nil
	})
}

type panelQuery struct{ panel, expr string }

// dashboardQueries reads every query of switchboard.json, the file ops import.
func dashboardQueries(t *testing.T) []panelQuery {
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dashboards.Dashboard, &d); err != nil {
		t.Fatal(err)
	}
	var qs []panelQuery
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			qs = append(qs, panelQuery{p.Title, q.Expr})
		}
	}
	return qs
}

func alertRules(t *testing.T) []grafana.Rule {
	rules, err := dashboards.AlertRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// exportedNames are the sample names an instance's /metrics exposes; a
// labelled series shows once its first label value is used.
func exportedNames(t *testing.T, base string) map[string]bool {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[line[:strings.IndexAny(line, "{ ")]] = true
	}
	return names
}

// prometheusAPI is the part of Prometheus's HTTP API the check reads.
type prometheusAPI string

type alert struct {
	Labels map[string]string
	State  string
}

func (p prometheusAPI) get(path string, params url.Values, into any) error {
	resp, err := http.Get(string(p) + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status, Error string
		Data          json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s %v: %s", path, params, body.Error)
	}
	return json.Unmarshal(body.Data, into)
}

func (p prometheusAPI) query(expr string) ([]json.RawMessage, error) {
	var data struct{ Result []json.RawMessage }
	err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data)
	return data.Result, err
}

func (p prometheusAPI) queryRange(expr string, from, to time.Time, step time.Duration) ([]json.RawMessage, error) {
	var data struct{ Result []json.RawMessage }
	err := p.get("/api/v1/query_range", url.Values{
		"query": {expr}, "start": {unix(from)}, "end": {unix(to)}, "step": {step.String()},
	}, &data)
	return data.Result, err
}

func (p prometheusAPI) labelValues(label, match string) ([]string, error) {
	var values []string
	err := p.get("/api/v1/label/"+label+"/values", url.Values{"match[]": {match}}, &values)
	return values, err
}

func (p prometheusAPI) alerts() ([]alert, error) {
	var data struct{ Alerts []alert }
	err := p.get("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

type ruleState struct {
	Name, Health string
	Duration     float64
}

func (p prometheusAPI) rules() ([]ruleState, error) {
	var data struct{ Groups []struct{ Rules []ruleState } }
	err := p.get("/api/v1/rules", url.Values{"type": {"alert"}}, &data)
	var all []ruleState
	for _, g := range data.Groups {
		all = append(all, g.Rules...)
	}
	return all, err
}

func (p prometheusAPI) ruleHealth() (map[string]string, error) {
	rules, err := p.rules()
	health := map[string]string{}
	for _, r := range rules {
		health[r.Name] = r.Health
	}
	return health, err
}

func (p prometheusAPI) ruleDuration(name string) (float64, error) {
	rules, err := p.rules()
	if i := slices.IndexFunc(rules, func(r ruleState) bool { return r.Name == name }); i >= 0 {
		return rules[i].Duration, err
	}
	return 0, fmt.Errorf("no rule %s: %v", name, err)
}

func unix(t time.Time) string { return fmt.Sprintf("%.3f", float64(t.UnixMilli())/1000) }
