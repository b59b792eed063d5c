package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/switchboard-dev/switchboard/infra/observability"
)

// testAlertReceivers are the AWS test stacks' receivers: a webhook whose
// URL carries no credentials, so no secret key.
const testAlertReceivers = `[{"name":"ops","type":"webhook","url":"https://alerts.example.org/switchboard"}]`

// The secret parts of the receivers of TestAlertsRouteToTheStacksReceivers.
const (
	testSlackURL   = "https://hooks.slack.com/services/T000/B000/slack-secret-for-tests"
	testPDKey      = "pagerduty-routing-key-for-tests-0123"
	testSMTPPass   = "smtp-password-for-tests-4567"
	testWebhookURL = "https://hooks.example.org/alerts?token=webhook-token-for-tests"
)

// allReceivers is one receiver of each type, every secret part in a key of its own.
const allReceivers = `[
 {"name":"oncall","type":"pagerduty","secretKey":"pagerdutyRoutingKey"},
 {"name":"team","type":"slack","secretKey":"slackWebhookUrl","channel":"#chat-alerts"},
 {"name":"mail","type":"email","to":"ops@example.org","from":"alertmanager@example.org","smarthost":"smtp.example.org:587","username":"alertmanager","secretKey":"smtpPassword"},
 {"name":"hook","type":"webhook","secretKey":"alertWebhookUrl"},
 {"name":"plain-hook","type":"webhook","url":"http://receiver.monitoring.svc:8080/alerts"}
]`

func receiversConfig(config map[string]string) (map[string]string, []string) {
	config["switchboard:alertReceivers"] = allReceivers
	config["switchboard:pagerdutyRoutingKey"] = testPDKey
	config["switchboard:slackWebhookUrl"] = testSlackURL
	config["switchboard:smtpPassword"] = testSMTPPass
	config["switchboard:alertWebhookUrl"] = testWebhookURL
	return config, []string{"switchboard:jwtSecret", "switchboard:databasePassword", "switchboard:pagerdutyRoutingKey",
		"switchboard:slackWebhookUrl", "switchboard:smtpPassword", "switchboard:alertWebhookUrl"}
}

// alertmanagerConfig is the chart values' alertmanager.config.
func alertmanagerConfig(t *testing.T, s *stack) map[string]any {
	t.Helper()
	c, ok := get(promStack(t, s), "values.alertmanager.config").(map[string]any)
	if !ok {
		t.Fatal("kube-prometheus-stack values: no alertmanager.config; the chart's default routes every alert to the null receiver")
	}
	return c
}

// routed lists, for each receiver, the matchers of its route (nil: every
// alert), and checks what every route must be.
func routed(t *testing.T, c map[string]any) map[string][]any {
	t.Helper()
	got := map[string][]any{}
	for _, r := range get(c, "route.routes").([]any) {
		name := get(r, "receiver").(string)
		m, _ := get(r, "matchers").([]any)
		if name == "null" {
			if len(m) != 1 || m[0] != `alertname =~ "Watchdog|InfoInhibitor"` {
				t.Errorf("a route to null with matchers %v: only the chart's Watchdog and InfoInhibitor may go nowhere", m)
			}
			continue
		}
		if get(r, "continue") != true {
			t.Errorf("route to %s: want continue, so that every receiver of an alert gets it", name)
		}
		got[name] = m
	}
	return got
}

// Every alert reaches the stack's receivers, never only the null receiver;
// critical alerts page (pagerduty), every alert reaches the others. The
// secret parts are in a Secret the chart mounts into Alertmanager, read
// from files, never in the chart's values or any plain input.
func TestAlertsRouteToTheStacksReceivers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
	}{
		{"kind", kindConfig("observability", "install")},
		{"aws", awsConfig()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config, secrets := receiversConfig(tc.config)
			s, err := run(config, secrets...)
			if err != nil {
				t.Fatalf("program: %v", err)
			}
			c := alertmanagerConfig(t, s)
			if root := get(c, "route.receiver"); root == "null" || root == observability.UIReceiver {
				t.Errorf("root route to %v: want one of the stack's receivers", root)
			}
			routes := routed(t, c)
			want := map[string][]any{"oncall": {`severity = "critical"`}, "team": nil, "mail": nil, "hook": nil, "plain-hook": nil}
			for name, m := range want {
				if got, ok := routes[name]; !ok || !slices.Equal(got, m) {
					t.Errorf("route to %s: matchers %v (routed %v), want %v", name, got, ok, m)
				}
			}
			file := func(name string) string {
				return "/etc/alertmanager/secrets/" + observability.ReceiversSecret + "/" + name
			}
			byName := map[string]any{}
			for _, r := range get(c, "receivers").([]any) {
				byName[get(r, "name").(string)] = r
			}
			for path, want := range map[string]any{
				"oncall.pagerduty_configs.0.routing_key_file": file("oncall"),
				"team.slack_configs.0.api_url_file":           file("team"),
				"team.slack_configs.0.channel":                "#chat-alerts",
				"mail.email_configs.0.auth_password_file":     file("mail"),
				"mail.email_configs.0.auth_username":          "alertmanager",
				"mail.email_configs.0.smarthost":              "smtp.example.org:587",
				"mail.email_configs.0.require_tls":            true,
				"hook.webhook_configs.0.url_file":             file("hook"),
				"hook.webhook_configs.0.send_resolved":        true,
				"plain-hook.webhook_configs.0.url":            "http://receiver.monitoring.svc:8080/alerts",
			} {
				if got := get(byName, path); got != want {
					t.Errorf("receiver %s = %v, want %v", path, got, want)
				}
			}
			mounted, _ := get(promStack(t, s), "values.alertmanager.alertmanagerSpec.secrets").([]any)
			if !slices.Contains(mounted, any(observability.ReceiversSecret)) {
				t.Errorf("alertmanagerSpec.secrets %v: want %s mounted", mounted, observability.ReceiversSecret)
			}
			sec := s.one(t, "core/v1:Secret", observability.ReceiversSecret)
			for key, v := range map[string]string{"oncall": testPDKey, "team": testSlackURL, "mail": testSMTPPass, "hook": testWebhookURL} {
				if get(sec, "stringData."+key) != v || get(sec, "metadata.namespace") != observability.Namespace {
					t.Errorf("Secret %s/%s key %s: want the receiver's secret", get(sec, "metadata.namespace"), observability.ReceiversSecret, key)
				}
			}
			if _, ok := get(sec, "stringData").(map[string]any)["plain-hook"]; ok {
				t.Error("the plain webhook has a key in the Secret: it has no secret part")
			}
			for _, r := range s.resources {
				plaintexts(resource.NewObjectProperty(r.Inputs), r.Name, []string{testPDKey, testSlackURL, testSMTPPass, testWebhookURL}, func(path string) {
					t.Errorf("%s (%s): %s holds a receiver's secret in plain text", r.Name, r.Type, path)
				})
			}
			rel := s.of("helm.sh/v3:Release")
			for _, r := range rel {
				if plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)["chart"] == "kube-prometheus-stack" &&
					!slices.ContainsFunc(r.Deps, func(u resource.URN) bool { return strings.HasSuffix(string(u), "observability-alert-receivers") }) {
					t.Error("the release does not wait for the receivers' Secret: Alertmanager would start without it")
				}
			}
		})
	}
}

// In existing mode the stack routes its alerts through the cluster's
// Alertmanager: one AlertmanagerConfig in the app namespace (the Prometheus
// Operator confines it to alerts of that namespace) with the same routes
// as install mode, each secret part a reference to a key of a Secret beside
// it, never inline; without receivers the cluster's routing is left alone.
// https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1alpha1.AlertmanagerConfig
func TestExistingModeRoutesThroughAnAlertmanagerConfig(t *testing.T) {
	if n := len(mustRun(t, kindConfig("observability", "existing")).of("monitoring.coreos.com/v1alpha1:AlertmanagerConfig")); n != 0 {
		t.Errorf("%d AlertmanagerConfigs without receivers, want none", n)
	}
	config, secrets := receiversConfig(kindConfig("observability", "existing", "alertGroupWait", "1s"))
	s, err := run(config, secrets...)
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	for _, r := range s.all("helm.sh/v3:Release") {
		if r["chart"] == "kube-prometheus-stack" {
			t.Error("existing mode installs kube-prometheus-stack")
		}
	}
	cr := s.one(t, "monitoring.coreos.com/v1alpha1:AlertmanagerConfig", "switchboard")
	if get(cr, "metadata.namespace") != "switchboard" {
		t.Errorf("AlertmanagerConfig in %v, want the app namespace", get(cr, "metadata.namespace"))
	}
	if root := get(cr, "spec.route.receiver"); root != "team" {
		t.Errorf("root route to %v, want team, the first receiver of every severity", root)
	}
	if get(cr, "spec.route.groupWait") != "1s" || get(cr, "spec.route.repeatInterval") != "14400s" {
		t.Errorf("route timing %v/%v, want the stack's 1s and 4h", get(cr, "spec.route.groupWait"), get(cr, "spec.route.repeatInterval"))
	}
	routes := map[string]any{}
	for _, r := range get(cr, "spec.route.routes").([]any) {
		if get(r, "continue") != true {
			t.Errorf("route %v without continue: the receivers after it would miss its alerts", r)
		}
		routes[get(r, "receiver").(string)] = get(r, "matchers")
	}
	critical := []any{map[string]any{"name": "severity", "value": "critical", "matchType": "="}}
	for name, m := range map[string]any{"oncall": critical, "team": nil, "mail": nil, "hook": nil, "plain-hook": nil} {
		if got, ok := routes[name]; !ok || fmt.Sprint(got) != fmt.Sprint(m) {
			t.Errorf("route to %s: matchers %v (routed %v), want %v", name, got, ok, m)
		}
	}
	ref := func(name string) string {
		return fmt.Sprint(map[string]any{"name": observability.ReceiversSecret, "key": name})
	}
	byName := map[string]any{}
	for _, r := range get(cr, "spec.receivers").([]any) {
		byName[get(r, "name").(string)] = r
	}
	for path, want := range map[string]any{
		"oncall.pagerdutyConfigs.0.routingKey": ref("oncall"),
		"team.slackConfigs.0.apiURL":           ref("team"),
		"team.slackConfigs.0.channel":          "#chat-alerts",
		"mail.emailConfigs.0.authPassword":     ref("mail"),
		"mail.emailConfigs.0.authUsername":     "alertmanager",
		"mail.emailConfigs.0.requireTLS":       "true",
		"hook.webhookConfigs.0.urlSecret":      ref("hook"),
		"hook.webhookConfigs.0.sendResolved":   "true",
		"plain-hook.webhookConfigs.0.url":      "http://receiver.monitoring.svc:8080/alerts",
	} {
		if got := fmt.Sprint(get(byName, path)); got != want {
			t.Errorf("receiver %s = %v, want %v", path, got, want)
		}
	}
	sec := s.one(t, "core/v1:Secret", observability.ReceiversSecret)
	for key, v := range map[string]string{"oncall": testPDKey, "team": testSlackURL, "mail": testSMTPPass, "hook": testWebhookURL} {
		if get(sec, "stringData."+key) != v || get(sec, "metadata.namespace") != "switchboard" {
			t.Errorf("Secret %s/%s key %s: want the receiver's secret beside the AlertmanagerConfig", get(sec, "metadata.namespace"), observability.ReceiversSecret, key)
		}
	}
	for _, r := range s.resources {
		plaintexts(resource.NewObjectProperty(r.Inputs), r.Name, []string{testPDKey, testSlackURL, testSMTPPass, testWebhookURL}, func(path string) {
			t.Errorf("%s (%s): %s holds a receiver's secret in plain text", r.Name, r.Type, path)
		})
	}
}

// Timing and the default severities: pagerduty alone takes every alert
// (warnings must reach someone); the route's timing is stack config.
func TestAlertRoutingDefaults(t *testing.T) {
	s := mustRun(t, kindConfig("observability", "install",
		"alertReceivers", `[{"name":"hook","type":"webhook","url":"http://10.0.0.1/a"},{"name":"crit","type":"webhook","url":"http://10.0.0.2/a","severity":"critical"}]`,
		"alertGroupWait", "1s", "alertGroupInterval", "1500ms", "alertRepeatInterval", "1h"))
	c := alertmanagerConfig(t, s)
	for k, want := range map[string]string{"group_wait": "1s", "group_interval": "1500ms", "repeat_interval": "3600s"} {
		if got := get(c, "route."+k); got != want {
			t.Errorf("route.%s = %v, want %s", k, got, want)
		}
	}
	if r := routed(t, c); r["hook"] != nil || len(r["crit"]) != 1 {
		t.Errorf("routes %v: want hook for every alert, crit for critical ones", r)
	}

	config := kindConfig("observability", "install", "alertReceivers", `[{"name":"oncall","type":"pagerduty","secretKey":"pd"}]`, "pd", testPDKey)
	s, err := run(config, "switchboard:jwtSecret", "switchboard:databasePassword", "switchboard:pd")
	if err != nil {
		t.Fatal(err)
	}
	if r := routed(t, alertmanagerConfig(t, s)); r["oncall"] != nil {
		t.Errorf("the only receiver, pagerduty, gets matchers %v: want every alert", r["oncall"])
	}

	// A kind stack without receivers: Alertmanager's UI lists the alerts.
	s = mustRun(t, kindConfig("observability", "install"))
	c = alertmanagerConfig(t, s)
	if get(c, "route.receiver") != observability.UIReceiver {
		t.Errorf("kind without receivers: root receiver %v, want %s", get(c, "route.receiver"), observability.UIReceiver)
	}
	if len(s.of("core/v1:Secret")) > 0 {
		for _, sec := range s.of("core/v1:Secret") {
			if sec.Name == "observability-alert-receivers" {
				t.Error("a receivers' Secret without receivers")
			}
		}
	}
	// Existing mode installs no Alertmanager and takes no receivers.
	mustRun(t, kindConfig("observability", "existing"))
}

// Bad receivers are refused with the key; a secret in plain config is
// refused without showing it.
func TestAlertReceiversAreRefused(t *testing.T) {
	secrets := []string{"switchboard:jwtSecret", "switchboard:databasePassword", "switchboard:pd"}
	for _, tc := range []struct {
		name    string
		config  map[string]string
		secrets []string
		want    string
		hidden  string // must not appear in the error
	}{
		{"aws without receivers: alerts would reach no one", func() map[string]string {
			c := awsConfig()
			delete(c, "switchboard:alertReceivers")
			return c
		}(), nil, "alerts would reach no one", ""},
		{"a routing key in plain config", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"oncall","type":"pagerduty","routingKey":"`+testPDKey+`"}]`), nil, "alertReceivers[0].routingKey", testPDKey},
		{"a secret key stored in plain text", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"oncall","type":"pagerduty","secretKey":"pd"}]`, "pd", testPDKey), secrets[:2], "switchboard:pd is stored in plain text", testPDKey},
		{"a secret key not set", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"oncall","type":"pagerduty","secretKey":"pd"}]`), nil, "switchboard:pd is not set", ""},
		{"a webhook URL with a token in plain config", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"h","type":"webhook","url":"`+testWebhookURL+`"}]`), nil, "alertReceivers[0].url", "webhook-token-for-tests"},
		{"a Slack URL in plain config", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"s","type":"slack","url":"`+testSlackURL+`"}]`), nil, "alertReceivers[0].url", "slack-secret-for-tests"},
		{"an unknown type", kindConfig("observability", "install", "alertReceivers", `[{"name":"x","type":"carrier-pigeon"}]`), nil, "alertReceivers[0].type", ""},
		{"a name used twice", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"a","type":"webhook","url":"http://h/a"},{"name":"a","type":"webhook","url":"http://h/b"}]`), nil, "a name used once", ""},
		{"the null receiver's name", kindConfig("observability", "install", "alertReceivers", `[{"name":"null","type":"webhook","url":"http://h/a"}]`), nil, "alertReceivers[0].name", ""},
		{"every receiver critical only", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"a","type":"webhook","url":"http://h/a","severity":"critical"}]`), nil, "warnings would reach no one", ""},
		{"email without a server", kindConfig("observability", "install",
			"alertReceivers", `[{"name":"m","type":"email","to":"ops@example.org","from":"am@example.org"}]`), nil, "alertReceivers[0].smarthost", ""},
		{"not a list", kindConfig("observability", "install", "alertReceivers", `{"name":"a"}`), nil, "switchboard:alertReceivers", ""},
		{"a repeat shorter than the group interval", kindConfig("observability", "install", "alertRepeatInterval", "1m"), nil, "switchboard:alertRepeatInterval", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.secrets == nil {
				tc.secrets = secrets
			}
			_, err := run(tc.config, tc.secrets...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
			if tc.hidden != "" && strings.Contains(err.Error(), tc.hidden) {
				t.Errorf("the refusal shows the secret: %v", err)
			}
		})
	}
}
