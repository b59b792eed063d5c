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
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run make deps (apt-get install -y nginx-light)")
	}
	dir := t.TempDir()
	// Every option on: the file limit, reuseport and the upstream sources too.
	conf, err := nginx.Render(nginx.Config{
		Listen: "127.0.0.1:18080", Servers: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, Runtime: dir,
		FileLimit: 4096, ReusePort: true, UpstreamSources: []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// A handshake refused with 503 (a draining instance, or one whose Redis is
// down) goes on to the next instance; only when every instance refuses does
// the client get the 503. Each case lists the refusing instance first and
// last, so that ip_hash picks it first in one of them.
func TestA503GoesToTheNextInstanceUnlessAllRefuse(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run make deps (apt-get install -y nginx-light)")
	}
	refusing := instance(t, http.StatusServiceUnavailable)
	serving := instance(t, http.StatusOK)
	for _, tc := range []struct {
		name    string
		servers []string
		want    int
	}{
		{"refusing first", []string{refusing, serving}, http.StatusOK},
		{"refusing last", []string{serving, refusing}, http.StatusOK},
		{"all refusing", []string{refusing, instance(t, http.StatusServiceUnavailable)}, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen := freeAddr(t)
			dir := t.TempDir()
			conf, err := nginx.Render(nginx.Config{Listen: listen, Servers: tc.servers, Runtime: dir, Foreground: true, Workers: "1"})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The whole group: a killed master leaves its worker running.
			t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
			var resp *http.Response
			retry.DoWithRetry(t, "nginx listens", 50, 100*time.Millisecond, func() (string, error) {
				resp, err = http.Get("http://" + listen + "/ws")
				return "", err
			})
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
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run make deps (apt-get install -y nginx-light)")
	}
	listen, dir := freeAddr(t), t.TempDir()
	conf, err := nginx.Render(nginx.Config{Listen: listen, Servers: []string{instance(t, http.StatusOK)}, Runtime: dir, Foreground: true, Workers: "1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	get := func(target, referer string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+listen+target, nil)
		if referer != "" {
			req.Header.Set("Referer", referer)
		}
		return http.DefaultClient.Do(req)
	}
	retry.DoWithRetry(t, "nginx listens", 50, 100*time.Millisecond, func() (string, error) {
		resp, err := get("/ws?token=SECRET", "")
		if err == nil {
			resp.Body.Close()
		}
		return "", err
	})
	for _, r := range [][2]string{{"/rooms/lobby/messages?before=5&token=SECRET", ""}, {"/app.js", "http://" + listen + "/?token=SECRET"}} {
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

// instance is an HTTP server on a free port that answers every request with status.
func instance(t *testing.T, status int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
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
