package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/chattest"
)

// page is one headless Chromium showing a URL, driven over the DevTools protocol.
type page struct {
	conn *websocket.Conn
	next int
}

// openPage starts Debian's chromium on pageURL; it is stopped at the test's end.
func openPage(t *testing.T, pageURL string) *page {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run make deps (apt-get install -y chromium)")
	}
	profile := t.TempDir()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir="+profile, pageURL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(profile, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its renderers share the group
		cmd.Wait()
		logf.Close()
	})
	// Chromium writes the port it chose into the profile.
	var port string
	until(t, "chromium's DevTools port", 30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err != nil || !strings.Contains(string(b), "\n") {
			return errorf("no DevToolsActivePort yet")
		}
		port = strings.SplitN(string(b), "\n", 2)[0]
		return nil
	})
	var debugURL string
	until(t, "chromium's page target", 30*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var targets []struct{ Type, URL, WebSocketDebuggerURL string }
		if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
			return err
		}
		for _, tg := range targets {
			if tg.Type == "page" {
				debugURL = tg.WebSocketDebuggerURL
				return nil
			}
		}
		return errorf("no page among %d targets", len(targets))
	})
	conn, _, err := websocket.DefaultDialer.Dial(debugURL, nil)
	if err != nil {
		t.Fatalf("DevTools %s: %v", debugURL, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &page{conn: conn}
}

// call sends one DevTools command and returns its result.
func (p *page) call(method string, params any) (json.RawMessage, error) {
	p.next++
	id := p.next
	if err := p.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var reply struct {
			ID     int
			Result json.RawMessage
			Error  *struct{ Message string }
		}
		if err := p.conn.ReadJSON(&reply); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if reply.ID != id {
			continue // an event
		}
		if reply.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, reply.Error.Message)
		}
		return reply.Result, nil
	}
}

// eval evaluates a JavaScript expression in the page and returns its value as a string.
func (p *page) eval(expr string) (string, error) {
	raw, err := p.call("Runtime.evaluate", map[string]any{"expression": "String(" + expr + ")", "returnByValue": true})
	if err != nil {
		return "", err
	}
	var r struct {
		Result struct{ Value string }
	}
	err = json.Unmarshal(raw, &r)
	return r.Result.Value, err
}

// waitFor retries until expr evaluates to want.
func (p *page) waitFor(t *testing.T, what, expr, want string) {
	t.Helper()
	until(t, what, 30*time.Second, func() error {
		got, err := p.eval(expr)
		if err != nil {
			return err
		}
		if got != want {
			return errorf("%s is %q, want %q", expr, got, want)
		}
		return nil
	})
}

// typeLine types text into the focused page's message box and presses Enter.
func (p *page) typeLine(text string) error {
	if _, err := p.eval(`document.getElementById("text").focus()`); err != nil {
		return err
	}
	if _, err := p.call("Input.insertText", map[string]any{"text": text}); err != nil {
		return err
	}
	for _, typ := range []string{"keyDown", "keyUp"} {
		key := map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
		if typ == "keyDown" {
			key["text"] = "\r"
		}
		if _, err := p.call("Input.dispatchKeyEvent", key); err != nil {
			return err
		}
	}
	return nil
}

// The chat page served at / works in a browser: a line typed in a page on
// one instance appears in a page on another.
func chatPageInTwoBrowsers(t *testing.T, s *suite) {
	ins := s.instances(t)
	if len(ins) < 2 {
		t.Fatalf("the chat page test needs two instances, the target has %d", len(ins))
	}
	room := chattest.Room()
	pages := make([]*page, 2)
	for i := range pages {
		// The token in the fragment, which the browser never sends; the page
		// hands it to the server as the bearer.<jwt> subprotocol.
		q := url.Values{"room": {room}}
		pages[i] = openPage(t, ins[i].URL+"/?"+q.Encode()+"#token="+s.token(t, fmt.Sprintf("browser-%d", i), time.Hour))
		pages[i].waitFor(t, "page joined on "+ins[i].ID, `document.getElementById("status").dataset.instance + "/" + document.getElementById("text").disabled`, ins[i].ID+"/false")
	}
	began := time.Now()
	line := "hello from chromium on " + ins[0].ID
	if err := pages[0].typeLine(line); err != nil {
		t.Fatal(err)
	}
	pages[1].waitFor(t, "the line appears on "+ins[1].ID, `document.getElementById("log").innerText.includes(`+fmt.Sprintf("%q", line)+`)`, "true")
	report.Logf(t, "chat page: typed in Chromium on %s, shown in Chromium on %s %s later", ins[0].ID, ins[1].ID, time.Since(began).Round(time.Millisecond))
}
