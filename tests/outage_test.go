package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	http_helper "github.com/gruntwork-io/terratest/modules/http-helper"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// readiness waits until /ready of every instance answers status.
func (s *suite) readiness(t *testing.T, status int, within time.Duration) {
	t.Helper()
	for _, in := range s.instances(t) {
		http_helper.HttpGetWithRetryWithCustomValidation(t, in.URL+"/ready", nil, int(within/(100*time.Millisecond)), 100*time.Millisecond,
			func(code int, _ string) bool { return code == status })
	}
}

// Redis restart: the instances go unready and come back; a send during the
// outage gets an error, not an ack; nothing acked before is lost.
func redisRestart(t *testing.T, s *suite) {
	room := chattest.Room()
	members := s.onEveryInstance(t, "redis", 600)
	for _, c := range members {
		chattest.Join(t, c, room)
	}
	const before = 10
	for i := range before {
		chattest.Send(t, members[i%len(members)], room, fmt.Sprintf("before %d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	down := time.Now()
	if err := s.StopRedis(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			s.StartRedis(ctx)
		}
	}()
	s.readiness(t, http.StatusServiceUnavailable, 10*time.Second)
	unready := time.Since(down)

	sendCtx, cancelSend := context.WithTimeout(ctx, 10*time.Second)
	_, err := members[0].SendID(sendCtx, room, "during-outage", "not acked")
	cancelSend()
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeInternal {
		t.Errorf("send during the Redis outage: %v, want an error frame %q", err, protocol.CodeInternal)
	}

	if err := s.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	up := time.Now()
	s.readiness(t, http.StatusOK, 30*time.Second)
	ready := time.Since(up)

	// A newcomer resuming from 0 gets every message acked before the outage.
	late := s.dial(t, "redis-late", 650)
	if _, err := late.Resume(ctx, room, 0); err != nil {
		t.Fatal(err)
	}
	if got := chattest.Seqs(chattest.Receive(t, late, before, 10*time.Second)); !slices.Equal(got, chattest.UpTo(1, before)) {
		t.Fatalf("after the Redis restart a resume from 0 got %v, want 1..%d", got, before)
	}
	// The members stayed or came back, and the room goes on.
	seq := chattest.Send(t, members[0], room, "after")
	for i, c := range members {
		if msgs := receiveThrough(t, c, seq, 30*time.Second); lastSeq(msgs) != seq {
			t.Fatalf("member %d: last seq %d, want %d", i, lastSeq(msgs), seq)
		}
	}
	report.Logf(t, "redis restart: every instance unready %s after the stop, ready %s after the start; the send during the outage got %q; %d messages acked before are all there", unready.Round(time.Millisecond), ready.Round(time.Millisecond), perr.Code, before)
}

// Postgres outage: live chat goes on and the instances stay ready; history
// catches up after Postgres returns. The room is in use before the outage: a
// room's first send needs Postgres (its counter is seeded above what
// Postgres stores, so that no seq is ever reused).
func postgresOutage(t *testing.T, s *suite) {
	room := chattest.Room()
	members := s.onEveryInstance(t, "pg", 700)
	for _, c := range members {
		chattest.Join(t, c, room)
	}
	chattest.Send(t, members[0], room, "before the outage")
	for i, c := range members {
		if got := chattest.Seqs(chattest.Receive(t, c, 1, 10*time.Second)); !slices.Equal(got, []int64{1}) {
			t.Fatalf("member %d before the Postgres outage got %v", i, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.StopPostgres(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			s.StartPostgres(ctx)
		}
	}()
	const n = 20
	for i := range n {
		chattest.Send(t, members[i%len(members)], room, fmt.Sprintf("while postgres is down %d", i))
	}
	for i, c := range members {
		if got := chattest.Seqs(chattest.Receive(t, c, n, 10*time.Second)); !slices.Equal(got, chattest.UpTo(2, n+1)) {
			t.Fatalf("member %d during the Postgres outage got %v", i, got)
		}
	}
	for _, in := range s.instances(t) {
		if code := chattest.Get(t, in.URL+"/ready"); code != http.StatusOK {
			t.Errorf("%s /ready during the Postgres outage: %d, want 200", in.ID, code)
		}
	}
	if err := s.StartPostgres(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back := time.Now()
	tok := s.token(t, "pg-reader", time.Hour)
	until(t, "history catches up", time.Minute, func() error {
		got, err := history(s.Endpoint(), room, tok)
		if err != nil {
			return err
		}
		if !slices.Equal(got, chattest.UpTo(1, n+1)) {
			return errorf("history has %v, want 1..%d", got, n+1)
		}
		return nil
	})
	complete := time.Since(back)
	// A new room needs Postgres for its seqs: once it is back, a send to one
	// is accepted, at worst after refusals (internal) that ask for a retry
	// with the same id, which dedupe makes safe (docs/protocol.md).
	fresh := chattest.Room()
	chattest.Join(t, members[0], fresh)
	refused := 0
	until(t, "a send to a new room is accepted", 30*time.Second, func() error {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		_, err := members[0].SendID(sctx, fresh, "after-postgres-outage", "a new room")
		if err != nil {
			refused++
		}
		return err
	})
	report.Logf(t, "postgres outage: %d messages sent and delivered live to %d members while it was down, instances stayed ready; history complete %s after Postgres returned; a new room's first send accepted %s after it (%d refusals retried with the same id)",
		n, len(members), complete.Round(time.Millisecond), time.Since(back).Round(time.Millisecond), refused)
}

// history reads room's stored seqs through the load balancer.
func history(endpoint, room, token string) ([]int64, error) {
	req, err := http.NewRequest(http.MethodGet, endpoint+"/rooms/"+room+"/messages?limit=500", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorf("history of %s: status %d", room, resp.StatusCode)
	}
	var body struct {
		Messages []protocol.ServerFrame `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	var seqs []int64
	for _, m := range body.Messages {
		seqs = append(seqs, m.Seq)
	}
	return seqs, nil
}
