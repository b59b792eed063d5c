package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/blueprint"
)

// hpaSample is the chat HPA's state at one moment.
type hpaSample struct {
	at               time.Duration
	current, desired int
	perPod           float64 // connections per pod, as the HPA last read them; -1 unread
}

func (s hpaSample) String() string {
	return fmt.Sprintf("+%ds %d→%d (%.1f/pod)", int(s.at.Seconds()), s.current, s.desired, s.perPod)
}

// hpaFollowsConnections proves the HPA acts on the connections metric
// that prometheus-adapter serves: with the target lowered to
// hpaTarget connections per pod and the scale-down window shortened (stack
// config, one more `pulumi up`), it opens enough connections for one more
// pod, sees the Deployment scaled out, closes them and sees it scaled back
// in. Replica counts over time go to the log.
func hpaFollowsConnections(ctx context.Context, t *testing.T, stack auto.Stack, cfg map[string]string, jwt string) {
	const hpaTarget, window = 10, "30s"
	if err := stack.SetAllConfig(ctx, auto.ConfigMap{
		"switchboard:connectionsPerPod": {Value: fmt.Sprint(hpaTarget)},
		"switchboard:scaleDownWindow":   {Value: window},
	}); err != nil {
		t.Fatalf("config: %v", err)
	}
	began := time.Now()
	if _, err := stack.Up(ctx); err != nil {
		t.Fatalf("pulumi up with connectionsPerPod=%d, scaleDownWindow=%s: %v", hpaTarget, window, err)
	}
	logf(t, "pulumi up with connectionsPerPod=%d, scaleDownWindow=%s: %s", hpaTarget, window, time.Since(began).Round(time.Second))

	ns := cfg["switchboard:namespace"]
	kubectl := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--context", cfg["switchboard:kubeContext"]}, args...)...).CombinedOutput()
		return string(out), err
	}
	// The adapter answers for every chat pod before anything is measured.
	metricURL := fmt.Sprintf("/apis/custom.metrics.k8s.io/v1beta2/namespaces/%s/pods/*/%s?labelSelector=app.kubernetes.io/name%%3Dchat", ns, blueprint.ConnectionsMetric)
	retry.DoWithRetry(t, "prometheus-adapter serves the chat pods' connections", 36, 5*time.Second, func() (string, error) {
		out, err := kubectl("get", "--raw", metricURL)
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, out)
		}
		var list struct{ Items []json.RawMessage }
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) == 0 {
			return "", fmt.Errorf("no pods in %s (%v)", out, err)
		}
		return "", nil
	})

	hpa := func() (hpaSample, error) {
		out, err := kubectl("-n", ns, "get", "hpa", "chat", "-o", "json")
		if err != nil {
			return hpaSample{}, fmt.Errorf("%v: %s", err, out)
		}
		var h struct {
			Status struct {
				CurrentReplicas, DesiredReplicas int
				CurrentMetrics                   []struct {
					Pods *struct {
						Metric  struct{ Name string }
						Current struct{ AverageValue string }
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			return hpaSample{}, err
		}
		s := hpaSample{at: time.Since(began), current: h.Status.CurrentReplicas, desired: h.Status.DesiredReplicas, perPod: -1}
		for _, m := range h.Status.CurrentMetrics {
			if m.Pods != nil && m.Pods.Metric.Name == blueprint.ConnectionsMetric {
				if q, err := resource.ParseQuantity(m.Pods.Current.AverageValue); err == nil {
					s.perPod = q.AsApproximateFloat64()
				}
			}
		}
		return s, nil
	}
	var timeline []hpaSample
	// until samples the HPA every 5 s until done holds, or fails after limit.
	until := func(what string, limit time.Duration, done func(hpaSample) bool) {
		t.Helper()
		for end := time.Now().Add(limit); ; time.Sleep(5 * time.Second) {
			s, err := hpa()
			if err == nil {
				timeline = append(timeline, s)
				if done(s) {
					return
				}
			}
			if time.Now().After(end) {
				t.Fatalf("%s: not within %s (last error %v); HPA over time: %v", what, limit, err, timeline)
			}
		}
	}
	base, err := hpa()
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	// (base+1)·target − 2 connections: base pods average more than the
	// target past the HPA's 10 % tolerance, and base+1 pods less, so it
	// settles at exactly one more pod.
	n := (base.current+1)*hpaTarget - 2
	url := strings.Replace(blueprint.KindEndpoint, "http", "ws", 1) + "/ws"
	var clients []*client.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range n {
		token, err := auth.Mint([]byte(jwt), fmt.Sprintf("hpa-%d", i), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		dial, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := client.Dial(dial, client.Options{URL: url, Token: token})
		cancel()
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, n, err)
		}
		clients = append(clients, c)
	}
	logf(t, "%d connections open on %d chat pods (target %d per pod)", n, base.current, hpaTarget)
	until("the HPA scales out", 5*time.Minute, func(s hpaSample) bool { return s.current > base.current })
	out := timeline[len(timeline)-1]
	for _, c := range clients {
		c.Close()
	}
	clients = nil
	logf(t, "scaled out to %d pods at %s; connections closed", out.current, out.at.Round(time.Second))
	until("the HPA scales back in", 6*time.Minute, func(s hpaSample) bool { return s.current == base.current })
	logf(t, "HPA over time (replicas current→desired, connections per pod): %v", timeline)
}
