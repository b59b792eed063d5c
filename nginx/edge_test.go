package nginx_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/nginx"
)

// seen records what reached an instance behind NGINX.
type seen struct {
	mu       sync.Mutex
	paths    []string
	forwards []string // X-Forwarded-For of each request, joined
}

// edgeInFront runs the real NGINX with the rendered configuration in front
// of one instance that records each request, and returns NGINX's address.
func edgeInFront(t *testing.T) (string, *seen) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run make deps (apt-get install -y nginx-light)")
	}
	got := &seen{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.mu.Lock()
		got.paths = append(got.paths, r.URL.RawPath+"|"+r.URL.Path)
		got.forwards = append(got.forwards, r.Header.Values("X-Forwarded-For")...)
		got.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(backend.Close)
	addr := backend.Listener.Addr().String()

	listen := freeAddr(t)
	dir := t.TempDir()
	conf, err := nginx.Render(nginx.Config{Listen: listen, Servers: []string{addr}, Runtime: dir, Foreground: true, Workers: "1"})
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
	retry.DoWithRetry(t, "nginx and its instance answer", 50, 100*time.Millisecond, func() (string, error) {
		resp, err := http.Get("http://" + listen + "/health")
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", io.ErrUnexpectedEOF
		}
		return "", nil
	})
	got.mu.Lock()
	got.paths, got.forwards = nil, nil
	got.mu.Unlock()
	return listen, got
}

// NGINX is the edge: it overwrites X-Forwarded-For with the peer's address,
// so a client cannot name another address to the instances, which trust
// NGINX's header (TRUSTED_PROXIES).
func TestAClientsForwardedForIsReplacedByItsAddress(t *testing.T) {
	listen, got := edgeInFront(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
	req.Header.Add("X-Forwarded-For", "6.6.6.6")
	req.Header.Add("X-Forwarded-For", "7.7.7.7, 8.8.8.8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got.mu.Lock()
	defer got.mu.Unlock()
	if resp.StatusCode != http.StatusOK || len(got.forwards) != 1 || got.forwards[0] != "127.0.0.1" {
		t.Errorf("status %d; the instance saw X-Forwarded-For %q, want exactly [127.0.0.1], the client's own address", resp.StatusCode, got.forwards)
	}
}

// /metrics and /ready answer 404 at the edge, however the path is spelled
// (NGINX matches locations on the decoded, merged path), and never reach
// an instance; everything else does.
func TestMetricsAndReadyAreNotServedThroughTheEdge(t *testing.T) {
	listen, got := edgeInFront(t)
	for path, want := range map[string]int{
		"/metrics": 404, "/ready": 404, "//ready": 404, "/re%61dy": 404, "/metrics?x=1": 404,
		"/health": 200, "/": 200, "/ws": 200,
	} {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s through NGINX: %d, want %d", path, resp.StatusCode, want)
		}
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	for _, p := range got.paths {
		switch p {
		case "|/metrics", "|/ready", "/re%61dy|/ready":
			t.Errorf("%s reached the instance", p)
		}
	}
	if len(got.paths) != 3 {
		t.Errorf("the instance saw %q, want /health, / and /ws only", got.paths)
	}
}
