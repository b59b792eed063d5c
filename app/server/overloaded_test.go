package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// TestSendsPastTheBacklogCapAreRefusedOverloaded runs an instance of its own
// and stops its Postgres, so every accepted message stays queued:
// PERSIST_BACKLOG_CAP sends are acked, the next is refused with the code
// overloaded and its ref, and a retry of an acked send is still acked with
// its seq. A room's first send needs Postgres (the counter is seeded above
// what it stores), so the room is started before the outage.
func TestSendsPastTheBacklogCapAreRefusedOverloaded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const backlogCap = 100
	st := startOwnStack(ctx, t, "chat-overloaded", fmt.Sprintf("PERSIST_BACKLOG_CAP=%d", backlogCap), "RATE_LIMIT=10000", "RATE_BURST=10000")
	pg, c := st.pg, st.chat

	conn := chattest.Raw(t, c.WSURL(), token(t, "alice", time.Hour))
	room := chattest.Room()
	// send returns the answer to the send, skipping the room's messages.
	send := func(id string) protocol.ServerFrame {
		t.Helper()
		if err := conn.WriteJSON(map[string]string{"op": "send", "room": room, "text": "queued " + id, "id": id}); err != nil {
			t.Fatal(err)
		}
		for {
			if f := chattest.Next(t, conn); f.Op != protocol.OpMessage {
				return f
			}
		}
	}
	if err := conn.WriteJSON(map[string]any{"op": "join", "room": room}); err != nil {
		t.Fatal(err)
	}
	if f := chattest.Next(t, conn); f.Op != protocol.OpJoined {
		t.Fatalf("join answered %+v", f)
	}
	acked := func(i int) {
		t.Helper()
		id := fmt.Sprintf("c-%d", i)
		if f := send(id); f.Op != protocol.OpAck || f.ID != id || f.Seq != int64(i) {
			t.Fatalf("send %d: %+v, want its ack with seq %d", i, f, i)
		}
	}
	acked(1)
	retry.DoWithRetry(t, "the first message stored", 100, 100*time.Millisecond, func() (string, error) {
		if n := chattest.Metric(t, c.URL(), "chat_messages_persisted_total"); n != 1 {
			return "", fmt.Errorf("%v stored", n)
		}
		return "", nil
	})
	if err := pg.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= backlogCap+1; i++ {
		acked(i)
	}
	if f := send("c-over"); f.Op != protocol.OpError || f.Code != protocol.CodeOverloaded || f.Ref != "c-over" {
		t.Fatalf("send past the cap: %+v, want error overloaded with ref c-over", f)
	}
	if f := send("c-7"); f.Op != protocol.OpAck || f.Seq != 7 {
		t.Fatalf("retry of acked send c-7 while overloaded: %+v, want its ack with seq 7", f)
	}
	if got := chattest.Metric(t, c.URL(), `chat_messages_received_total{result="overloaded"`); got != 1 {
		t.Errorf(`chat_messages_received_total{result="overloaded"} = %v, want 1`, got)
	}
}
