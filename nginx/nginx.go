// Package nginx renders the NGINX configuration that fronts the chat
// instances on the local and kind targets: ip_hash stickiness, the WebSocket
// upgrade, hour-long proxy timeouts, forwarded-for headers and passive health.
package nginx

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"
)

//go:embed nginx.conf.tmpl
var source string

var tmpl = template.Must(template.New("nginx.conf").Funcs(template.FuncMap{
	"seconds": func(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second)) },
	"inc":     func(i int) int { return i + 1 },
	"share":   func(all []string) string { return fmt.Sprintf("%.2f", 100/float64(len(all))) },
}).Parse(source))

// Config is what the template needs. Zero values take the defaults of Render.
type Config struct {
	Listen  string   // address or port NGINX listens on, e.g. 127.0.0.1:8080
	Servers []string // the instances as host:port; with Resolver, DNS names re-resolved at run time
	// Resolver is the DNS server used to re-resolve Servers while running
	// (e.g. kube-dns); it needs NGINX 1.27.3 or newer. Empty: resolve once at start.
	Resolver     string
	ResolveEvery time.Duration // how long a resolved address is trusted (5s)

	// MaxFails failures within FailTimeout make NGINX skip an instance for
	// FailTimeout. 0 (the default): never skip; each handshake tries its
	// instance and moves on if that fails. See the template for why.
	MaxFails          int
	FailTimeout       time.Duration // (10s)
	Timeout           time.Duration // proxy read and send timeout (3600s)
	ConnectTimeout    time.Duration // connect to an instance (2s)
	Workers           string        // worker_processes ("auto")
	WorkerConnections int           // per worker (16384)
	// FileLimit raises each worker's open-file limit (worker_rlimit_nofile);
	// a proxied WebSocket holds two. 0: the limit NGINX starts with.
	FileLimit int
	// UpstreamSources are local addresses NGINX connects to the instances
	// from, spread over the clients (proxy_bind); empty: the kernel's choice.
	UpstreamSources []string
	// ReusePort gives each worker its own listening socket, so the kernel
	// spreads new connections evenly over the workers.
	ReusePort bool

	// Runtime is the directory for the pid file, logs and temp files when NGINX
	// runs unprivileged outside its package paths. Empty: NGINX's built-in paths.
	Runtime    string
	Foreground bool // daemon off, for a supervisor or a container
}

// Render returns the configuration file for c.
func Render(c Config) ([]byte, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	return b.Bytes(), nil
}

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.ResolveEvery, 5*time.Second)
	set(&c.FailTimeout, 10*time.Second)
	set(&c.Timeout, time.Hour)
	set(&c.ConnectTimeout, 2*time.Second)
	if c.Workers == "" {
		c.Workers = "auto"
	}
	if c.WorkerConnections == 0 {
		c.WorkerConnections = 16384
	}
	return c
}

// validate refuses values that would change the file's structure: every value
// lands inside one directive.
func (c Config) validate() error {
	var errs []error
	word := func(field, v string) {
		if v == "" || strings.ContainsAny(v, " \t\r\n;{}'\"$#") {
			errs = append(errs, fmt.Errorf("%s=%q: want one word without spaces, quotes, ; { } $ or #", field, v))
		}
	}
	word("Listen", c.Listen)
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("Servers: want at least one host:port"))
	}
	for _, s := range c.Servers {
		word("Servers", s)
	}
	if c.Resolver != "" {
		word("Resolver", c.Resolver)
	}
	if c.Runtime != "" {
		word("Runtime", c.Runtime)
	}
	for _, a := range c.UpstreamSources {
		word("UpstreamSources", a)
	}
	word("Workers", c.Workers)
	if c.MaxFails < 0 || c.WorkerConnections < 0 || c.FileLimit < 0 {
		errs = append(errs, errors.New("MaxFails, WorkerConnections and FileLimit: want positive numbers"))
	}
	return errors.Join(errs...)
}
