// Command chatserver is Switchboard's reference chat server.
//
//	chatserver                      serve (configured from the environment)
//	chatserver token -user alice    print a token signed with JWT_SECRET
//	                                (-rooms lobby,team-a.* scopes it; -issuer, -audience, -ttl)
//	chatserver healthcheck          exit 0 if GET /health on LISTEN_ADDR answers 200
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/hub"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/persist"
	"github.com/switchboard-dev/switchboard/app/quota"
	"github.com/switchboard-dev/switchboard/app/server"
)

// errConfig marks a configuration error: exit code 2.
var errConfig = errors.New("invalid configuration")

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "token":
		err = token(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "healthcheck":
		err = healthcheck()
	case len(os.Args) > 1:
		err = fmt.Errorf("%w: unknown command %q: want no argument (serve), token or healthcheck", errConfig, os.Args[1])
	default:
		err = run(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatserver:", err)
		if errors.Is(err, errConfig) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return fmt.Errorf("%w:\n%w", errConfig, err)
	}
	log := newLogger(cfg.LogLevel).With("instance", cfg.InstanceID)

	st, err := openStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	defer st.Close()
	b, err := broker.Connect(cfg.RedisURL, broker.Options{
		HistorySize: cfg.HistorySize, BacklogCap: int64(cfg.PersistBacklogCap),
		MinReplicas: cfg.RedisMinReplicas, Ledger: st, Partitions: cfg.RedisPartitions,
		Coalesce: cfg.PublishCoalesce,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	defer b.Close()
	// Instances that disagree on REDIS_PARTITIONS would put a room in two
	// partitions: one whose count differs from the cluster's stops, once
	// the cluster answers (it may start before the cluster does).
	if err := b.ClaimPartitions(ctx); errors.Is(err, broker.ErrPartitionsDiffer) {
		return fmt.Errorf("%w: %w", errConfig, err)
	} else if err != nil {
		go func() {
			for ; err != nil && !errors.Is(err, broker.ErrPartitionsDiffer); err = b.ClaimPartitions(ctx) {
				time.Sleep(time.Second)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "chatserver:", fmt.Errorf("%w: %w", errConfig, err))
				os.Exit(2)
			}
		}()
	}

	m := metrics.New()
	m.PersistBacklogCap.Set(float64(cfg.PersistBacklogCap))
	sub := b.Subscribe(ctx)
	defer sub.Close()
	h := hub.New(sub, b, st, m, log, hub.Options{
		PendingLimit: 16 * cfg.SendQueue, RecoveryLimit: int64(cfg.RecoveryLimit),
		CatchupConcurrency: cfg.CatchupConcurrency,
	})
	// Quotas count in the broker's Redis; a failed sync is counted, not
	// logged: it repeats every 100 ms while Redis is down.
	quotas := quota.New(b.Redis(), quota.Options{Instance: cfg.InstanceID, OnError: func(error) {
		m.RedisErrors.WithLabelValues(metrics.OpQuota).Inc()
	}})
	srv, err := server.New(cfg, h, b, st, m, log, server.WithQuotas(quotas))
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	defer srv.Close()

	// Background work stops when work is cancelled, after the drain.
	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	go sub.Run(work, func(e broker.Event) {
		if e.Subscribed != "" {
			h.Subscribed(e.Subscribed)
			return
		}
		h.Dispatch(&e.Delivery)
	})
	persisted := make(chan struct{})
	go func() {
		defer close(persisted)
		(&persist.Writer{Source: b, Sink: st, Consumer: cfg.InstanceID, Metrics: m, Log: log}).Run(work)
	}()
	go quotas.Run(work)
	srv.WatchDependencies(work)
	go b.WatchEviction(work, 5*time.Second, func(policy string, evicts bool) {
		if !evicts {
			m.RedisEvicting.Set(0)
			log.Info("redis never evicts keys", "maxmemory_policy", policy)
			return
		}
		m.RedisEvicting.Set(1)
		log.Error("redis may evict keys: set its maxmemory-policy to noeviction (ElastiCache: in the parameter group); until then every send with an id is checked against Postgres",
			"maxmemory_policy", policy)
	})

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	httpSrv := server.HTTPServer(srv.Handler())
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "redis", config.RedactURL(cfg.RedisURL))
	if cfg.DebugAddr != "" {
		if err := serveDebug(cfg.DebugAddr, log); err != nil {
			return err
		}
	}

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case sig := <-signals:
		log.Info("signal received: draining; a second signal exits at once", "signal", sig.String())
	}
	go func() {
		<-signals
		log.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	start := time.Now()
	srv.Drain(ctx, cfg.DrainDelay, cfg.DrainTimeout)
	shutdown, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdown); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	stopWork()
	<-persisted
	log.Info("drained; exiting", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: l}))
}

func token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "alice", "the token's subject (user name)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid (the servers refuse more than their JWT_MAX_TTL, 24h by default)")
	rooms := fs.String("rooms", "", `the rooms the token may join, comma-separated: names and prefixes ending in "*", e.g. lobby,team-a.*; empty: every room`)
	issuer := fs.String("issuer", os.Getenv("JWT_ISSUER"), "the token's iss (default $JWT_ISSUER)")
	audience := fs.String("audience", os.Getenv("JWT_AUDIENCE"), "the token's aud (default $JWT_AUDIENCE)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	secret := os.Getenv("JWT_SECRET")
	if len(secret) < config.MinSecretBytes {
		return fmt.Errorf("%w: JWT_SECRET must be set to the servers' secret: a random secret of at least %d bytes", errConfig, config.MinSecretBytes)
	}
	var opts []auth.MintOption
	if *rooms != "" {
		var list []string
		for _, r := range strings.Split(*rooms, ",") {
			list = append(list, strings.TrimSpace(r))
		}
		if err := auth.CheckRooms(list); err != nil {
			return fmt.Errorf("%w: -rooms=%q: %w", errConfig, *rooms, err)
		}
		opts = append(opts, auth.Rooms(list...))
	}
	if *issuer != "" {
		opts = append(opts, auth.Issuer(*issuer))
	}
	if *audience != "" {
		opts = append(opts, auth.Audience(*audience))
	}
	t, err := auth.Mint([]byte(secret), *user, *ttl, opts...)
	if err != nil {
		return err
	}
	fmt.Println(t)
	return nil
}

// healthcheck lets a container image without a shell or curl check itself.
func healthcheck() error {
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = config.Defaults().ListenAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: LISTEN_ADDR=%q: want host:port", errConfig, addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/health")
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /health answered %s", resp.Status)
	}
	return nil
}

// serveDebug serves /debug/pprof/ on addr, apart from the public listener.
func serveDebug(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on DEBUG_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace) // where a slow message waited: go tool trace
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln) }()
	log.Info("serving pprof", "addr", ln.Addr().String())
	return nil
}
