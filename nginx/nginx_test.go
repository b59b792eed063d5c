package nginx_test

import (
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
		"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
		"proxy_set_header X-Real-IP $remote_addr;",
		"proxy_set_header X-Forwarded-Proto $scheme;",
		"server 127.0.0.1:8081 max_fails=0 fail_timeout=10s;",
		"server 127.0.0.1:8082 max_fails=0 fail_timeout=10s;",
		"location = /nginx-health",
		"location = /metrics",
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
