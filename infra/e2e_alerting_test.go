package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/tests/target"
)

// notReadyAlert is the rule a Redis outage fires (dashboards/alerts.yaml).
const notReadyAlert = "SwitchboardInstanceNotReady"

// kindWebhook starts an Alertmanager webhook receiver on this host and
// returns it with the URL the cluster's pods reach it at: the kind
// network's gateway, which is this host.
func kindWebhook(t *testing.T) (*chattest.AlertWebhook, string) {
	out, err := exec.Command("docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
	if err != nil {
		t.Fatalf("docker network inspect kind: %v", err)
	}
	var gw string
	for _, a := range strings.Fields(string(out)) {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			gw = a
		}
	}
	if gw == "" {
		t.Fatalf("the kind network has no IPv4 gateway: %q", out)
	}
	hook := chattest.StartAlertWebhook(t, "0.0.0.0:0")
	return hook, fmt.Sprintf("http://%s:%d/alerts", gw, hook.Port())
}

// promCount is how many series the in-cluster Prometheus answers q with,
// through the API server's proxy to prom (prometheusService).
func promCount(ctx context.Context, kubeContext, prom, q string) (int, error) {
	out, err := exec.CommandContext(ctx, "kubectl", "--context", kubeContext, "get", "--raw", prom+"/proxy/api/v1/query?query="+url.QueryEscape(q)).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	var r struct {
		Status string
		Data   struct{ Result []json.RawMessage }
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Status != "success" {
		return 0, fmt.Errorf("%s: %v", out, err)
	}
	return len(r.Data.Result), nil
}

// redisStoppedAlertReachesTheWebhook is the alerting proof through the
// cluster: Redis scaled to zero turns the chat pods not ready,
// SwitchboardInstanceNotReady fires after its for: 2m in the in-cluster
// Prometheus, and the stack's alert route (alertReceivers: the test's
// webhook) delivers it; once Redis is back it is delivered resolved. The
// times from the stop and from the restart go to the log.
func redisStoppedAlertReachesTheWebhook(ctx context.Context, t *testing.T, cfg map[string]string, hook *chattest.AlertWebhook) {
	ns, kc := cfg["switchboard:namespace"], cfg["switchboard:kubeContext"]
	kubectl := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--context", kc, "-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	prom, err := prometheusService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// No alert of the suite's own outages still firing: this one must be new.
	firing := fmt.Sprintf(`ALERTS{alertname=%q,alertstate="firing",namespace=%q}`, notReadyAlert, ns)
	retry.DoWithRetry(t, "no "+notReadyAlert+" firing before the stop", 36, 5*time.Second, func() (string, error) {
		n, err := promCount(ctx, kc, prom, firing)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d firing", n)
		}
		return "", err
	})

	// The suite's target stops and starts Redis in either redisMode.
	redis := target.NewKubernetes(target.KubernetesOptions{KubeContext: kc, Namespace: ns})
	defer redis.Close()
	stopped := time.Now()
	if err := redis.StopRedis(ctx); err != nil {
		t.Fatal(err)
	}
	redisDown := true
	start := func() error {
		redisDown = false
		return redis.StartRedis(ctx)
	}
	defer func() {
		if redisDown {
			_ = start()
		}
	}()
	var fired chattest.Received
	var idx int
	retry.DoWithRetry(t, notReadyAlert+" firing at the webhook", 72, 5*time.Second, func() (string, error) {
		var ok bool
		fired, idx, ok = hook.Find(stopped, notReadyAlert, "firing", func(labels map[string]string, startsAt time.Time) bool {
			return labels["namespace"] == ns && startsAt.After(stopped)
		})
		if !ok {
			return "", fmt.Errorf("not notified yet (%d notifications in all)", hook.Count())
		}
		return "", nil
	})
	a := fired.N.Alerts[idx]
	if fired.N.Version != "4" || a.Labels["severity"] != "warning" || a.Annotations["runbook_url"] == "" {
		t.Errorf("notification version %q, labels %v, annotations %v: want 4, severity warning and a runbook_url", fired.N.Version, a.Labels, a.Annotations)
	}

	restarted := time.Now()
	if err := start(); err != nil {
		t.Fatal(err)
	}
	var resolved chattest.Received
	retry.DoWithRetry(t, notReadyAlert+" resolved at the webhook", 72, 5*time.Second, func() (string, error) {
		var ok bool
		resolved, _, ok = hook.Find(restarted, notReadyAlert, "resolved", func(labels map[string]string, startsAt time.Time) bool {
			return labels["namespace"] == ns && labels["instance"] == a.Labels["instance"] && startsAt.Equal(a.StartsAt)
		})
		if !ok {
			return "", fmt.Errorf("not notified yet")
		}
		return "", nil
	})
	if err := kubectl("wait", "--for=condition=Ready", "pod", "-l", "app.kubernetes.io/name=chat", "--timeout=3m"); err != nil {
		t.Error(err)
	}
	logf(t, "Redis scaled to 0: %s on %s reached the webhook (receiver %s) firing %s after the stop (for: 2m, scrape and evaluation 15s, group_wait %s); "+
		"Redis back: resolved %s after the restart",
		notReadyAlert, a.Labels["instance"], fired.N.Receiver, fired.At.Sub(stopped).Round(time.Second), cfg["switchboard:alertGroupWait"],
		resolved.At.Sub(restarted).Round(time.Second))
}
