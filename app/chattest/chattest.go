// Package chattest holds the steps that the server's integration tests and
// the behaviour suite share: join, send, receive, read a metric. Each fails
// the test with context instead of returning an error.
package chattest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

var rooms atomic.Int64

// Room is a room name no other test uses, in this run or an earlier one.
func Room() string {
	return fmt.Sprintf("r%d-%d", time.Now().UnixNano()%1e9, rooms.Add(1))
}

// Join joins room and returns its latest seq.
func Join(t testing.TB, cl *client.Client, room string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := cl.Join(ctx, room)
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	return seq
}

// Send sends text to room and returns the seq of its ack.
func Send(t testing.TB, cl *client.Client, room, text string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := cl.Send(ctx, room, text)
	if err != nil {
		t.Fatalf("send to %s: %v", room, err)
	}
	return seq
}

// Receive reads n messages from cl, failing after timeout.
func Receive(t testing.TB, cl *client.Client, n int, timeout time.Duration) []protocol.Message {
	t.Helper()
	var msgs []protocol.Message
	deadline := time.After(timeout)
	for len(msgs) < n {
		select {
		case m, ok := <-cl.Messages():
			if !ok {
				t.Fatalf("client stopped after %d of %d messages", len(msgs), n)
			}
			msgs = append(msgs, m)
		case <-deadline:
			t.Fatalf("got %d of %d messages within %s: %v", len(msgs), n, timeout, Seqs(msgs))
		}
	}
	return msgs
}

// Seqs lists the messages' seqs.
func Seqs(msgs []protocol.Message) []int64 {
	seqs := make([]int64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	return seqs
}

// UpTo is from..to, the seqs a room must show between them.
func UpTo(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// Get fetches url and returns its status.
func Get(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Metric sums the samples of series on base+"/metrics" whose line starts
// with series: a name (`chat_ready`) or a name and leading labels
// (`chat_messages_received_total{result="accepted"`).
func Metric(t testing.TB, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics of %s: %v", base, err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		match := strings.HasPrefix(line, series+" ") || strings.HasPrefix(line, series+"{")
		if strings.Contains(series, "{") {
			match = strings.HasPrefix(line, series)
		}
		if !match {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// Eventually polls cond every 10 ms until it holds, and fails the test if
// it still does not after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
