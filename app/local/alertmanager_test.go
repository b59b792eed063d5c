package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAlertmanagerNotifiesTheLogAndTheWebhooks: an alert posted to the
// local Alertmanager reaches the alert log (alerts.jsonl and its text
// output) and a webhook added after start, firing and then resolved.
func TestAlertmanagerNotifiesTheLogAndTheWebhooks(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncBuffer
	log, err := StartAlertLog(dir, 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	am, err := StartAlertmanager(ctx, dir, portOr(0), AlertTiming{GroupWait: 100 * time.Millisecond, GroupInterval: 500 * time.Millisecond}, log.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer am.Stop(10 * time.Second)

	var mu sync.Mutex
	var got []Notification
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook: %v", err)
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}))
	defer hook.Close()
	if err := am.SetWebhooks(ctx, hook.URL); err != nil {
		t.Fatal(err)
	}

	started := time.Now().Add(-time.Second)
	post := func(ends time.Time) {
		body, _ := json.Marshal([]map[string]any{{
			"labels":      map[string]string{"alertname": "TestAlert", "instance": "127.0.0.1:1", "severity": "warning"},
			"annotations": map[string]string{"summary": "a test alert"},
			"startsAt":    started, "endsAt": ends,
		}})
		resp, err := http.Post(am.URL()+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("post an alert: %s", resp.Status)
		}
	}
	wait := func(status string) {
		t.Helper()
		for {
			mu.Lock()
			seen := len(got) > 0 && got[len(got)-1].Status == status && got[len(got)-1].Alerts[0].Labels["alertname"] == "TestAlert"
			mu.Unlock()
			if seen && inLog(t, log.Path, status) && strings.Contains(out.String(), "alert "+status) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no %s notification at the webhook, in %s and in the text output (%q): %v", status, log.Path, out.String(), ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	post(time.Now().Add(time.Hour))
	wait("firing")
	post(time.Now())
	wait("resolved")
}

func inLog(t *testing.T, path, status string) bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var n Notification
		if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if n.Status == status {
			return true
		}
	}
	return false
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
