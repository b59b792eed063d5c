package nginx_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/nginx"
)

func TestRenderedConfigHasStickinessUpgradeTimeoutsAndHealth(t *testing.T) {
	conf, err := nginx.Render(nginx.Config{Listen: "127.0.0.1:8080", Servers: []string{"127.0.0.1:8081", "127.0.0.1:8082"}})
	if err != nil {
		t.Fatal(err)
	}
	contains(t, conf,
		"ip_hash;",
		"map $http_upgrade $connection_upgrade",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_read_timeout 3600s;",
		"proxy_send_timeout 3600s;",
		"proxy_set_header X-Forwarded-For $remote_addr;",
		"proxy_set_header X-Real-IP $remote_addr;",
		"proxy_set_header X-Forwarded-Proto $scheme;",
		"server 127.0.0.1:8081 max_fails=0 fail_timeout=10s;",
		"server 127.0.0.1:8082 max_fails=0 fail_timeout=10s;",
		"location = /nginx-health",
		"location = /metrics",
		"location = /ready",
		"listen 127.0.0.1:8080;",
	)
}

func contains(t *testing.T, conf []byte, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(string(conf), want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
}

func TestResolverModeReResolvesTheInstances(t *testing.T) {
	conf, err := nginx.Render(nginx.Config{Listen: "8080", Servers: []string{"chat-headless.switchboard.svc.cluster.local:8080"}, Resolver: "kube-dns.kube-system.svc.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	contains(t, conf,
		"resolver kube-dns.kube-system.svc.cluster.local valid=5s ipv6=off;",
		"zone chat 256k;",
		"server chat-headless.switchboard.svc.cluster.local:8080 max_fails=0 fail_timeout=10s resolve;",
		"error_log stderr warn;", // no Runtime: in a container, whose runtime collects stderr
	)
}

func TestRenderRefusesValuesThatWouldInjectDirectives(t *testing.T) {
	for name, c := range map[string]nginx.Config{
		"no servers":          {Listen: "8080"},
		"no listen":           {Servers: []string{"a:1"}},
		"semicolon":           {Listen: "8080", Servers: []string{"a:1; include /etc/passwd"}},
		"brace in resolver":   {Listen: "8080", Servers: []string{"a:1"}, Resolver: "x}"},
		"space in runtime":    {Listen: "8080", Servers: []string{"a:1"}, Runtime: "/tmp/a b"},
		"variable in listen":  {Listen: "$host", Servers: []string{"a:1"}},
		"semicolon in source": {Listen: "8080", Servers: []string{"a:1"}, UpstreamSources: []string{"127.0.1.1; x"}},
	} {
		if _, err := nginx.Render(c); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

// The real nginx binary accepts the rendered file.
func TestNginxAcceptsTheRenderedConfig(t *testing.T) {
	// Every option on: the file limit, reuseport and the upstream sources too.
	cmd := nginxCommand(t, nginx.Config{
		Listen: "127.0.0.1:18080", Servers: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, Runtime: t.TempDir(),
		FileLimit: 4096, ReusePort: true, UpstreamSources: []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"},
	}, "-t")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// A handshake refused with 503 (a draining instance, or one whose Redis is
// down) goes on to the next instance; only when every instance refuses does
// the client get the 503. Each case lists the refusing instance first and
// last, so that ip_hash picks it first in one of them.
func TestA503GoesToTheNextInstanceUnlessAllRefuse(t *testing.T) {
	refusing := instance(t, http.StatusServiceUnavailable).addr
	serving := instance(t, http.StatusOK).addr
	for _, tc := range []struct {
		name    string
		servers []string
		want    int
	}{
		{"refusing first", []string{refusing, serving}, http.StatusOK},
		{"refusing last", []string{serving, refusing}, http.StatusOK},
		{"all refusing", []string{refusing, instance(t, http.StatusServiceUnavailable).addr}, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen, _ := startNginx(t, tc.servers...)
			resp, err := http.Get("http://" + listen + "/ws")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("through NGINX to %v: %d, want %d", tc.servers, resp.StatusCode, tc.want)
			}
		})
	}
}

// The access log keeps paths, never query strings or Referers: a token
// sent as ?token= (or a page URL that held one, in a Referer) must not land
// in a log file.
func TestTheAccessLogHoldsNoQueryString(t *testing.T) {
	for _, runtime := range []bool{true, false} {
		conf, err := nginx.Render(nginx.Config{Listen: "8080", Servers: []string{"a:1"}, Runtime: map[bool]string{true: "/tmp/x"}[runtime]})
		if err != nil {
			t.Fatal(err)
		}
		contains(t, conf, "log_format switchboard ", "$uri", " switchboard;")
		var directives []string // the config without its comments
		for _, l := range strings.Split(string(conf), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				directives = append(directives, l)
			}
		}
		for _, leak := range []string{"$request ", "$request\"", "$request_uri", "$args", "$query_string", "$http_referer", "combined"} {
			if strings.Contains(strings.Join(directives, "\n"), leak) {
				t.Errorf("Runtime %v: the config logs %s", runtime, leak)
			}
		}
	}
	listen, dir := startNginx(t, instance(t, http.StatusOK).addr)
	get := func(target, referer string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+listen+target, nil)
		if referer != "" {
			req.Header.Set("Referer", referer)
		}
		return http.DefaultClient.Do(req)
	}
	for _, r := range [][2]string{{"/ws?token=SECRET", ""}, {"/rooms/lobby/messages?before=5&token=SECRET", ""}, {"/app.js", "http://" + listen + "/?token=SECRET"}} {
		resp, err := get(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var log []byte
	retry.DoWithRetry(t, "the access log holds the three requests", 50, 100*time.Millisecond, func() (string, error) {
		log, _ = os.ReadFile(filepath.Join(dir, "access.log"))
		if strings.Count(string(log), "\n") < 3 {
			return "", fmt.Errorf("access log: %q", log)
		}
		return "", nil
	})
	if strings.Contains(string(log), "SECRET") {
		t.Errorf("the access log holds the token:\n%s", log)
	}
	for _, want := range []string{"GET /ws HTTP/1.1\" 200", "GET /rooms/lobby/messages HTTP/1.1\" 200", "GET /app.js HTTP/1.1\" 200"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the access log lacks %q:\n%s", want, log)
		}
	}
}

// backend is an instance behind NGINX: an HTTP server on a free port that
// answers every request with one status and records what reached it.
type backend struct {
	addr     string
	mu       sync.Mutex
	paths    []string // RawPath|Path of each request
	forwards []string // X-Forwarded-For of each request, joined
}

func instance(t *testing.T, status int) *backend {
	t.Helper()
	b := &backend{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.paths = append(b.paths, r.URL.RawPath+"|"+r.URL.Path)
		b.forwards = append(b.forwards, r.Header.Values("X-Forwarded-For")...)
		b.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	b.addr = srv.Listener.Addr().String()
	return b
}

// seen returns the paths and X-Forwarded-For values that reached b so far.
func (b *backend) seen() (paths, forwards []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...), append([]string(nil), b.forwards...)
}

// nginxCommand renders c into c.Runtime and returns the real nginx's
// command for it, with flags first.
func nginxCommand(t *testing.T, c nginx.Config, flags ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run make deps (apt-get install -y nginx-light)")
	}
	conf, err := nginx.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Runtime, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command(bin, append(flags, "-p", c.Runtime, "-e", filepath.Join(c.Runtime, "error.log"), "-c", path)...)
}

// startNginx runs the real NGINX with the rendered configuration in front
// of servers and returns its address once it listens, and its runtime
// directory (access.log). No request has passed through it yet.
func startNginx(t *testing.T, servers ...string) (listen, dir string) {
	t.Helper()
	listen, dir = freeAddr(t), t.TempDir()
	cmd := nginxCommand(t, nginx.Config{Listen: listen, Servers: servers, Runtime: dir, Foreground: true, Workers: "1"})
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The whole group: a killed master leaves its worker running.
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	// A connection, not a request: the master listens before its worker
	// accepts, and the kernel queues the requests until then.
	retry.DoWithRetry(t, "nginx listens", 50, 100*time.Millisecond, func() (string, error) {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			return "", err
		}
		return "", c.Close()
	})
	return listen, dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
