package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// A browser sends its token as the subprotocol bearer.<jwt> beside
// switchboard: the server selects switchboard and never echoes the token.
func TestTheTokenTravelsAsASubprotocol(t *testing.T) {
	tok := token(t, "alice", time.Hour)
	d := websocket.Dialer{Subprotocols: auth.Subprotocols(tok)}
	conn, resp, err := d.Dial(env.a.WSURL(), nil)
	if err != nil {
		t.Fatalf("dial with the bearer subprotocol: %v", err)
	}
	defer conn.Close()
	if got := resp.Header.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != auth.Subprotocol {
		t.Errorf("Sec-WebSocket-Protocol answered %q, want only %q", got, auth.Subprotocol)
	}
	if f := chattest.Next(t, conn); f.Op != protocol.OpWelcome || f.User != "alice" {
		t.Errorf("first frame %+v, want alice's welcome", f)
	}
	// Without switchboard offered the server could select nothing: refused.
	d.Subprotocols = []string{auth.BearerPrefix + tok}
	if _, resp, err := d.Dial(env.a.WSURL(), nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bearer.<jwt> without switchboard: %v, want 401", err)
	}
}

// A token with a rooms claim joins, and reads the history of, only the
// rooms it names; the refusal names the room and the connection stays.
func TestARoomsClaimLimitsJoinsAndHistory(t *testing.T) {
	open, team := chattest.Room(), "team-"+chattest.Room()
	tok, err := auth.Mint([]byte(secret), "scoped", time.Hour, auth.Rooms(team+".*"))
	if err != nil {
		t.Fatal(err)
	}
	conn := chattest.Raw(t, env.a.WSURL(), tok)
	join := func(room string) protocol.ServerFrame {
		if err := conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: room}); err != nil {
			t.Fatal(err)
		}
		return chattest.Next(t, conn)
	}
	if f := join(open); f.Op != protocol.OpError || f.Code != protocol.CodeForbidden || !strings.Contains(f.Message, open) {
		t.Errorf("join %s outside the claim: %+v, want a forbidden error naming the room", open, f)
	}
	if f := join(team + ".x"); f.Op != protocol.OpJoined {
		t.Errorf("join %s.x inside the claim: %+v, want joined", team, f)
	}
	history := func(room, tok string) (int, string) {
		req, _ := http.NewRequest("GET", env.a.URL()+"/rooms/"+room+"/messages", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error
	}
	if code, msg := history(open, tok); code != http.StatusForbidden || !strings.Contains(msg, open) {
		t.Errorf("history of %s outside the claim: %d %q, want 403 naming the room", open, code, msg)
	}
	if code, msg := history(team+".x", tok); code != http.StatusOK {
		t.Errorf("history inside the claim: %d %q, want 200", code, msg)
	}
	// No claim: every room.
	if code, msg := history(open, token(t, "alice", time.Hour)); code != http.StatusOK {
		t.Errorf("history with an unscoped token: %d %q, want 200", code, msg)
	}
}

// JWT_ISSUER, JWT_AUDIENCE and JWT_MAX_TTL refuse the handshake, and the
// history API, with 401 and the reason.
func TestIssuerAudienceAndLifetimeAreChecked(t *testing.T) {
	c := ownChat(t, "chat-iss", "JWT_ISSUER=https://id.example", "JWT_AUDIENCE=switchboard", "JWT_MAX_TTL=1h")
	now := time.Now()
	sign := func(claims jwt.MapClaims) string {
		claims["sub"] = "alice"
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := jwt.MapClaims{"iss": "https://id.example", "aud": "switchboard", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		m := jwt.MapClaims{}
		for k, v := range good {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		token string
		want  string // "" accepted, else in the 401's error
	}{
		{"all right", sign(good), ""},
		{"other issuer", sign(with("iss", "https://evil.example")), "iss"},
		{"other audience", sign(with("aud", "other")), "aud"},
		{"2h lifetime", sign(with("exp", now.Add(2*time.Hour).Unix())), "lifetime"},
		{"10 years without iat", sign(jwt.MapClaims{"iss": "https://id.example", "aud": "switchboard", "exp": now.Add(10 * 365 * 24 * time.Hour).Unix()}), "no iat"},
	} {
		for _, path := range []string{"/ws", "/rooms/lobby/messages"} {
			req, _ := http.NewRequest("GET", c.URL()+path, nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			switch {
			case tc.want == "" && resp.StatusCode == http.StatusUnauthorized:
				t.Errorf("%s %s: 401 %q, want accepted", tc.name, path, body.Error)
			case tc.want != "" && (resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body.Error, tc.want)):
				t.Errorf("%s %s: %d %q, want 401 naming %s", tc.name, path, resp.StatusCode, body.Error, tc.want)
			}
		}
	}
}
