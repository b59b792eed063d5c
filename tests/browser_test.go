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
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
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

// logShows is a JavaScript expression: whether the page's log shows text.
func logShows(text string) string {
	return `document.getElementById("log").innerText.includes(` + fmt.Sprintf("%q", text) + `)`
}

// screenshot writes what the page shows in a width by height viewport as a
// PNG file. The viewport is set, not the window, whose frame headless
// Chromium subtracts in its own way.
func (p *page) screenshot(path string, width, height int) error {
	if _, err := p.call("Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false,
	}); err != nil {
		return err
	}
	raw, err := p.call("Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		return err
	}
	var r struct{ Data []byte } // base64 in the reply
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	return os.WriteFile(path, r.Data, 0o644)
}

// The chat page served at / works in a browser: each line typed in a page
// on one instance appears in a page on another, both ways. With
// SWITCHBOARD_SCREENSHOT=path (make docs) it also writes the first page,
// after the conversation, to path: docs/img/chat.png.
func chatPageInTwoBrowsers(t *testing.T, s *suite) {
	ins := s.instances(t)
	if len(ins) < 2 {
		t.Fatalf("the chat page test needs two instances, the target has %d", len(ins))
	}
	shot := os.Getenv("SWITCHBOARD_SCREENSHOT")
	room := chattest.Room()
	if shot != "" {
		room = "lobby" // the page's own default, rather than a new name at each run
	}
	users := []string{"alice", "bob"}
	pages := make([]*page, 2)
	for i := range pages {
		// The token in the fragment, which the browser never sends; the page
		// hands it to the server as the bearer.<jwt> subprotocol.
		q := url.Values{"room": {room}}
		pages[i] = openPage(t, ins[i].URL+"/?"+q.Encode()+"#token="+s.token(t, users[i], time.Hour))
		pages[i].waitFor(t, "page joined on "+ins[i].ID, `document.getElementById("status").dataset.instance + "/" + document.getElementById("text").disabled`, ins[i].ID+"/false")
	}
	conversation := []struct {
		from int
		text string
	}{
		{0, "hi bob, I'm typing in Chromium on " + ins[0].ID},
		{1, "hi alice! it reached me on " + ins[1].ID + " through Redis"},
		{0, "and Postgres keeps it for the room's history"},
		{1, "so a reconnect resumes from the last seq it saw"},
	}
	for i, c := range conversation {
		began := time.Now()
		if err := pages[c.from].typeLine(c.text); err != nil {
			t.Fatal(err)
		}
		to := 1 - c.from
		pages[to].waitFor(t, "the line appears on "+ins[to].ID, logShows(c.text), "true")
		if i == 0 {
			report.Logf(t, "chat page: typed in Chromium on %s, shown in Chromium on %s %s later", ins[0].ID, ins[1].ID, time.Since(began).Round(time.Millisecond))
		}
	}
	if shot == "" {
		return
	}
	last := conversation[len(conversation)-1].text
	pages[0].waitFor(t, "the whole conversation on "+ins[0].ID, logShows(last), "true")
	// No text cursor, which blinks, in the picture.
	if _, err := pages[0].eval(`document.activeElement.blur()`); err != nil {
		t.Fatal(err)
	}
	if err := pages[0].screenshot(shot, 800, 330); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	report.Logf(t, "chat page: screenshot of %s's page written to %s", users[0], shot)
}
