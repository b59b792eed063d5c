// The behaviour suite: the guarantees of DESIGN.md, proven through the load
// balancer of a running target. SWITCHBOARD_TARGET picks the target (local,
// the default, starts the processes of `make up` on free ports), and on the
// local target SWITCHBOARD_REDIS its Redis (one, the default, or a cluster).
package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/logger"
	"github.com/gruntwork-io/terratest/modules/retry"
	test_structure "github.com/gruntwork-io/terratest/modules/test-structure"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/tests/target"
)

// report prints each scenario's figures. terratest's retry and http-helper
// chatter, one line an attempt, is silenced so that the figures stand out.
var report = logger.Terratest

func init() { logger.Default = logger.Discard }

// suite is the target under test and how clients reach it.
type suite struct {
	target.Target
	wsURL string
	// loopback: the balancer sees each client's 127.x.y.z address, so clients can spread over
	// ip_hash by dialing from different 127.x.y.z addresses.
	loopback bool
}

func TestBehaviour(t *testing.T) {
	var s *suite
	var stop func()
	test_structure.RunTestStage(t, "deploy", func() { s, stop = deploy(t) })
	defer test_structure.RunTestStage(t, "teardown", func() { stop() })
	test_structure.RunTestStage(t, "validate", func() {
		for _, sc := range []struct {
			name string
			run  func(*testing.T, *suite)
		}{
			{"SpreadAndStickiness", spreadAndStickiness},
			{"FanOutAcrossInstances", fanOutAcrossInstances},
			{"BadInputThroughTheLoadBalancer", badInput},
			{"HealthReadyAndMetricsOnEachInstance", endpoints},
			{"ChatPageInTwoBrowsers", chatPageInTwoBrowsers},
			{"DockerfileBuildsWhatItShips", dockerfileBuildsWhatItShips},
			{"SlowConsumerIsClosedWithoutSlowingTheRoom", slowConsumer},
			{"PostgresOutage", postgresOutage},
			{"RedisRestart", redisRestart},
			{"KillAnInstanceUnderLoad", killUnderLoad},
			{"RollingRestartUnderLoad", rollingRestart},
			{"NodeDrainUnderLoad", nodeDrain},
			{"AbusePoisonValues", abusePoison},
			{"AbuseSendFlood", abuseSendFlood},
			{"AbuseJoinFlood", abuseJoinFlood},
			{"AbuseResumeStorm", abuseResumeStorm},
			{"AbuseHistoryFlood", abuseHistoryFlood},
			{"AbuseConnectionFlood", abuseConnectionFlood},
			{"AbuseSlowloris", abuseSlowloris},
		} {
			t.Run(sc.name, func(t *testing.T) { sc.run(t, s) })
		}
	})
}

// deploy starts the target named by SWITCHBOARD_TARGET and returns how to stop it.
func deploy(t *testing.T) (*suite, func()) {
	switch name := os.Getenv("SWITCHBOARD_TARGET"); name {
	case "", "local":
		return deployLocal(t)
	case "kubernetes":
		return deployedOnKubernetes(t)
	default:
		t.Fatalf("SWITCHBOARD_TARGET=%q: want local, or kubernetes for a stack deployed by infra/ (its tests set it)", name)
		return nil, nil
	}
}

// deployedOnKubernetes is a stack that infra/'s tests have deployed (kind or
// EKS), described by SWITCHBOARD_ENDPOINT, SWITCHBOARD_KUBE_CONTEXT,
// SWITCHBOARD_NAMESPACE and SWITCHBOARD_JWT_SECRET.
func deployedOnKubernetes(t *testing.T) (*suite, func()) {
	o := target.KubernetesOptions{
		Endpoint: os.Getenv("SWITCHBOARD_ENDPOINT"), KubeContext: os.Getenv("SWITCHBOARD_KUBE_CONTEXT"),
		Namespace: os.Getenv("SWITCHBOARD_NAMESPACE"), JWTSecret: os.Getenv("SWITCHBOARD_JWT_SECRET"),
	}
	if o.Endpoint == "" || o.KubeContext == "" || o.Namespace == "" || o.JWTSecret == "" {
		t.Fatal("SWITCHBOARD_TARGET=kubernetes needs SWITCHBOARD_ENDPOINT, SWITCHBOARD_KUBE_CONTEXT, SWITCHBOARD_NAMESPACE and SWITCHBOARD_JWT_SECRET")
	}
	k := target.NewKubernetes(o)
	report.Logf(t, "kubernetes target: %s, context %s, namespace %s", o.Endpoint, o.KubeContext, o.Namespace)
	// Off the local target every client reaches the balancer from one source
	// address (Docker's port mapping on kind, the internet on AWS).
	return newSuite(k, false), k.Close
}

// deployLocal starts the local target.
func deployLocal(t *testing.T) (*suite, func()) {
	dir, err := os.MkdirTemp("", "switchboard-suite-")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildChatserver(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts, err := localRedis(os.Getenv("SWITCHBOARD_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := target.StartLocal(ctx, dir, bin, 3, opts...)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start the local target: %v", err)
	}
	report.Logf(t, "local target: NGINX %s, instances %s, Redis %s, Prometheus %s, state in %s", l.Endpoint(), addrs(l), l.RedisURL(), l.Prometheus.URL(), dir)
	stop := func() {
		if err := l.Down(); err != nil {
			t.Errorf("stop the local target: %v", err)
		}
		if os.Getenv("SWITCHBOARD_KEEP_STATE") == "" {
			os.RemoveAll(dir)
		}
	}
	return newSuite(l, true), stop
}

// localRedis is the local target's Redis as SWITCHBOARD_REDIS names it.
func localRedis(name string) ([]target.LocalOption, error) {
	switch name {
	case "", "standalone":
		return nil, nil
	case "sentinel":
		return []target.LocalOption{target.WithSentinel()}, nil
	case "cluster":
		return []target.LocalOption{target.WithRedisCluster(3)}, nil
	}
	return nil, fmt.Errorf("SWITCHBOARD_REDIS=%q: want standalone (the default), sentinel or cluster (3 primaries with a replica each)", name)
}

// buildChatserver builds the chat server of this tree into dir.
func buildChatserver(t *testing.T, dir string) string {
	bin := filepath.Join(dir, "chatserver")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "../app/cmd/chatserver").CombinedOutput(); err != nil {
		t.Fatalf("build chatserver: %v\n%s", err, out)
	}
	return bin
}

func addrs(l *target.Local) string {
	var a []string
	for _, c := range l.Chats {
		a = append(a, c.ID+"="+c.Addr())
	}
	return strings.Join(a, " ")
}

// newSuite reaches tg; loopback says that clients may spread over ip_hash by
// dialing from different 127.x.y.z addresses.
func newSuite(tg target.Target, loopback bool) *suite {
	u, _ := url.Parse(tg.Endpoint())
	ws := *u
	ws.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	ws.Path = "/ws"
	return &suite{Target: tg, wsURL: ws.String(), loopback: loopback}
}

// source is the i-th client address: 127.a.b.7 with a different /24 for each
// i, the part of the address NGINX's ip_hash keys on. nil off loopback.
func (s *suite) source(i int) net.IP {
	if !s.loopback {
		return nil
	}
	return net.IPv4(127, byte(1+i/250), byte(1+i%250), 7)
}

func (s *suite) token(t testing.TB, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := s.Token(user, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects user from source address i through the load balancer; the
// client is closed at the test's end.
func (s *suite) dial(t testing.TB, user string, i int) *client.Client {
	t.Helper()
	return s.dialURL(t, s.wsURL, user, i)
}

func (s *suite) dialURL(t testing.TB, wsURL, user string, i int) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{
		URL: wsURL, Token: s.token(t, user, time.Hour), LocalAddr: s.source(i),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatalf("dial %s as %s from %v: %v", wsURL, user, s.source(i), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// members dials n clients from sources first..first+n-1 and joins them to room.
func (s *suite) members(t testing.TB, prefix, room string, first, n int) []*client.Client {
	t.Helper()
	cs := make([]*client.Client, n)
	for i := range cs {
		cs[i] = s.dial(t, fmt.Sprintf("%s-%d", prefix, i), first+i)
		chattest.Join(t, cs[i], room)
	}
	return cs
}

// onEveryInstance holds one client on each instance and returns them in the
// order of Instances. Where the balancer sees the clients' 127.x.y.z
// addresses it dials through it from successive sources until ip_hash has
// placed one on each. Elsewhere every client reaches the balancer from one
// address and lands on one instance, so it dials each instance at its own
// URL (a port-forward to the pod on Kubernetes).
func (s *suite) onEveryInstance(t testing.TB, prefix string, first int) []*client.Client {
	t.Helper()
	ins := s.instances(t)
	found := map[string]*client.Client{}
	if !s.loopback {
		for i, in := range ins {
			u := strings.Replace(in.URL, "http", "ws", 1) + "/ws"
			found[in.ID] = s.dialURL(t, u, fmt.Sprintf("%s-%d", prefix, first+i), first+i)
		}
	}
	for i := first; len(found) < len(ins) && i < first+200; i++ {
		c := s.dial(t, fmt.Sprintf("%s-%d", prefix, i), i)
		if _, ok := found[c.Instance()]; ok {
			c.Close()
			continue
		}
		found[c.Instance()] = c
	}
	var cs []*client.Client
	for _, in := range ins {
		c := found[in.ID]
		if c == nil {
			t.Fatalf("no client landed on %s from 200 sources", in.ID)
		}
		if c.Instance() != in.ID {
			t.Fatalf("a client dialed to %s at %s landed on %s", in.ID, in.URL, c.Instance())
		}
		cs = append(cs, c)
	}
	return cs
}

func (s *suite) instances(t testing.TB) []target.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	is, err := s.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func (s *suite) instanceIDs(t testing.TB) []string {
	var ids []string
	for _, in := range s.instances(t) {
		ids = append(ids, in.ID)
	}
	return ids
}

// receiveThrough reads c's messages until one with seq >= last.
func receiveThrough(t testing.TB, c *client.Client, last int64, timeout time.Duration) []protocol.Message {
	t.Helper()
	var msgs []protocol.Message
	deadline := time.After(timeout)
	for len(msgs) == 0 || msgs[len(msgs)-1].Seq < last {
		select {
		case m := <-c.Messages():
			msgs = append(msgs, m)
		case <-deadline:
			t.Fatalf("no seq %d within %s; got %d messages, last %v", last, timeout, len(msgs), lastSeq(msgs))
		}
	}
	return msgs
}

func lastSeq(msgs []protocol.Message) int64 {
	if len(msgs) == 0 {
		return 0
	}
	return msgs[len(msgs)-1].Seq
}

// load keeps senders sending to a room and records every ack by id.
type load struct {
	mu     sync.Mutex
	acked  map[string]int64
	failed map[string]int  // error → count
	took   []time.Duration // each ack's wait, send to ack
	// retried counts sends refused with internal and sent again.
	retried int
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startLoad makes each sender send to room every interval until Stop; pad
// lengthens each text by that many bytes.
func startLoad(room string, senders []*client.Client, every time.Duration, pad int) *load {
	l := &load{acked: map[string]int64{}, failed: map[string]int{}, stop: make(chan struct{})}
	for i, c := range senders {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				id := fmt.Sprintf("s%d-%d", i, n)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				sent := time.Now()
				text := "load " + id + " " + strings.Repeat("-", pad)
				seq, err := c.SendID(ctx, room, id, text)
				// internal: the message may or may not have been kept, and the
				// server asks for a retry with the same id, which dedupe makes
				// safe (docs/protocol.md, error codes); only a send never acked fails.
				for perr := (*protocol.Error)(nil); errors.As(err, &perr) && perr.Code == protocol.CodeInternal && ctx.Err() == nil; {
					l.mu.Lock()
					l.retried++
					l.mu.Unlock()
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
					seq, err = c.SendID(ctx, room, id, text)
				}
				cancel()
				l.mu.Lock()
				if err == nil {
					l.acked[id] = seq
					l.took = append(l.took, time.Since(sent))
				} else {
					l.failed[err.Error()]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// Stop ends the load and returns the acks (id → seq) and the failed sends by error.
func (l *load) Stop() (map[string]int64, map[string]int) {
	close(l.stop)
	l.wg.Wait()
	return l.acked, l.failed
}

// everyAckedOnce checks that each member saw the room gapless and in order up
// to the newest acked seq, every acked message exactly once under its acked
// seq. It returns the deliveries counted.
func everyAckedOnce(t *testing.T, members []*client.Client, acked map[string]int64) int {
	t.Helper()
	var newest int64
	for _, seq := range acked {
		newest = max(newest, seq)
	}
	deliveries := 0
	for i, c := range members {
		msgs := receiveThrough(t, c, newest, time.Minute)
		if seqs := chattest.Seqs(msgs); !slices.Equal(seqs, chattest.UpTo(1, lastSeq(msgs))) {
			t.Fatalf("member %d: seqs not 1..%d in order without gaps or repeats: %v", i, lastSeq(msgs), seqs)
		}
		seen := 0
		for _, m := range msgs {
			if seq, ok := acked[m.ID]; ok {
				seen++
				if m.Seq != seq {
					t.Fatalf("member %d: message %s came as seq %d but was acked as %d (stored twice)", i, m.ID, m.Seq, seq)
				}
			}
		}
		if seen != len(acked) {
			t.Fatalf("member %d saw %d of %d acked messages", i, seen, len(acked))
		}
		deliveries += len(msgs)
	}
	return deliveries
}

// quantile is the q-quantile of ds (sorted in place).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// percentiles formats p50/p99/max of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ms := func(q float64) time.Duration { return quantile(ds, q).Round(time.Millisecond) }
	return fmt.Sprintf("p50 %s p99 %s max %s (n=%d)", ms(0.5), ms(0.99), ms(1), len(ds))
}

// until retries check every 100ms for up to timeout (terratest's retry).
func until(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	retry.DoWithRetry(t, what, int(timeout/(100*time.Millisecond)), 100*time.Millisecond, func() (string, error) {
		return "", check()
	})
}

func want(got, want float64) error {
	if got != want {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
