package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	loadtool "github.com/switchboard-dev/switchboard/app/load"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

const secret = "floor-secret-0123456789abcdef0123"

func start(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(newServer(auth.NewVerifier([]byte(secret))))
	t.Cleanup(srv.Close)
	return srv
}

// chatload, as `make bench` runs it, gets from the floor what it gets from
// Switchboard: every send acked, and delivered once to each of the ten
// members of its room in seq order, with its latency measured.
func TestChatloadDrivesTheFloor(t *testing.T) {
	srv := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := loadtool.Run(ctx, loadtool.Options{
		Endpoint: srv.URL, Secret: secret, Conns: 40, Rooms: 4, Publishers: 4, Rate: 200, Messages: 200, Size: 64,
		Drain: 5 * time.Second, RoomPrefix: "floor", Of: 1,
	}, loadtool.Hooks{})
	if err != nil {
		t.Fatalf("chatload: %v", err)
	}
	if err := rep.Whole(40, 200, 2000); err != nil {
		t.Fatal(err)
	}
}

// The floor refuses what Switchboard refuses on the path chatload takes: a
// connection without a valid token, a frame that is not the protocol's, a
// send to a room not joined.
func TestTheFloorRefusesBadInput(t *testing.T) {
	srv := start(t)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	for name, header := range map[string]http.Header{"no token": nil, "bad token": {"Authorization": {"Bearer not-a-jwt"}}} {
		if _, resp, err := websocket.DefaultDialer.Dial(url, header); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: got %v, %v; want a 401", name, resp, err)
		}
	}
	token, err := auth.Mint([]byte(secret), "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(url+"?token="+token, nil)
	if err != nil {
		t.Fatalf("dial with the token as a query parameter: %v", err)
	}
	defer ws.Close()
	var welcome protocol.ServerFrame
	if err := ws.ReadJSON(&welcome); err != nil || welcome.Op != protocol.OpWelcome || welcome.User != "alice" {
		t.Fatalf("first frame %+v (%v), want alice's welcome", welcome, err)
	}
	for _, c := range []struct{ send, code string }{
		{`{"op":"shout","room":"lobby"}`, protocol.CodeBadRequest},
		{`{"op":"send","room":"lobby","text":"hi","id":"c-1"}`, protocol.CodeNotJoined},
	} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(c.send)); err != nil {
			t.Fatal(err)
		}
		var got protocol.ServerFrame
		if err := ws.ReadJSON(&got); err != nil || got.Op != protocol.OpError || got.Code != c.code {
			t.Errorf("%s: got %+v (%v), want an error frame %s", c.send, got, err, c.code)
		}
	}
}
