package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

func TestMessagesReachMembersOnEveryInstance(t *testing.T) {
	r := chattest.Room()
	alice, bob := dial(t, env.a, "alice"), dial(t, env.b, "bob")
	if alice.Instance() == bob.Instance() {
		t.Fatalf("both clients on %s", alice.Instance())
	}
	chattest.Join(t, alice, r)
	chattest.Join(t, bob, r)
	seq := chattest.Send(t, alice, r, "hello from a")
	if seq != 1 {
		t.Fatalf("first message of a new room acked with seq %d, want 1", seq)
	}
	for _, cl := range []*client.Client{alice, bob} {
		if got := chattest.Seqs(chattest.Receive(t, cl, 1, 5*time.Second)); got[0] != 1 {
			t.Fatalf("%s got seq %v, want [1]", cl.Instance(), got)
		}
	}
}

func TestConcurrentSendersGetGaplessSeqsSeenInOrderByAll(t *testing.T) {
	r := chattest.Room()
	const senders, each = 6, 40
	var members []*client.Client
	for i := 0; i < senders; i++ {
		inst := env.a
		if i%2 == 1 {
			inst = env.b
		}
		cl := dial(t, inst, fmt.Sprintf("user%d", i))
		chattest.Join(t, cl, r)
		members = append(members, cl)
	}
	var mu sync.Mutex
	var acked []int64
	var wg sync.WaitGroup
	for _, cl := range members {
		wg.Add(1)
		go func(cl *client.Client) {
			defer wg.Done()
			for j := 0; j < each; j++ {
				seq, err := cl.Send(context.Background(), r, fmt.Sprintf("m%d", j))
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, seq)
				mu.Unlock()
			}
		}(cl)
	}
	wg.Wait()
	slices.Sort(acked)
	if want := chattest.UpTo(1, senders*each); !slices.Equal(acked, want) {
		t.Fatalf("acked seqs are not 1..%d without gaps or repeats: %v", senders*each, acked)
	}
	for i, cl := range members {
		if got := chattest.Seqs(chattest.Receive(t, cl, senders*each, 20*time.Second)); !slices.Equal(got, acked) {
			t.Fatalf("member %d saw seqs out of order or with gaps: %v", i, got)
		}
	}
}

func TestResendWithTheSameIDIsAckedWithTheSameSeqAndStoredOnce(t *testing.T) {
	r := chattest.Room()
	alice := dial(t, env.a, "alice")
	chattest.Join(t, alice, r)
	ctx := context.Background()
	first, err := alice.SendID(ctx, r, "c-7", "hi")
	if err != nil {
		t.Fatal(err)
	}
	again, err := alice.SendID(ctx, r, "c-7", "hi")
	if err != nil {
		t.Fatal(err)
	}
	// The same id from another user is another message.
	bob := dial(t, env.b, "bob")
	chattest.Join(t, bob, r)
	other, err := bob.SendID(ctx, r, "c-7", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if first != 1 || again != 1 || other != 2 {
		t.Fatalf("seqs first=%d again=%d other user=%d, want 1 1 2", first, again, other)
	}
	if got := chattest.Seqs(chattest.Receive(t, alice, 2, 5*time.Second)); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("alice saw %v, want [1 2]: the resend must not be delivered twice", got)
	}
	waitStored(t, r, 2)
}

func TestResumeAfterDisconnectDeliversEveryMissedMessageOnce(t *testing.T) {
	r := chattest.Room()
	sender := dial(t, env.a, "sender")
	chattest.Join(t, sender, r)
	for i := 0; i < 5; i++ {
		chattest.Send(t, sender, r, "before")
	}
	// A reader that saw up to seq 3 comes back on the other instance.
	reader := dial(t, env.b, "reader")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if latest, err := reader.Resume(ctx, r, 3); err != nil || latest != 5 {
		t.Fatalf("resume: latest %d err %v, want 5", latest, err)
	}
	for i := 0; i < 3; i++ {
		chattest.Send(t, sender, r, "after")
	}
	if got := chattest.Seqs(chattest.Receive(t, reader, 5, 5*time.Second)); !slices.Equal(got, chattest.UpTo(4, 8)) {
		t.Fatalf("resumed reader saw %v, want 4..8", got)
	}
	if reader.Stats().Errors["history_gap"] != 0 {
		t.Fatal("history_gap reported for a gap Redis could fill")
	}
}

func TestResumeFallsBackToPostgresThenReportsAHistoryGap(t *testing.T) {
	short := ownChat(t, "chat-short", "HISTORY_SIZE=10")
	r := chattest.Room()
	sender := dial(t, short, "sender")
	chattest.Join(t, sender, r)
	for i := 0; i < 30; i++ {
		chattest.Send(t, sender, r, "m")
	}
	waitStored(t, r, 30)

	// Redis keeps 21..30; Postgres supplies 1..20.
	reader := dial(t, env.a, "reader")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := reader.Resume(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	if got := chattest.Seqs(chattest.Receive(t, reader, 30, 5*time.Second)); !slices.Equal(got, chattest.UpTo(1, 30)) {
		t.Fatalf("resume from 0 saw %v, want 1..30", got)
	}

	// With rows 5..12 gone from Postgres the server cannot fill 1..20: it
	// sends what precedes the hole, announces the hole, then sends what
	// follows it, once the hole has stayed empty for the loss grace (8 s:
	// a persist writer might still have been holding them).
	deleteStored(t, r, 5, 12)
	late := dial(t, env.b, "late")
	if _, err := late.Resume(ctx, r, 2); err != nil {
		t.Fatal(err)
	}
	if got := chattest.Seqs(chattest.Receive(t, late, 20, 20*time.Second)); !slices.Equal(got, append([]int64{3, 4}, chattest.UpTo(13, 30)...)) {
		t.Fatalf("resume across a hole saw %v, want 3, 4, 13..30", got)
	}
	if n := late.Stats().Errors["history_gap"]; n != 1 {
		t.Fatalf("history_gap errors = %d, want 1 (stats %+v)", n, late.Stats())
	}
}

func TestAnAckedMessageReachesPostgresEvenIfItsInstanceIsKilledRightAfter(t *testing.T) {
	doomed := ownChat(t, "chat-doomed")
	r := chattest.Room()
	cl := dial(t, doomed, "alice")
	chattest.Join(t, cl, r)
	var seqs []int64
	for i := 0; i < 20; i++ {
		seqs = append(seqs, chattest.Send(t, cl, r, "last words"))
	}
	if err := doomed.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStored(t, r, len(seqs))
	if got := storedSeqs(t, r); !slices.Equal(got, seqs) {
		t.Fatalf("stored %v, want %v", got, seqs)
	}
}

// waitStored waits until room has n rows in Postgres.
func waitStored(t *testing.T, room string, n int) {
	t.Helper()
	retry.DoWithRetry(t, "rows of "+room+" in postgres", 60, 250*time.Millisecond, func() (string, error) {
		if got := len(storedSeqs(t, room)); got != n {
			return "", fmt.Errorf("%d of %d rows", got, n)
		}
		return "ok", nil
	})
}

// TestASendersAckAndOwnMessageComeInOneWrite: a sender is a member of the
// room, so each send brings it its ack and its own message, which arrive
// from Redis on two connections in either order; they reach the client in
// one socket write (one read here) for nearly every send. Written as they
// came, they took two.
func TestASendersAckAndOwnMessageComeInOneWrite(t *testing.T) {
	const sends = 40
	reads := new(atomic.Int64)
	conn, _, err := chattest.ReadCounting(reads).Dial(env.a.WSURL()+"?token="+token(t, "alice", time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chattest.Next(t, conn) // welcome
	r := chattest.Room()
	if f := reply(t, conn, `{"op":"join","room":"`+r+`"}`); f.Op != protocol.OpJoined {
		t.Fatalf("join: %+v", f)
	}
	reads.Store(0)
	for i := range sends {
		id := fmt.Sprintf("c-%d", i)
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"op":"send","room":"`+r+`","text":"hi","id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for range 2 {
			f := chattest.Next(t, conn)
			got[f.Op] = f.Seq
		}
		if seq := int64(i + 1); got[protocol.OpAck] != seq || got[protocol.OpMessage] != seq {
			t.Fatalf("send %d brought %v, want its ack and its message, seq %d", i, got, seq)
		}
	}
	n := reads.Load()
	t.Logf("%d sends: %d socket reads", sends, n)
	if n > sends*5/4 {
		t.Errorf("%d sends, each an ack and a message, took %d socket reads: most acks and messages were written apart", sends, n)
	}
}
