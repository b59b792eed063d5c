package stackconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Alert receiver types (alertReceivers' type).
const (
	Webhook   = "webhook"
	Slack     = "slack"
	PagerDuty = "pagerduty"
	Email     = "email"
)

// Severities a receiver takes (alertReceivers' severity): the rules of
// dashboards/alerts.yaml are labelled critical or warning.
const (
	AllSeverities = "all"
	CriticalOnly  = "critical"
)

// AlertReceiver is one entry of alertReceivers: where Alertmanager sends
// the stack's alerts. Its secret part (a Slack webhook URL, a
// PagerDuty routing key, an SMTP password, a webhook URL that carries a
// token) is never in it: SecretKey names the config key, set with
// --secret, that holds it.
type AlertReceiver struct {
	Name string `json:"name"` // a DNS label, unique
	Type string `json:"type"` // webhook, slack, pagerduty or email
	// Severity: all (the default; for pagerduty critical, unless no other
	// receiver takes all) or critical.
	Severity string `json:"severity,omitempty"`
	// webhook: the URL, when it carries no credentials (else SecretKey).
	URL string `json:"url,omitempty"`
	// slack: the channel, if not the webhook's own.
	Channel string `json:"channel,omitempty"`
	// email: recipients, sender, SMTP server (host:port), SMTP user (its
	// password in SecretKey) and whether STARTTLS is required (true).
	To         string `json:"to,omitempty"`
	From       string `json:"from,omitempty"`
	Smarthost  string `json:"smarthost,omitempty"`
	Username   string `json:"username,omitempty"`
	RequireTLS *bool  `json:"requireTls,omitempty"`
	// SecretKey is the config key holding the secret part.
	SecretKey string `json:"secretKey,omitempty"`
	// Secret is that key's value.
	Secret pulumi.StringOutput `json:"-"`
}

// AlertTiming is the stack's alert route's batching.
type AlertTiming struct {
	GroupWait      time.Duration // alertGroupWait
	GroupInterval  time.Duration // alertGroupInterval
	RepeatInterval time.Duration // alertRepeatInterval
}

// receiverName: a receiver's name is a Secret's key and a receiver's name
// in Alertmanager; "null" is the chart's and the Watchdog's.
var receiverName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// configKey is the name of a key in the project's namespace.
var configKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)

// plainSecrets are fields that would put a secret in plain config, with
// what each is.
var plainSecrets = map[string]string{
	"apiUrl": "Slack webhook URL", "api_url": "Slack webhook URL", "webhookUrl": "Slack webhook URL",
	"routingKey": "PagerDuty routing key", "routing_key": "PagerDuty routing key", "serviceKey": "PagerDuty key", "integrationKey": "PagerDuty key",
	"password": "SMTP password", "authPassword": "SMTP password", "auth_password": "SMTP password",
	"token": "token", "secret": "secret",
}

// fields are the fields each type takes besides name, type and severity.
var fields = map[string][]string{
	Webhook:   {"url", "secretKey"},
	Slack:     {"secretKey", "channel"},
	PagerDuty: {"secretKey"},
	Email:     {"to", "from", "smarthost", "username", "requireTls", "secretKey"},
}

const receiversForm = `a JSON list of receivers, e.g. [{"name":"oncall","type":"pagerduty","secretKey":"pagerdutyRoutingKey"},{"name":"team","type":"slack","secretKey":"slackWebhookUrl","channel":"#chat-alerts"}], ` +
	`each secret part in its own key (pulumi config set --secret switchboard:pagerdutyRoutingKey <key>); see docs/alerting.md`

// alerting reads alertReceivers and the route's timing. In install mode an
// AWS stack must name a receiver: its alerts would reach no one. A kind
// stack without receivers keeps its alerts in Alertmanager's UI (warned).
// In existing mode receivers are optional: with them the stack routes its
// alerts through the cluster's Alertmanager (an AlertmanagerConfig),
// without them the cluster's own routing applies.
func (r *reader) alerting(c *Config) {
	r.duration("alertGroupWait", &c.AlertTiming.GroupWait)
	r.duration("alertGroupInterval", &c.AlertTiming.GroupInterval)
	r.duration("alertRepeatInterval", &c.AlertTiming.RepeatInterval)
	if c.AlertTiming.GroupInterval <= 0 {
		r.fail("alertGroupInterval", c.AlertTiming.GroupInterval.String(), "a duration above 0, like 5m")
	}
	if c.AlertTiming.RepeatInterval < c.AlertTiming.GroupInterval {
		r.fail("alertRepeatInterval", c.AlertTiming.RepeatInterval.String(), fmt.Sprintf("at least alertGroupInterval (%s)", c.AlertTiming.GroupInterval))
	}
	v := r.cfg.Get("alertReceivers")
	switch {
	case v == "" && c.Observability == Install && c.Target == AWS:
		r.fail("alertReceivers", v, "at least one receiver, or the alerts would reach no one: "+
			`pulumi config set switchboard:alertReceivers '[{"name":"oncall","type":"pagerduty","secretKey":"pagerdutyRoutingKey"}]' `+
			"and pulumi config set --secret switchboard:pagerdutyRoutingKey <routing key> (docs/alerting.md)")
		return
	case v == "" && c.Observability == Install:
		r.ctx.Log.Warn("switchboard:alertReceivers is not set: alerts are listed in Alertmanager's UI "+
			"(kubectl -n monitoring port-forward svc/kube-prometheus-stack-alertmanager 9093) and notified to no one (docs/alerting.md)", nil)
		return
	case v == "":
		return
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &raw); err != nil || len(raw) == 0 {
		r.fail("alertReceivers", "<not a list>", receiversForm)
		return
	}
	seen := map[string]bool{}
	all := false
	for i, entry := range raw {
		rc, ok := r.receiver(i, entry)
		if !ok {
			continue
		}
		if seen[rc.Name] {
			r.fail("alertReceivers", rc.Name, "a name used once")
			continue
		}
		seen[rc.Name] = true
		all = all || rc.Severity == AllSeverities || (rc.Severity == "" && rc.Type != PagerDuty)
		c.AlertReceivers = append(c.AlertReceivers, rc)
	}
	// A pagerduty receiver pages for critical alerts only, unless it is
	// all there is: warnings must reach someone too.
	for i, rc := range c.AlertReceivers {
		if rc.Severity == "" && rc.Type == PagerDuty && all {
			c.AlertReceivers[i].Severity = CriticalOnly
		} else if rc.Severity == "" {
			c.AlertReceivers[i].Severity = AllSeverities
		}
	}
	if len(c.AlertReceivers) == len(raw) && !slices.ContainsFunc(c.AlertReceivers, func(rc AlertReceiver) bool { return rc.Severity == AllSeverities }) {
		r.fail("alertReceivers", "<every receiver critical only>", `at least one receiver with severity all (the default of webhook, slack and email): warnings would reach no one`)
	}
}

// receiver reads entry i of alertReceivers, refusing secrets in it.
func (r *reader) receiver(i int, entry map[string]json.RawMessage) (AlertReceiver, bool) {
	at := fmt.Sprintf("alertReceivers[%d]", i)
	for k := range entry {
		what, ok := plainSecrets[k]
		if k == "url" && string(entry["type"]) == `"`+Slack+`"` {
			what, ok = "Slack webhook URL (it is its own credential)", true
		}
		if ok {
			r.fail(at+"."+k, "<not shown>", fmt.Sprintf("no %s in plain config: put it in a key of its own with `pulumi config set --secret %s:<key> <value>` and name that key in secretKey", what, r.ctx.Project()))
			return AlertReceiver{}, false
		}
	}
	b, _ := json.Marshal(entry)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rc AlertReceiver
	if err := dec.Decode(&rc); err != nil {
		r.fail(at, "<not shown>", fmt.Sprintf("%s (%v)", receiversForm, err))
		return rc, false
	}
	ok := true
	bad := func(field, got, want string) {
		r.fail(at+"."+field, got, want)
		ok = false
	}
	if !receiverName.MatchString(rc.Name) || rc.Name == "null" {
		bad("name", rc.Name, `a DNS label (lower-case letters, digits, '-'), not "null"`)
	}
	allowed, known := fields[rc.Type]
	if !known {
		bad("type", rc.Type, fmt.Sprintf("one of %s, %s, %s, %s", Webhook, Slack, PagerDuty, Email))
		return rc, false
	}
	for k := range entry {
		if k != "name" && k != "type" && k != "severity" && !slices.Contains(allowed, k) {
			bad(k, "<set>", fmt.Sprintf("unset: a %s receiver takes name, type, severity and %s", rc.Type, strings.Join(allowed, ", ")))
		}
	}
	if rc.Severity != "" && rc.Severity != AllSeverities && rc.Severity != CriticalOnly {
		bad("severity", rc.Severity, "all or critical")
	}
	needSecret := map[string]string{Slack: "the Slack incoming webhook URL", PagerDuty: "the PagerDuty Events API v2 routing key"}[rc.Type]
	switch rc.Type {
	case Webhook:
		if (rc.URL == "") == (rc.SecretKey == "") {
			bad("url", rc.URL, "either url (one without credentials) or secretKey (a key holding the URL, set with --secret)")
		} else if rc.URL != "" {
			u, err := url.Parse(rc.URL)
			switch {
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				bad("url", rc.URL, "an http:// or https:// URL")
			case u.User != nil || u.RawQuery != "":
				bad("url", "<not shown: it may carry credentials>", "a URL without user:password@ or a query: put one that carries a token in a key set with --secret and name it in secretKey")
			}
		} else {
			needSecret = "the webhook URL"
		}
	case Email:
		if !strings.Contains(rc.To, "@") {
			bad("to", rc.To, "the address(es) to notify")
		}
		if !strings.Contains(rc.From, "@") {
			bad("from", rc.From, "the sender address")
		}
		if host, port, err := net.SplitHostPort(rc.Smarthost); err != nil || host == "" || port == "" {
			bad("smarthost", rc.Smarthost, "the SMTP server as host:port, like smtp.example.org:587")
		}
		if (rc.Username == "") != (rc.SecretKey == "") {
			bad("secretKey", rc.SecretKey, "set with username, as the key holding the SMTP password (set with --secret), or neither")
		}
		if rc.SecretKey != "" {
			needSecret = "the SMTP password"
		}
	}
	if needSecret == "" {
		return rc, ok
	}
	if !configKey.MatchString(rc.SecretKey) {
		bad("secretKey", rc.SecretKey, fmt.Sprintf("the name of a key holding %s, set with `pulumi config set --secret %s:<key> <value>`", needSecret, r.ctx.Project()))
		return rc, false
	}
	rc.Secret = r.secret(rc.SecretKey, true)
	// A URL must be one, checked without showing it.
	if rc.Type == Slack || rc.Type == Webhook {
		if v, set := r.ctx.GetConfig(r.ctx.Project() + ":" + rc.SecretKey); set {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("secretKey", rc.SecretKey, fmt.Sprintf("a key holding %s (http:// or https://); %s:%s holds no URL", needSecret, r.ctx.Project(), rc.SecretKey))
			}
		}
	}
	return rc, ok
}
