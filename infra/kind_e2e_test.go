package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	test_structure "github.com/gruntwork-io/terratest/modules/test-structure"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"gopkg.in/yaml.v3"
)

// The dev stack on a real kind cluster: `pulumi up -s dev` through the
// Automation API, the behaviour suite through NGINX's host port with kill and
// restart through the Kubernetes API, then `pulumi destroy`.
func TestDevStackOnKind(t *testing.T) {
	for _, tool := range []string{"kind", "docker", "pulumi"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs a kind cluster (kind and a Docker engine) and the pulumi CLI with internet for its plugins: %s is missing here", tool)
		}
	}
	if out, err := exec.Command("kind", "get", "clusters").Output(); err != nil || !strings.Contains(string(out), "switchboard") {
		t.Skip("needs the kind cluster switchboard: `make kind-up` creates it and loads the image")
	}
	ctx := context.Background()
	jwt := randomSecret(t)
	var stack auto.Stack
	test_structure.RunTestStage(t, "deploy", func() { stack = upDev(ctx, t, jwt) })
	defer test_structure.RunTestStage(t, "teardown", func() {
		if _, err := stack.Destroy(ctx); err != nil {
			t.Errorf("pulumi destroy: %v", err)
		}
		_ = stack.Workspace().RemoveStack(ctx, stack.Name())
	})
	test_structure.RunTestStage(t, "validate", func() {
		cfg := devConfig(t)
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-timeout", "30m", "-run", "TestBehaviour", "./tests/")
		cmd.Dir = ".."
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(),
			"SWITCHBOARD_TARGET=kubernetes", "SWITCHBOARD_ENDPOINT="+kindChatURL,
			"SWITCHBOARD_KUBE_CONTEXT="+cfg["switchboard:kubeContext"], "SWITCHBOARD_NAMESPACE="+cfg["switchboard:namespace"],
			"SWITCHBOARD_JWT_SECRET="+jwt)
		if err := cmd.Run(); err != nil {
			t.Errorf("behaviour suite on kind: %v", err)
		}
	})
}

// upDev creates a throwaway stack with Pulumi.dev.yaml's settings and fresh
// secrets, in a local backend, and runs `pulumi up`.
func upDev(ctx context.Context, t *testing.T, jwt string) auto.Stack {
	backend := t.TempDir()
	name := fmt.Sprintf("dev-test-%d", time.Now().Unix())
	stack, err := auto.UpsertStackLocalSource(ctx, name, "..", auto.EnvVars(map[string]string{
		"PULUMI_BACKEND_URL":       "file://" + backend,
		"PULUMI_CONFIG_PASSPHRASE": "switchboard-test",
	}))
	if err != nil {
		t.Fatalf("stack %s: %v", name, err)
	}
	config := auto.ConfigMap{
		"switchboard:jwtSecret":        {Value: jwt, Secret: true},
		"switchboard:databasePassword": {Value: randomSecret(t), Secret: true},
	}
	for k, v := range devConfig(t) {
		config[k] = auto.ConfigValue{Value: v}
	}
	if err := stack.SetAllConfig(ctx, config); err != nil {
		t.Fatalf("config: %v", err)
	}
	began := time.Now()
	if _, err := stack.Up(ctx); err != nil {
		t.Fatalf("pulumi up -s %s: %v", name, err)
	}
	logf(t, "pulumi up -s %s: %s", name, time.Since(began).Round(time.Second))
	return stack
}

// devConfig is the plain configuration of Pulumi.dev.yaml.
func devConfig(t *testing.T) map[string]string {
	b, err := os.ReadFile("../Pulumi.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Config map[string]string }
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("Pulumi.dev.yaml: %v", err)
	}
	return f.Config
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
