package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	http_helper "github.com/gruntwork-io/terratest/modules/http-helper"
	"github.com/gruntwork-io/terratest/modules/retry"
	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/examples/echo/deploy/echostack"
)

// echoOnKind deploys the echo example (examples/echo/deploy, its program
// echostack.Program run inline) on the dev stack's cluster, as a user of
// blueprint.Service other than the chat server, and proves what the example
// promises (docs/component.md, "The echo example"): its pods Ready behind
// its own edge, a message echoed through the Endpoint it exports, and its
// HPA reading its own websocket_connections_active through the dev stack's
// Prometheus and prometheus-adapter; then `pulumi destroy` leaves no echo
// namespace. cfg is the dev stack's settings: the echo's edge runs the dev
// stack's edge image where the run sets one (the offline path's, built here).
func echoOnKind(ctx context.Context, t *testing.T, cfg map[string]string) {
	project, settings := echoStackFile(t)
	if image := cfg["switchboard:edgeImage"]; image != "" {
		settings[project+":edgeImage"] = image
	}
	kubeContext := settings[project+":kubeContext"]
	kubectl := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--context", kubeContext, "-n", "echo"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	stack, outputs := up(ctx, t, project, echostack.Program, "dev", settings, nil)
	destroyed := false
	defer func() {
		if !destroyed {
			if _, err := stack.Destroy(ctx); err != nil {
				t.Errorf("pulumi destroy of the echo stack: %v", err)
			}
		}
		_ = stack.Workspace().RemoveStack(ctx, stack.Name())
	}()
	endpoint := fmt.Sprint(outputs["echoUrl"].Value)
	if endpoint != echostack.Endpoint {
		t.Errorf("echoUrl %q, want %s", endpoint, echostack.Endpoint)
	}

	// Its pods and its edge's, Ready with their real probes.
	if out, err := kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=5m"); err != nil {
		t.Fatalf("echo pods not Ready: %v\n%s", err, out)
	}
	pods, _ := kubectl("get", "pods", "-o", "wide")
	logf(t, "echo pods after pulumi up:\n%s", pods)
	replicas := echostack.Args("", "", "").App.MinReplicas
	names, err := kubectl("get", "pods", "-l", "app.kubernetes.io/name=echo", "-o", "jsonpath={.items[*].metadata.name}")
	if n := len(strings.Fields(names)); err != nil || n != replicas {
		t.Fatalf("%d echo pods (%q, %v), want its %d minimum replicas", n, names, err, replicas)
	}
	http_helper.HttpGetWithRetryWithCustomValidation(t, endpoint+"/nginx-health", nil, 30, 2*time.Second,
		func(status int, _ string) bool { return status == 200 })

	// Through the edge, at the Endpoint the stack exports: each client's
	// message comes back. The clients stay open for the metric below.
	const clients = 3
	ws := "ws" + strings.TrimPrefix(endpoint, "http") + "/ws"
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range clients {
		msg := fmt.Sprintf("echo %d %d", i, time.Now().UnixNano())
		c := retry.DoWithRetryInterface(t, "a WebSocket through "+ws, 15, 2*time.Second, func() (any, error) {
			return dialEcho(ctx, ws, msg)
		}).(*websocket.Conn)
		conns = append(conns, c)
	}
	logf(t, "%d WebSocket clients through %s: each message echoed", clients, ws)

	// prometheus-adapter serves the echo pods' gauge from Prometheus (which
	// scrapes them through the echo's ServiceMonitor) as the clients open,
	// and the HPA reads it: no <unknown> in its current metrics. Up to 8
	// minutes: the operator writes the new scrape job into Prometheus's
	// configuration Secret at once, but the pod sees it only after the
	// kubelet's sync period plus its cache's delay (Kubernetes docs, Secrets:
	// "Mounted Secrets are updated automatically"): 3 minutes in a run here.
	metric := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/echo/pods/*/" + blueprint.ConnectionsMetric + "?labelSelector=app.kubernetes.io/name%3Decho"
	began := time.Now()
	served := retry.DoWithRetry(t, "prometheus-adapter serves the echo's open connections", 96, 5*time.Second, func() (string, error) {
		out, err := kubectl("get", "--raw", metric)
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, out)
		}
		var list struct {
			Items []struct {
				DescribedObject struct{ Name string }
				Value           resource.Quantity
			}
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return "", err
		}
		sum, per := 0.0, []string{}
		for _, it := range list.Items {
			sum += it.Value.AsApproximateFloat64()
			per = append(per, it.DescribedObject.Name+"="+it.Value.String())
		}
		if len(list.Items) != replicas || sum != clients {
			return "", fmt.Errorf("the echo pods' %s: %v, summing to %v; want %d pods summing to %d", blueprint.ConnectionsMetric, per, sum, replicas, clients)
		}
		return strings.Join(per, " "), nil
	})
	logf(t, "prometheus-adapter serves %s of the echo pods %s after %s", blueprint.ConnectionsMetric, served, time.Since(began).Round(time.Second))
	read := retry.DoWithRetry(t, "the echo HPA reads the connections per pod", 36, 5*time.Second, func() (string, error) {
		out, err := kubectl("get", "hpa", "echo", "-o", "json")
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, out)
		}
		var hpa struct {
			Status struct {
				CurrentReplicas int
				CurrentMetrics  []struct {
					Pods *struct {
						Metric  struct{ Name string }
						Current struct{ AverageValue resource.Quantity }
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &hpa); err != nil {
			return "", err
		}
		for _, m := range hpa.Status.CurrentMetrics {
			if m.Pods != nil && m.Pods.Metric.Name == blueprint.ConnectionsMetric && m.Pods.Current.AverageValue.AsApproximateFloat64() > 0 {
				return fmt.Sprintf("%s per pod over %d pods", m.Pods.Current.AverageValue.String(), hpa.Status.CurrentReplicas), nil
			}
		}
		described, _ := kubectl("describe", "hpa", "echo")
		return "", fmt.Errorf("no %s read yet:\n%s", blueprint.ConnectionsMetric, described)
	})
	logf(t, "the echo HPA reads %s %s, %s after the clients opened", blueprint.ConnectionsMetric, read, time.Since(began).Round(time.Second))

	// pulumi destroy takes the namespace with it.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	began = time.Now()
	if _, err := stack.Destroy(ctx); err != nil {
		t.Fatalf("pulumi destroy of the echo stack: %v", err)
	}
	destroyed = true
	logf(t, "pulumi destroy -s %s (echo): %s", stack.Name(), time.Since(began).Round(time.Second))
	retry.DoWithRetry(t, "the echo namespace is gone", 24, 5*time.Second, func() (string, error) {
		out, err := exec.CommandContext(ctx, "kubectl", "--context", kubeContext, "get", "namespace", "echo").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "NotFound") {
			return "", fmt.Errorf("namespace echo still there: %s", out)
		}
		return "", nil
	})
	logf(t, "namespace echo gone %s after pulumi destroy began", time.Since(began).Round(time.Second))
}

// dialEcho opens a WebSocket to at, sends msg and wants it back.
func dialEcho(ctx context.Context, at, msg string) (*websocket.Conn, error) {
	dial, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, resp, err := websocket.DefaultDialer.DialContext(dial, at, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", at, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", at, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.Close()
		return nil, fmt.Errorf("send to %s: %w", at, err)
	}
	kind, got, err := c.ReadMessage()
	if err != nil || kind != websocket.TextMessage || string(got) != msg {
		c.Close()
		return nil, fmt.Errorf("sent %q to %s, read %q (type %d, %v)", msg, at, got, kind, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// echoStackFile is the echo example's project name (its Pulumi.yaml) and
// the settings of its dev stack (Pulumi.dev.yaml), full keys.
func echoStackFile(t *testing.T) (string, map[string]string) {
	dir := "../examples/echo/deploy/"
	var project struct{ Name string }
	var stack struct{ Config map[string]string }
	for file, into := range map[string]any{"Pulumi.yaml": &project, "Pulumi.dev.yaml": &stack} {
		b, err := os.ReadFile(dir + file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatalf("%s%s: %v", dir, file, err)
		}
	}
	if project.Name == "" || stack.Config[project.Name+":kubeContext"] == "" {
		t.Fatalf("%s: want a project name and its dev stack's kubeContext, have %q and %v", dir, project.Name, stack.Config)
	}
	return project.Name, stack.Config
}
