package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// An image is named repo:tag, repo@sha256:<digest> or both, as the
// distribution reference grammar writes them; an accepted one reaches the
// chat pods as written, a malformed one is refused naming its key and the
// forms accepted.
func TestImageReferencesAreCheckedByForm(t *testing.T) {
	for _, tc := range []struct {
		key, image string
		ok         bool
	}{
		{"image", "switchboard/chatserver:dev", true},
		{"image", "ghcr.io/acme/chatserver:v1.2.3", true},
		{"image", "ghcr.io/acme/chatserver@" + testDigest, true},
		{"image", "ghcr.io/acme/chatserver:v1.2.3@" + testDigest, true},
		{"image", "localhost:5000/chat-server:dev_1", true},
		{"image", "ghcr.io/acme/chatserver", false},                 // no tag: :latest moves
		{"image", "ghcr.io/Acme/chatserver:v1", false},              // path components are lower case
		{"image", "ghcr.io/acme/chatserver@sha256:0123abcd", false}, // a digest is 64 hex digits
		{"image", "ghcr.io/acme/chatserver:v1@sha1:" + testDigest[7:], false},
		{"image", "ghcr.io/acme/chatserver:", false},
		{"image", "ghcr.io/acme/chatserver:v1 --privileged", false},
		{"edgeImage", "nginxinc/nginx-unprivileged", false},
	} {
		t.Run(tc.key+"="+tc.image, func(t *testing.T) {
			s, err := run(kindConfig(tc.key, tc.image))
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), "switchboard:"+tc.key) || !strings.Contains(err.Error(), "repo:tag@sha256:<64 hex>") {
					t.Errorf("err %v: want a refusal naming switchboard:%s and the accepted forms", err, tc.key)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := chatContainer(t, s)["image"]; got != tc.image {
				t.Errorf("chat container image %v, want %s", got, tc.image)
			}
		})
	}
}

// switchboard:imagePullSecrets names Secrets (DNS-1123 names) that reach
// the chat pods' spec.imagePullSecrets, on both targets.
func TestImagePullSecretsReachTheChatPods(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
		want   []string
	}{
		{"kind, unset", kindConfig(), nil},
		{"kind, two", kindConfig("imagePullSecrets", "ghcr-pull, registry.acme"), []string{"ghcr-pull", "registry.acme"}},
		{"aws, one", awsConfig("imagePullSecrets", "ghcr-pull"), []string{"ghcr-pull"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			refs, _ := get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec.imagePullSecrets").([]any)
			var got []string
			for _, r := range refs {
				got = append(got, get(r, "name").(string))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("imagePullSecrets %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"Ghcr_Pull", "ghcr-pull,", "-pull"} {
		if _, err := run(kindConfig("imagePullSecrets", bad)); err == nil || !strings.Contains(err.Error(), "switchboard:imagePullSecrets") {
			t.Errorf("imagePullSecrets %q: err %v, want a refusal naming the key", bad, err)
		}
	}
}

// A value copied from an example is refused before anything is created:
// AWS's documentation account 123456789012, replace-me, example, an
// elided "...". So is an ARN of the wrong service or shape (AWS, "Identify
// AWS resources with Amazon Resource Names": arn:partition:service:region:
// account-id:resource).
func TestPlaceholderAndMalformedARNsAreRefused(t *testing.T) {
	for _, tc := range []struct{ key, arn string }{
		{"certificateArn", "arn:aws:acm:eu-west-1:123456789012:certificate/replace-me"},
		{"certificateArn", "arn:aws:acm:eu-west-1:210987654321:certificate/replace-me"},
		{"certificateArn", "arn:aws:acm:...:certificate/replace-me"},
		{"certificateArn", "arn:aws:acm:eu-west-1:210987654321:certificate/example"},
		{"certificateArn", "arn:aws:acm:eu-west-1:210987654321:certificate/"},
		{"certificateArn", "arn:aws:sns:eu-west-1:210987654321:certificate/4f9d3c2a"},
		{"certificateArn", "arn:aws:acm:eu-west-1:2109876543:certificate/4f9d3c2a"},
		{"alarmTopicArn", "arn:aws:sns:eu-west-1:123456789012:switchboard-alarms"},
		{"alarmTopicArn", "arn:aws:sns:eu-west-1:210987654321:<your-topic>"},
		{"alarmTopicArn", "switchboard-alarms"},
		{"wafAclArn", "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/example/replace-me"},
	} {
		t.Run(tc.key+"="+tc.arn, func(t *testing.T) {
			_, err := run(awsConfig(tc.key, tc.arn))
			if err == nil || !strings.Contains(err.Error(), "switchboard:"+tc.key) || !strings.Contains(err.Error(), "your own ARN") {
				t.Errorf("err %v: want a refusal naming switchboard:%s and the form of its ARN", err, tc.key)
			}
		})
	}
	if _, err := run(awsConfig("wafAclArn", "arn:aws:wafv2:eu-west-1:210987654321:regional/webacl/chat/a1b2c3")); err != nil {
		t.Errorf("a real-looking WAF ACL ARN: %v", err)
	}
}

// The stack files leave the certificate, the alarm topic and the alert
// receivers to each user:
// as committed they are refused, and the refusal says what to set.
func TestStackFilesNameWhatTheUserMustSet(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			cfg := stackFile(t, stack)
			cfg["switchboard:jwtSecret"] = testJWTSecret
			_, err := run(cfg)
			for _, key := range []string{"certificateArn", "alarmTopicArn", "alertReceivers"} {
				if err == nil || !strings.Contains(err.Error(), "switchboard:"+key) || !strings.Contains(err.Error(), "pulumi config set switchboard:"+key) {
					t.Errorf("Pulumi.%s.yaml as committed: err %v, want %s named with the command that sets it", stack, err, key)
				}
			}
		})
	}
}

// In existing mode the cluster's Grafana has its own Prometheus datasource,
// whose uid the dashboard must name (the Grafana sidecar fills in no
// __inputs). In install mode the chart's datasource gets the same uid.
// Grafana uids are at most 40 letters, digits, '-' and '_'.
func TestDashboardDatasourceUIDIsASetting(t *testing.T) {
	for _, tc := range []struct{ mode, uid, want string }{
		{"existing", "", "prometheus"},
		{"existing", "mimir_prom-1", "mimir_prom-1"},
		{"install", "mimir_prom-1", "mimir_prom-1"},
	} {
		t.Run(tc.mode+"/"+tc.uid, func(t *testing.T) {
			over := []string{"observability", tc.mode}
			if tc.uid != "" {
				over = append(over, "grafanaDatasourceUid", tc.uid)
			}
			s := mustRun(t, kindConfig(over...))
			dash, _ := get(s.one(t, "core/v1:ConfigMap", "switchboard-dashboard"), "data").(map[string]any)["switchboard.json"].(string)
			var d struct {
				Panels []struct {
					Datasource struct{ UID string }
				}
			}
			if err := json.Unmarshal([]byte(dash), &d); err != nil || len(d.Panels) == 0 {
				t.Fatalf("dashboard: %v, %d panels", err, len(d.Panels))
			}
			named := 0
			for _, p := range d.Panels {
				if p.Datasource.UID != "" && p.Datasource.UID != tc.want {
					t.Fatalf("a panel queries datasource %q, want %q", p.Datasource.UID, tc.want)
				}
				if p.Datasource.UID == tc.want {
					named++
				}
			}
			if named == 0 {
				t.Errorf("no panel names datasource %q", tc.want)
			}
			if tc.mode == "install" {
				values := get(promStack(t, s), "values")
				if got := get(values, "grafana.sidecar.datasources.uid"); got != tc.want {
					t.Errorf("chart's datasource uid %v, want %s", got, tc.want)
				}
			}
		})
	}
	for _, bad := range []string{"has space", strings.Repeat("u", 41), "prom/etheus"} {
		if _, err := run(kindConfig("grafanaDatasourceUid", bad)); err == nil || !strings.Contains(err.Error(), "switchboard:grafanaDatasourceUid") {
			t.Errorf("grafanaDatasourceUid %q: err %v, want a refusal naming the key", bad, err)
		}
	}
}

// In install mode Grafana's admin password is generated, reaches the chart
// only through a Secret (grafana.admin.existingSecret), never as a value
// and never in plain text, and is the same resource with the same inputs on
// every run, so that Pulumi keeps the password it generated the first time.
// The release waits long enough for a cold cluster (Helm's default is 5m).
func TestGrafanaAdminPasswordIsGeneratedOnceAndSecret(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config func() map[string]string
	}{
		{"kind", func() map[string]string { return kindConfig("observability", "install") }},
		{"aws", func() map[string]string { return awsConfig() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inputs []resource.PropertyMap
			for range 2 {
				s := mustRun(t, tc.config())
				pws := s.of("index/randomPassword:RandomPassword")
				if len(pws) != 1 {
					t.Fatalf("%d RandomPasswords, want 1", len(pws))
				}
				inputs = append(inputs, pws[0].Inputs)
				if n := get(plain(resource.NewObjectProperty(pws[0].Inputs)), "length"); n.(float64) < 32 {
					t.Errorf("password length %v, want at least 32", n)
				}
				secret := s.one(t, "core/v1:Secret", "grafana-admin")
				if get(secret, "stringData.admin-password") != testGrafanaPass {
					t.Errorf("grafana-admin Secret holds %v, want the generated password", get(secret, "stringData.admin-password"))
				}
				for _, r := range s.resources {
					plaintexts(resource.NewObjectProperty(r.Inputs), r.Name, []string{testGrafanaPass}, func(path string) {
						t.Errorf("%s (%s): %s holds Grafana's password in plain text", r.Name, r.Type, path)
					})
				}
				rel := promStack(t, s)
				if get(rel, "values.grafana.admin.existingSecret") != "grafana-admin" || get(rel, "values.grafana.adminPassword") != nil {
					t.Errorf("chart's grafana.admin %v, adminPassword %v: want the existing Secret grafana-admin and no password value",
						get(rel, "values.grafana.admin"), get(rel, "values.grafana.adminPassword"))
				}
				if timeout, _ := get(rel, "timeout").(float64); timeout < 900 {
					t.Errorf("release timeout %v s, want at least 900 for a cold cluster", get(rel, "timeout"))
				}
			}
			if !inputs[0].DeepEquals(inputs[1]) {
				t.Errorf("the RandomPassword's inputs differ between two runs (%v, %v): Pulumi would replace it and change the password", inputs[0], inputs[1])
			}
		})
	}
}

// promStack is the kube-prometheus-stack release's inputs.
func promStack(t *testing.T, s *stack) map[string]any {
	t.Helper()
	for _, r := range s.of("helm.sh/v3:Release") {
		if rel := plain(resource.NewObjectProperty(r.Inputs)).(map[string]any); rel["chart"] == "kube-prometheus-stack" {
			return rel
		}
	}
	t.Fatal("no kube-prometheus-stack release")
	return nil
}
