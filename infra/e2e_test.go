package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	http_helper "github.com/gruntwork-io/terratest/modules/http-helper"
	test_structure "github.com/gruntwork-io/terratest/modules/test-structure"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/data"
	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// The dev stack on a real kind cluster: `pulumi up` through the Automation
// API (an inline program: the same `program` as `pulumi up`, no Go language
// host), the behaviour suite through NGINX's host port with kills, a rolling
// update, a node drain and the stores' restarts through the Kubernetes API,
// then `pulumi destroy`. `make e2e` (scripts/e2e.sh, docs/e2e.md) makes the
// cluster and runs it with a throwaway PULUMI_HOME: online with kind's node
// image and the engine's provider plugins, offline with the cluster, its
// images, the pulumi CLI and the Kubernetes provider plugin built here.
//
// SWITCHBOARD_STACK_OVERRIDES changes settings of Pulumi.dev.yaml for the
// run; the offline path sets the images it built from Debian packages and
// turns off what would fetch Helm charts from the internet.
func TestDevStackOnKind(t *testing.T) {
	tools := []string{"kind", "docker", "kubectl", "pulumi"}
	// With downloads off (the offline path), the engine takes the provider
	// plugin from PATH or fails; with them on, it downloads the plugin.
	if os.Getenv("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION") == "true" {
		tools = append(tools, "pulumi-resource-kubernetes")
	}
	need(t, "kind, a Docker engine, the pulumi CLI and, offline, its Kubernetes provider plugin (`make e2e` provides them)", tools...)
	cfg := stackFile(t, "dev")
	cluster := strings.TrimPrefix(cfg["switchboard:kubeContext"], "kind-")
	if out, err := exec.Command("kind", "get", "clusters").Output(); err != nil || !strings.Contains(string(out), cluster) {
		t.Skipf("needs the kind cluster %s: `make e2e` (or `make kind-up`) creates it and loads the images", cluster)
	}
	// Settings this machine needs (scripts/e2e.sh sets them): key=value pairs
	// of the switchboard namespace, separated by commas.
	for _, kv := range strings.Split(os.Getenv("SWITCHBOARD_STACK_OVERRIDES"), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			cfg["switchboard:"+k] = v
			logf(t, "setting switchboard:%s=%s (SWITCHBOARD_STACK_OVERRIDES)", k, v)
		}
	}
	// The stack's alert route goes to a webhook this test runs, batched
	// tightly so the alerting proof waits on the rule alone.
	hook, hookURL := kindWebhook(t)
	cfg["switchboard:alertReceivers"] = `[{"name":"e2e-webhook","type":"webhook","url":"` + hookURL + `"}]`
	cfg["switchboard:alertGroupWait"], cfg["switchboard:alertGroupInterval"] = "1s", "10s"
	jwt := randomSecret(t)
	var deployed auto.Stack // for the autoscaling proof, after the suite
	e2e(t, "dev", cfg, auto.ConfigMap{
		"switchboard:jwtSecret":        {Value: jwt, Secret: true},
		"switchboard:databasePassword": {Value: randomSecret(t), Secret: true},
	}, func(ctx context.Context, stack auto.Stack, _ auto.OutputMap) []string {
		deployed = stack
		kubectl := func(args ...string) string {
			out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--context", cfg["switchboard:kubeContext"], "-n", cfg["switchboard:namespace"]}, args...)...).CombinedOutput()
			if err != nil {
				t.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		// Every pod Ready with its real probes, but a Job's, which ends
		// Completed, never Ready (the Redis Cluster's creation Job).
		kubectl("wait", "--for=condition=Ready", "pod", "--all", "--field-selector=status.phase!=Succeeded", "--timeout=5m")
		logf(t, "pods after pulumi up:\n%s", kubectl("get", "pods", "-o", "wide"))
		// The chat page and the health of the edge through the host port kind maps.
		http_helper.HttpGetWithRetryWithCustomValidation(t, blueprint.KindEndpoint+"/nginx-health", nil, 60, 2*time.Second,
			func(status int, _ string) bool { return status == 200 })
		http_helper.HttpGetWithRetryWithCustomValidation(t, blueprint.KindEndpoint+"/", nil, 10, 2*time.Second,
			func(status int, body string) bool {
				return status == 200 && strings.Contains(strings.ToLower(body), "<html")
			})
		try := func(args ...string) (string, error) {
			out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--context", cfg["switchboard:kubeContext"], "-n", cfg["switchboard:namespace"]}, args...)...).CombinedOutput()
			return string(out), err
		}
		// The HPA reads the chat pods' CPU from metrics-server.
		var hpaCPU []int
		for end := time.Now().Add(4 * time.Minute); len(hpaCPU) == 0 && time.Now().Before(end); time.Sleep(10 * time.Second) {
			var hpas struct {
				Items []struct {
					Status struct {
						CurrentMetrics []struct {
							Type     string
							Resource *struct {
								Name    string
								Current struct{ AverageUtilization *int }
							}
						}
					}
				}
			}
			if out, err := try("get", "hpa", "-o", "json"); err == nil && json.Unmarshal([]byte(out), &hpas) == nil {
				for _, h := range hpas.Items {
					for _, m := range h.Status.CurrentMetrics {
						if m.Resource != nil && m.Resource.Name == "cpu" && m.Resource.Current.AverageUtilization != nil {
							hpaCPU = append(hpaCPU, *m.Resource.Current.AverageUtilization)
						}
					}
				}
			}
		}
		if len(hpaCPU) == 0 {
			t.Errorf("the HPA read no CPU metric in 4 minutes:\n%s", kubectl("describe", "hpa"))
		} else {
			logf(t, "HPA reads CPU utilisation %v%%", hpaCPU)
		}
		// The dashboard's queries against the in-cluster Prometheus, once it
		// scrapes the chat pods through the stack's ServiceMonitor.
		prom, err := prometheusService(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := try("get", "--raw", prom+"/proxy/-/ready"); err != nil {
			t.Errorf("no in-cluster Prometheus (%s): %v", prom, err)
		} else {
			promQuery := func(q string) (int, error) { return promCount(ctx, cfg["switchboard:kubeContext"], prom, q) }
			scraped := 0
			for end := time.Now().Add(3 * time.Minute); scraped < 3 && time.Now().Before(end); time.Sleep(10 * time.Second) {
				scraped, _ = promQuery(`websocket_connections_active{namespace="` + cfg["switchboard:namespace"] + `"}`)
			}
			if scraped < 3 {
				t.Errorf("Prometheus scrapes %d chat pods through the ServiceMonitor after 3 minutes, want 3", scraped)
			}
			exprs := dashboardExprs(t)
			vars := strings.NewReplacer("$namespace", cfg["switchboard:namespace"], "$job", ".*", "$instance", ".*", "$__rate_interval", "2m")
			answered, empty := 0, []string{}
			for _, e := range exprs {
				n, err := promQuery(vars.Replace(e))
				switch {
				case err != nil:
					t.Errorf("dashboard query %q: %v", e, err)
				case n == 0:
					empty = append(empty, e)
				default:
					answered++
				}
			}
			logf(t, "in-cluster Prometheus: %d chat pods scraped; %d of %d dashboard queries return data; empty: %q", scraped, answered, len(exprs), empty)
			if answered == 0 {
				t.Errorf("no dashboard query returned data")
			}
		}
		return []string{
			"SWITCHBOARD_ENDPOINT=" + blueprint.KindEndpoint, "SWITCHBOARD_KUBE_CONTEXT=" + cfg["switchboard:kubeContext"],
			"SWITCHBOARD_NAMESPACE=" + cfg["switchboard:namespace"], "SWITCHBOARD_JWT_SECRET=" + jwt,
		}
	}, func(ctx context.Context) {
		// The behaviour suite has run through the NetworkPolicies: NGINX
		// reached the chat pods, the chat pods Redis, Postgres and DNS.
		// Enforced by kube-network-policies: kindnetd's online, the node
		// image's offline (infra/kindnode).
		t.Run("NetworkPoliciesLetChatPodsReachRedis", func(t *testing.T) { chatPodsReachRedis(ctx, t, cfg) })
		t.Run("NetworkPoliciesKeepOtherPodsFromRedis", func(t *testing.T) { unlabelledPodsCannotReachRedis(ctx, t, cfg) })
		t.Run("EdgeHidesMetricsAndReady", func(t *testing.T) {
			for _, path := range []string{"/metrics", "/ready"} {
				http_helper.HttpGetWithRetryWithCustomValidation(t, blueprint.KindEndpoint+path, nil, 5, time.Second,
					func(status int, _ string) bool { return status == 404 })
			}
		})
		t.Run("RedisStoppedAlertReachesTheWebhook", func(t *testing.T) { redisStoppedAlertReachesTheWebhook(ctx, t, cfg, hook) })
		t.Run("EchoExampleDeploysServesAndScalesOnItsGauge", func(t *testing.T) { echoOnKind(ctx, t, cfg) })
		t.Run("YAMLEchoThroughTheProvider", func(t *testing.T) { yamlEchoAnswers(ctx, t, cfg) })
		// Last: it changes the HPA's settings with another `pulumi up`.
		t.Run("HPAScalesOutAndInOnConnections", func(t *testing.T) { hpaFollowsConnections(ctx, t, deployed, cfg, jwt) })
	})
}

// prometheusService is the API server's proxy path to the in-cluster
// Prometheus the dashboard's queries go to. In install mode it is
// kube-prometheus-stack's Service, which the stack also gives
// prometheus-adapter (switchboard:prometheusUrl, a cluster DNS name
// <service>.<namespace>.svc). In existing mode it is the Prometheus
// Operator's governing Service, prometheus-operated, in
// switchboard:prometheusNamespace (the offline path of `make e2e` runs such
// a Prometheus, infra/kindnode/prometheus.yaml).
func prometheusService(cfg map[string]string) (string, error) {
	d := stackconfig.Defaults()
	setting := func(key, fallback string) string {
		if v := cfg["switchboard:"+key]; v != "" {
			return v
		}
		return fallback
	}
	if setting("observability", d.Observability) != stackconfig.Install {
		return "/api/v1/namespaces/" + setting("prometheusNamespace", d.PrometheusNamespace) + "/services/prometheus-operated:9090", nil
	}
	raw := setting("prometheusUrl", d.PrometheusURL)
	bad := fmt.Errorf("switchboard:prometheusUrl %q: want http://<service>.<namespace>.svc:<port>, the in-cluster Prometheus", raw)
	u, err := url.Parse(raw)
	if err != nil {
		return "", bad
	}
	name, rest, _ := strings.Cut(u.Hostname(), ".")
	namespace, _, _ := strings.Cut(rest, ".")
	if name == "" || namespace == "" || u.Port() == "" {
		return "", bad
	}
	return "/api/v1/namespaces/" + namespace + "/services/" + u.Scheme + ":" + name + ":" + u.Port(), nil
}

// unlabelledPodsCannotReachRedis runs redis-cli PING against the Redis
// pod's address from pods without the chat label, one in the app
// namespace (its default deny and Redis's ingress policy) and one in
// default (Redis's ingress policy alone): both must fail, while Redis
// answers the same PING at that address from its own pod, which no policy
// sees. The probe image is the stack's Redis image, which the cluster has
// and which carries redis-cli and timeout. By address, not by name: a pod
// of the app namespace has no DNS either, and the probe must fail on the
// connection to Redis alone.
func unlabelledPodsCannotReachRedis(ctx context.Context, t *testing.T, cfg map[string]string) {
	ns := cfg["switchboard:namespace"]
	kc, ip, port, image := redisProbe(ctx, t, cfg)
	for _, probeNS := range []string{ns, "default"} {
		name := fmt.Sprintf("netpol-probe-%d", time.Now().UnixNano()%1_000_000_000)
		if out, err := kc(probeNS, "run", name, "--image="+image, "--image-pull-policy=IfNotPresent", "--restart=Never",
			"--labels=app.kubernetes.io/name=netpol-probe", "--command", "--",
			"timeout", "5", "redis-cli", "-h", ip, "-p", port, "ping"); err != nil {
			t.Errorf("kubectl run %s in %s: %v\n%s", name, probeNS, err, out)
			continue
		}
		defer kc(probeNS, "delete", "pod", name, "--wait=false")
		phase := ""
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(2 * time.Second) {
			if phase, _ = kc(probeNS, "get", "pod", name, "-o", "jsonpath={.status.phase}"); phase == "Succeeded" || phase == "Failed" {
				break
			}
		}
		logs, _ := kc(probeNS, "logs", name)
		exit, _ := kc(probeNS, "get", "pod", name, "-o", "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}")
		switch {
		// timeout's exit 124: the connection hung, its packets dropped;
		// redis-cli's "Could not connect": refused or reset.
		case phase == "Failed" && (exit == "124" || strings.Contains(logs, "Could not connect")):
			logf(t, "a pod without the chat label in %s could not reach Redis at %s:%s: exit %s, %q", probeNS, ip, port, exit, logs)
		case phase == "Succeeded":
			daemonsets, _ := kc("kube-system", "get", "daemonsets", "-o", "name")
			t.Errorf("a pod without the chat label in %s reached Redis at %s:%s (%q): the NetworkPolicies are not enforced. "+
				"Only a network plugin that implements NetworkPolicy enforces them; this cluster's kube-system DaemonSets are %q "+
				"(infra/kindnode's node image runs kube-network-policies next to switchboard-podnet, which routes pods only: "+
				"is its DaemonSet running, and does `nft list table inet kube-network-policies` on the nodes show its rules?)", probeNS, ip, port, logs, daemonsets)
		default:
			out, _ := kc(probeNS, "describe", "pod", name)
			t.Errorf("the probe pod %s in %s ended in phase %q, exit %q, %q: not a refused connection, it proves nothing\n%s", name, probeNS, phase, exit, logs, out)
		}
	}
}

// redisProbe finds the Redis pod's address and checks that Redis answers
// PING there from its own pod, which no policy sees: kubectl in a namespace,
// the address, the port and the image to probe it with (the stack's Redis
// image, which the cluster has and which carries redis-cli and timeout).
func redisProbe(ctx context.Context, t *testing.T, cfg map[string]string) (kc func(string, ...string) (string, error), ip, port, image string) {
	ns := cfg["switchboard:namespace"]
	kc = func(namespace string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--context", cfg["switchboard:kubeContext"], "-n", namespace}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	redis, err := kc(ns, "get", "pod", "-l", "app.kubernetes.io/name="+naming.Redis, "-o", "jsonpath={.items[0].metadata.name} {.items[0].status.podIP}")
	pod, ip, _ := strings.Cut(redis, " ")
	if err != nil || ip == "" {
		t.Fatalf("the Redis pod and its address: %q (%v)", redis, err)
	}
	port = fmt.Sprint(data.RedisPort)
	if out, err := kc(ns, "exec", pod, "--", "redis-cli", "-h", ip, "-p", port, "ping"); err != nil || out != "PONG" {
		t.Fatalf("Redis does not answer PING at %s:%s from its own pod: %q (%v)", ip, port, out, err)
	}
	image = cfg["switchboard:redisImage"]
	if image == "" {
		image = data.DefaultRedisImage
	}
	return kc, ip, port, image
}

// chatPodsReachRedis is the other half of the policies: from inside every
// chat pod (an ephemeral container of the Redis image, which shares the
// pod's network namespace, so its address, labels and policies), PING
// reaches Redis at the address unlabelledPodsCannotReachRedis probes.
func chatPodsReachRedis(ctx context.Context, t *testing.T, cfg map[string]string) {
	ns := cfg["switchboard:namespace"]
	kc, ip, port, image := redisProbe(ctx, t, cfg)
	out, err := kc(ns, "get", "pod", "-l", "app.kubernetes.io/name="+naming.Chat, "--field-selector=status.phase=Running",
		"-o", "jsonpath={.items[*].metadata.name}")
	pods := strings.Fields(out)
	if err != nil || len(pods) == 0 {
		t.Fatalf("the chat pods: %q (%v)", out, err)
	}
	for _, pod := range pods {
		name := fmt.Sprintf("netpol-probe-%d", time.Now().UnixNano()%1_000_000_000)
		// restricted: the pod's own runAsNonRoot user, no capabilities.
		if out, err := kc(ns, "debug", "pod/"+pod, "--image="+image, "--image-pull-policy=IfNotPresent", "--container="+name,
			"--profile=restricted", "--", "timeout", "5", "redis-cli", "-h", ip, "-p", port, "ping"); err != nil {
			t.Errorf("kubectl debug %s: %v\n%s", pod, err, out)
			continue
		}
		exit := ""
		for end := time.Now().Add(2 * time.Minute); exit == "" && time.Now().Before(end); time.Sleep(2 * time.Second) {
			exit, _ = kc(ns, "get", "pod", pod, "-o", `jsonpath={.status.ephemeralContainerStatuses[?(@.name=="`+name+`")].state.terminated.exitCode}`)
		}
		logs, _ := kc(ns, "logs", pod, "-c", name)
		if exit != "0" || logs != "PONG" {
			t.Errorf("from the chat pod %s, PING to Redis at %s:%s: exit %q, %q: the policies keep the chat pods from Redis", pod, ip, port, exit, logs)
			continue
		}
		logf(t, "the chat pod %s reached Redis at %s:%s through the policies: %q", pod, ip, port, logs)
	}
}

// The prod stack on AWS, as a throwaway staging-sized stack: `pulumi up`,
// wait for the ALB to serve /health, the behaviour suite through the ALB,
// the paths the ALB answers 404 for itself, `pulumi destroy` whatever
// happened.
func TestProdStackOnAWS(t *testing.T) {
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
		t.Skip("needs AWS credentials (AWS_ACCESS_KEY_ID or AWS_PROFILE), SWITCHBOARD_CERTIFICATE_ARN, SWITCHBOARD_ALARM_TOPIC_ARN, SWITCHBOARD_API_ALLOWED_CIDRS and SWITCHBOARD_ALERT_RECEIVERS: none here")
	}
	need(t, "the pulumi CLI, kubectl and the aws CLI", "pulumi", "kubectl", "aws")
	jwt := randomSecret(t)
	cfg := stackFile(t, "staging")
	config := auto.ConfigMap{"switchboard:jwtSecret": {Value: jwt, Secret: true}}
	for key, env := range map[string]string{
		"switchboard:certificateArn": "SWITCHBOARD_CERTIFICATE_ARN", "switchboard:alarmTopicArn": "SWITCHBOARD_ALARM_TOPIC_ARN",
		"switchboard:apiAllowedCidrs": "SWITCHBOARD_API_ALLOWED_CIDRS",
		// An AWS stack refuses to route alerts to no one (docs/alerting.md);
		// a receiver's secret parts are --secret keys, set in the stack beforehand.
		"switchboard:alertReceivers": "SWITCHBOARD_ALERT_RECEIVERS",
	} {
		if os.Getenv(env) == "" {
			t.Fatalf("%s is not set: the stack needs it for %s", env, key)
		}
		config[key] = auto.ConfigValue{Value: os.Getenv(env)}
	}
	var albEndpoint string
	e2e(t, "staging", cfg, config, func(ctx context.Context, stack auto.Stack, out auto.OutputMap) []string {
		endpoint := fmt.Sprintf("https://%s", out["albDnsName"].Value)
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kubeconfig, []byte(fmt.Sprint(out["kubeconfig"].Value)), 0o600); err != nil {
			t.Fatal(err)
		}
		// The ALB's name resolves and its targets register a while after
		// `up`. /health: the ALB answers /ready itself, with 404.
		http_helper.HttpGetWithRetryWithCustomValidation(t, endpoint+"/health", nil, 90, 10*time.Second,
			func(status int, _ string) bool { return status == 200 })
		albEndpoint = endpoint
		return []string{
			"SWITCHBOARD_ENDPOINT=" + endpoint, "KUBECONFIG=" + kubeconfig,
			"SWITCHBOARD_KUBE_CONTEXT=" + fmt.Sprint(out["clusterName"].Value),
			"SWITCHBOARD_NAMESPACE=" + cfg["switchboard:namespace"], "SWITCHBOARD_JWT_SECRET=" + jwt,
		}
	}, func(context.Context) {
		// The listener rules answer these before the forward to the pods.
		for _, path := range []string{"/metrics", "/metrics/x", "/ready", "/debug/pprof/"} {
			http_helper.HttpGetWithRetryWithCustomValidation(t, albEndpoint+path, nil, 5, time.Second,
				func(status int, _ string) bool { return status == 404 })
		}
	})
}

// e2e deploys a throwaway copy of a stack (its file's settings plus
// secrets), runs the behaviour suite against it with the environment target
// returns, then after, and destroys it: test_structure's deploy, validate,
// after-suite and teardown.
func e2e(t *testing.T, base string, settings map[string]string, secrets auto.ConfigMap,
	target func(context.Context, auto.Stack, auto.OutputMap) []string, after func(context.Context),
) {
	ctx := context.Background()
	var stack auto.Stack
	var outputs auto.OutputMap
	test_structure.RunTestStage(t, "deploy", func() { stack, outputs = up(ctx, t, "switchboard", program, base, settings, secrets) })
	defer test_structure.RunTestStage(t, "teardown", func() {
		began := time.Now()
		if _, err := stack.Destroy(ctx); err != nil {
			t.Errorf("pulumi destroy: %v", err)
		}
		logf(t, "pulumi destroy -s %s: %s", stack.Name(), time.Since(began).Round(time.Second))
		_ = stack.Workspace().RemoveStack(ctx, stack.Name())
	})
	test_structure.RunTestStage(t, "validate", func() {
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-timeout", "60m", "-run", "TestBehaviour", "./tests/")
		cmd.Dir = ".."
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = append(append(os.Environ(), "SWITCHBOARD_TARGET=kubernetes"), target(ctx, stack, outputs)...)
		if err := cmd.Run(); err != nil {
			t.Errorf("behaviour suite on the %s stack: %v", base, err)
		}
	})
	test_structure.RunTestStage(t, "after-suite", func() { after(ctx) })
}

// up creates a uniquely named stack of project's inline program in a local
// backend and runs `pulumi up`.
func up(ctx context.Context, t *testing.T, project string, program pulumi.RunFunc, base string, settings map[string]string, secrets auto.ConfigMap) (auto.Stack, auto.OutputMap) {
	name := fmt.Sprintf("%s-test-%d", base, time.Now().Unix())
	stack, err := auto.UpsertStackInlineSource(ctx, name, project, program, auto.EnvVars(map[string]string{
		"PULUMI_BACKEND_URL":       "file://" + t.TempDir(),
		"PULUMI_CONFIG_PASSPHRASE": "switchboard-test",
	}))
	if err != nil {
		t.Fatalf("stack %s: %v", name, err)
	}
	config := auto.ConfigMap{}
	for k, v := range settings {
		config[k] = auto.ConfigValue{Value: v}
	}
	for k, v := range secrets {
		config[k] = v
	}
	if err := stack.SetAllConfig(ctx, config); err != nil {
		t.Fatalf("config: %v", err)
	}
	began := time.Now()
	res, err := stack.Up(ctx)
	if err != nil {
		t.Fatalf("pulumi up -s %s: %v", name, err)
	}
	logf(t, "pulumi up -s %s: %s", name, time.Since(began).Round(time.Second))
	return stack, res.Outputs
}

// stackFile is the plain configuration of Pulumi.<stack>.yaml.
func stackFile(t *testing.T, stack string) map[string]string {
	b, err := os.ReadFile("../Pulumi." + stack + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Config map[string]string }
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("Pulumi.%s.yaml: %v", stack, err)
	}
	return f.Config
}

func need(t *testing.T, what string, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %s is missing here", what, tool)
		}
	}
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Every stack file runs: its settings are accepted and its mock `pulumi up`
// declares the whole topology.
func TestStackFilesDeclareTheirTopology(t *testing.T) {
	for _, tc := range []struct {
		stack     string
		resources int // all of them: a component or resource lost or doubled fails
		want      []string
	}{
		// Each count holds the blueprint.Service component that parents the
		// rest (one more than before the stacks used it; golden_test.go
		// proves the rest unchanged).
		{"dev", 48, []string{"apps/v1:Deployment", "apps/v1:StatefulSet", "helm.sh/v3:Release", "monitoring.coreos.com/v1:PrometheusRule", "networking.k8s.io/v1:NetworkPolicy"}},
		{"prod", 128, []string{"ec2/vpc:Vpc", "eks/cluster:Cluster", "eks/nodeGroup:NodeGroup", "elasticache/replicationGroup:ReplicationGroup", "elasticache/parameterGroup:ParameterGroup",
			"rds/instance:Instance", "networking.k8s.io/v1:Ingress", "helm.sh/v3:Release", "cloudwatch/metricAlarm:MetricAlarm", "ec2/flowLog:FlowLog",
			"networking.k8s.io/v1:NetworkPolicy", "ec2/launchTemplate:LaunchTemplate"}},
		{"staging", 121, []string{"eks/cluster:Cluster", "rds/instance:Instance"}},
	} {
		t.Run(tc.stack, func(t *testing.T) {
			s := mustRun(t, stackFileConfig(t, tc.stack))
			counts := map[string]int{}
			for _, r := range s.resources {
				counts[r.Type]++
			}
			for _, kind := range tc.want {
				if len(s.of(kind)) == 0 {
					t.Errorf("Pulumi.%s.yaml declares no %s", tc.stack, kind)
				}
			}
			if len(s.resources) != tc.resources {
				t.Errorf("Pulumi.%s.yaml declares %d resources of %d types, want %d", tc.stack, len(s.resources), len(counts), tc.resources)
			}
		})
	}
}

// dashboardExprs are the PromQL expressions of dashboards/switchboard.json.
func dashboardExprs(t *testing.T) []string {
	b, err := os.ReadFile("../dashboards/switchboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok && e != "" {
				exprs = append(exprs, e)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	return exprs
}
