package nginx_test

import (
	"net/http"
	"testing"
)

// NGINX is the edge: it overwrites X-Forwarded-For with the peer's address,
// so a client cannot name another address to the instances, which trust
// NGINX's header (TRUSTED_PROXIES).
func TestAClientsForwardedForIsReplacedByItsAddress(t *testing.T) {
	b := instance(t, http.StatusOK)
	listen, _ := startNginx(t, b.addr)
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
	req.Header.Add("X-Forwarded-For", "6.6.6.6")
	req.Header.Add("X-Forwarded-For", "7.7.7.7, 8.8.8.8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, forwards := b.seen(); resp.StatusCode != http.StatusOK || len(forwards) != 1 || forwards[0] != "127.0.0.1" {
		t.Errorf("status %d; the instance saw X-Forwarded-For %q, want exactly [127.0.0.1], the client's own address", resp.StatusCode, forwards)
	}
}

// /metrics and /ready answer 404 at the edge, however the path is spelled
// (NGINX matches locations on the decoded, merged path), and never reach
// an instance; everything else does.
func TestMetricsAndReadyAreNotServedThroughTheEdge(t *testing.T) {
	b := instance(t, http.StatusOK)
	listen, _ := startNginx(t, b.addr)
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
	paths, _ := b.seen()
	for _, p := range paths {
		switch p {
		case "|/metrics", "|/ready", "/re%61dy|/ready":
			t.Errorf("%s reached the instance", p)
		}
	}
	if len(paths) != 3 {
		t.Errorf("the instance saw %q, want /health, / and /ws only", paths)
	}
}
