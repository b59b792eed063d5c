package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/dashboards"
	"github.com/switchboard-dev/switchboard/tests/target"
)

// A real fault reaches a receiver: Redis stopped turns the instances not
// ready, SwitchboardInstanceNotReady fires in Prometheus, Alertmanager
// notifies the webhook this test runs (and the target's own alert log,
// what `make up` shows), and notifies it again, resolved, once Redis is
// back. Every `for` is 5s here, as in KilledInstanceAlertsGoPendingThenFiring.
func redisDownAlertReachesAWebhook(t *testing.T, s *suite, l *target.Local, prom prometheusAPI) {
	const alert = "SwitchboardInstanceNotReady"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook := chattest.StartAlertWebhook(t, "127.0.0.1:0")
	if err := l.Alertmanager.SetWebhooks(ctx, fmt.Sprintf("http://%s/alerts", hook.Addr)); err != nil {
		t.Fatal(err)
	}
	defer l.Alertmanager.SetWebhooks(context.Background())
	short := regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAll(dashboards.Alerts, []byte("$1 5s"))
	if err := l.Prometheus.ReplaceRules(ctx, short); err != nil {
		t.Fatal(err)
	}
	defer l.Prometheus.ReplaceRules(context.Background(), dashboards.Alerts)
	until(t, "Prometheus runs the rules with for: 5s, no instance unready", 30*time.Second, func() error {
		if d, err := prom.ruleDuration(alert); err != nil || d != 5 {
			return errorf("for = %vs, %v", d, err)
		}
		active, err := prom.alerts()
		if err != nil {
			return err
		}
		for _, a := range active {
			if a.Labels["alertname"] == alert {
				return errorf("%s %s on %s before the fault", alert, a.State, a.Labels["instance"])
			}
		}
		return nil
	})

	instances := map[string]bool{}
	for _, c := range l.Chats {
		instances[c.Addr()] = true
	}
	stopped := time.Now()
	if err := s.StopRedis(ctx); err != nil {
		t.Fatal(err)
	}
	redisDown := true
	defer func() {
		if redisDown {
			s.StartRedis(context.Background())
		}
	}()
	var firing chattest.Received
	var idx int
	until(t, alert+" firing at the webhook", 90*time.Second, func() error {
		var ok bool
		firing, idx, ok = hook.Find(stopped, alert, "firing", func(labels map[string]string, startsAt time.Time) bool {
			return instances[labels["instance"]] && startsAt.After(stopped)
		})
		if !ok {
			return errorf("no firing %s notified yet (%d notifications)", alert, hook.Count())
		}
		return nil
	})
	a := firing.N.Alerts[idx]
	toFiring := firing.At.Sub(stopped)
	if firing.N.Version != "4" || firing.N.Receiver != "local" || firing.N.Status != "firing" {
		t.Errorf("notification version %q, receiver %q, status %q: want 4, local, firing", firing.N.Version, firing.N.Receiver, firing.N.Status)
	}
	if a.Labels["severity"] != "warning" || a.Labels["job"] != "switchboard" || a.Annotations["summary"] == "" ||
		a.Annotations["runbook_url"] == "" || a.Fingerprint == "" {
		t.Errorf("firing alert labels %v, annotations %v: want severity warning, job switchboard, a summary and a runbook_url", a.Labels, a.Annotations)
	}
	// What the user sees without a receiver of their own: Alertmanager
	// lists the alert (amtool alert query), the alert log has its line.
	amAlerts(t, l.Alertmanager.URL(), alert, a.Labels["instance"])
	logged(t, l.AlertLog.Path, alert, a.Labels["instance"], a.StartsAt, "firing")

	restarted := time.Now()
	if err := s.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	redisDown = false
	var resolved chattest.Received
	until(t, alert+" resolved at the webhook", 90*time.Second, func() error {
		var ok bool
		resolved, _, ok = hook.Find(restarted, alert, "resolved", func(labels map[string]string, startsAt time.Time) bool {
			return labels["instance"] == a.Labels["instance"] && startsAt.Equal(a.StartsAt)
		})
		if !ok {
			return errorf("no resolved %s on %s notified yet", alert, a.Labels["instance"])
		}
		return nil
	})
	logged(t, l.AlertLog.Path, alert, a.Labels["instance"], a.StartsAt, "resolved")
	report.Logf(t, "Redis stopped: %s on %s reached the webhook firing %s after the stop (every for: 5s, scrape and evaluation 1s, group_wait 1s); "+
		"Redis started again: resolved %s after the restart (group_interval 2s)",
		alert, a.Labels["instance"], toFiring.Round(100*time.Millisecond), resolved.At.Sub(restarted).Round(100*time.Millisecond))
}

// amAlerts checks that Alertmanager's API lists alert on instance as active.
func amAlerts(t *testing.T, base, alert, instance string) {
	t.Helper()
	until(t, "Alertmanager lists "+alert, 10*time.Second, func() error {
		q := url.Values{"filter": {`alertname="` + alert + `"`, `instance="` + instance + `"`}, "active": {"true"}}
		resp, err := http.Get(base + "/api/v2/alerts?" + q.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var as []struct {
			Status    struct{ State string }
			Receivers []struct{ Name string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
			return retry.FatalError{Underlying: fmt.Errorf("/api/v2/alerts: %s: %w", resp.Status, err)}
		}
		if len(as) != 1 || as[0].Status.State != "active" || !slices.ContainsFunc(as[0].Receivers, func(r struct{ Name string }) bool { return r.Name == "local" }) {
			return errorf("Alertmanager lists %+v, want %s on %s active for receiver local", as, alert, instance)
		}
		return nil
	})
}

// logged checks that the alert log holds a notification of alert on
// instance, started at startsAt, in status.
func logged(t *testing.T, path, alert, instance string, startsAt time.Time, status string) {
	t.Helper()
	until(t, "the alert log has "+alert+" "+status, 10*time.Second, func() error {
		f, err := os.Open(path)
		if err != nil {
			return retry.FatalError{Underlying: err}
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var n local.Notification
			if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
				return retry.FatalError{Underlying: fmt.Errorf("%s: a line that is not a notification: %w", path, err)}
			}
			for _, a := range n.Alerts {
				if a.Labels["alertname"] == alert && a.Labels["instance"] == instance && a.StartsAt.Equal(startsAt) && a.Status == status {
					return nil
				}
			}
		}
		return errorf("%s: no %s %s on %s", path, status, alert, instance)
	})
}
