package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
)

// yamlExample is the Pulumi YAML program of examples/yaml; pluginLine is
// how it finds the switchboard plugin (plugins.providers, no registry).
const (
	yamlExample = "../examples/yaml"
	pluginLine  = "path: ../../bin"
	yamlNS      = "echo-yaml"
)

// Issue 28 item 4: the component from a language other than Go. The echo
// server of examples/yaml, declared in Pulumi YAML, goes through the real
// engine (the pulumi CLI, pulumi-language-yaml and the switchboard plugin,
// which `make e2e` builds) onto the dev stack's cluster, whose Prometheus,
// metrics-server and prometheus-adapter it relies on; it answers a
// WebSocket message through its edge, then `pulumi destroy` removes it.
func yamlEchoAnswers(ctx context.Context, t *testing.T, cfg map[string]string) {
	need(t, "the Pulumi YAML language host and the switchboard plugin (`make e2e` builds them)", "pulumi-language-yaml", "pulumi-resource-switchboard")
	plugin, err := exec.LookPath("pulumi-resource-switchboard")
	if err != nil {
		t.Fatal(err)
	}
	// A copy of the program: the stack's settings stay out of the
	// repository, and the plugin is the one `make e2e` built.
	src, err := os.ReadFile(filepath.Join(yamlExample, "Pulumi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte(pluginLine)) {
		t.Fatalf("examples/yaml/Pulumi.yaml has no %q: update this test with the way it finds the plugin", pluginLine)
	}
	dir := t.TempDir()
	program := bytes.Replace(src, []byte(pluginLine), []byte("path: "+filepath.Dir(plugin)), 1)
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), program, 0o644); err != nil {
		t.Fatal(err)
	}
	stack, err := auto.UpsertStackLocalSource(ctx, "dev", dir, auto.EnvVars(map[string]string{
		"PULUMI_BACKEND_URL":       "file://" + t.TempDir(),
		"PULUMI_CONFIG_PASSPHRASE": "switchboard-test",
	}))
	if err != nil {
		t.Fatalf("stack of examples/yaml: %v", err)
	}
	config := auto.ConfigMap{"kubeContext": {Value: cfg["switchboard:kubeContext"]}}
	// Offline, the edge is the NGINX image built here (SWITCHBOARD_STACK_OVERRIDES).
	if img := cfg["switchboard:edgeImage"]; img != "" {
		config["edgeImage"] = auto.ConfigValue{Value: img}
	}
	if err := stack.SetAllConfig(ctx, config); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	res, err := stack.Up(ctx)
	if err != nil {
		t.Fatalf("pulumi up of examples/yaml: %v", err)
	}
	logf(t, "pulumi up of examples/yaml: %s", time.Since(began).Round(time.Second))
	defer func() {
		began := time.Now()
		if _, err := stack.Destroy(ctx); err != nil {
			t.Errorf("pulumi destroy of examples/yaml: %v", err)
		}
		logf(t, "pulumi destroy of examples/yaml: %s", time.Since(began).Round(time.Second))
		if out, err := exec.CommandContext(ctx, "kubectl", "--context", cfg["switchboard:kubeContext"], "get", "namespace", yamlNS).CombinedOutput(); err == nil {
			t.Errorf("namespace %s still there after pulumi destroy:\n%s", yamlNS, out)
		}
	}()
	if url := res.Outputs["echoUrl"].Value; url != "http://localhost:8082" {
		t.Errorf("echoUrl %v, want the endpoint the program gives, http://localhost:8082", url)
	}
	kubectl := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, "kubectl", append([]string{"--context", cfg["switchboard:kubeContext"], "-n", yamlNS}, args...)...)
	}
	if out, err := kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=3m").CombinedOutput(); err != nil {
		t.Fatalf("echo pods not ready: %v\n%s", err, out)
	}
	// The node port is not mapped to the host (infra/kind/cluster.yaml).
	addr := portForward(t, kubectl("port-forward", "svc/edge", ":80"))
	msg := fmt.Sprintf("hello from YAML %d", time.Now().UnixNano())
	var got string
	for end := time.Now().Add(time.Minute); got == "" && time.Now().Before(end); time.Sleep(2 * time.Second) {
		got, err = echoOnce(ctx, "ws://"+addr+"/ws", msg)
		if err != nil {
			logf(t, "echo through the edge: %v (retrying)", err)
		}
	}
	if got != msg {
		t.Fatalf("echo through the edge answered %q, want %q (last error: %v)", got, msg, err)
	}
	logf(t, "the YAML echo answered %q through its edge", got)
}

var forwarding = regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+)`)

// portForward starts cmd, a kubectl port-forward to a free local port,
// stops it when the test ends, and returns the address it listens on.
func portForward(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if m := forwarding.FindStringSubmatch(lines.Text()); m != nil {
			go func() { // drain: kubectl logs each connection
				for lines.Scan() {
				}
			}()
			return m[1]
		}
	}
	t.Fatalf("kubectl port-forward said no address: %s", strings.TrimSpace(stderr.String()))
	return ""
}

// echoOnce sends msg over a new WebSocket to url and returns the answer.
func echoOnce(ctx context.Context, url, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return "", err
	}
	_, b, err := c.ReadMessage()
	return string(b), err
}
