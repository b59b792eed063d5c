package chattest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/local"
)

// Received is one notification an AlertWebhook got, and when.
type Received struct {
	At time.Time
	N  local.Notification
}

// AlertWebhook is an Alertmanager webhook receiver run by a test.
type AlertWebhook struct {
	Addr net.Addr
	mu   sync.Mutex
	got  []Received
}

// StartAlertWebhook listens on addr (127.0.0.1:0 for an Alertmanager on
// this host; 0.0.0.0:0 for one in a cluster's containers) until the test
// ends.
func StartAlertWebhook(t testing.TB, addr string) *AlertWebhook {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("alert webhook: %v", err)
	}
	w := &AlertWebhook{Addr: ln.Addr()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var n local.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("alert webhook: a notification that is not Alertmanager's JSON: %v", err)
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, Received{time.Now(), n})
		w.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return w
}

// Port is the port it listens on.
func (w *AlertWebhook) Port() int { return w.Addr.(*net.TCPAddr).Port }

// Count is how many notifications it has received.
func (w *AlertWebhook) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

// Find is the first notification received after since carrying an alert
// named alert in state status ("firing" or "resolved") that match accepts,
// and that alert's index in it.
func (w *AlertWebhook) Find(since time.Time, alert, status string, match func(labels map[string]string, startsAt time.Time) bool) (Received, int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.got {
		if r.At.Before(since) {
			continue
		}
		for i, a := range r.N.Alerts {
			if a.Labels["alertname"] == alert && a.Status == status && match(a.Labels, a.StartsAt) {
				return r, i, true
			}
		}
	}
	return Received{}, 0, false
}
