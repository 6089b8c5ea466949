package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/api"
	"github.com/shoal-db/shoal/fanout"
	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/comments"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/fsm/text"
	"github.com/shoal-db/shoal/hottier"
	"github.com/shoal-db/shoal/internal/addr"
	"github.com/shoal-db/shoal/node"
)

func init() {
	cfg := node.DefaultConfig()
	hot := hottier.DefaultConfig()
	var httpAddr, raftAddr, join, redisAddr, logLevel string

	cmd := &cobra.Command{
		Use:   "node --id ID --http HOST:PORT --raft HOST:PORT --data DIR [--bootstrap | --join ADDR]",
		Short: "Run one cluster member",
		Long: `Run one member of a shoal cluster in the foreground.

The first member of a new cluster starts with --bootstrap; every other one
with --join and the HTTP address of any member. A restarted member needs
neither: its data directory remembers the cluster.`,
		Example: `  shoal node --id n1 --http 127.0.0.1:8081 --raft 127.0.0.1:9081 --data data/n1 --bootstrap
  shoal node --id n2 --http 127.0.0.1:8082 --raft 127.0.0.1:9082 --data data/n2 --join 127.0.0.1:8081`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if _, err := newLogger(logLevel); err != nil {
				return err
			}
			return firstError(checkAtLeast("hot-reads", hot.HotReads, 0),
				checkAtLeast("hot-max-bytes", hot.MaxValueBytes, 0),
				checkNotNegative("hot-window", hot.HotWindow),
				checkNotNegative("hot-max-age", hot.MaxAge),
				checkNotNegative("hot-ttl", hot.RedisTTL),
				checkNotNegative("hot-redis-timeout", hot.RedisTimeout),
				checkNotNegative("snapshot-interval", cfg.SnapshotInterval),
				checkNotNegative("heartbeat-timeout", cfg.HeartbeatTimeout),
				checkNotNegative("election-timeout", cfg.ElectionTimeout),
				checkNotNegative("leader-lease-timeout", cfg.LeaderLeaseTimeout))
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.HTTPAddr, err = addr.Normalize(httpAddr); err != nil {
				return fmt.Errorf("--http: %w", err)
			}
			if cfg.RaftAddr, err = addr.Normalize(raftAddr); err != nil {
				return fmt.Errorf("--raft: %w", err)
			}
			if join != "" {
				if cfg.Join, err = addr.Normalize(join); err != nil {
					return fmt.Errorf("--join: %w", err)
				}
			}
			if redisAddr != "" {
				if redisAddr, err = addr.Normalize(redisAddr); err != nil {
					return fmt.Errorf("--redis: %w", err)
				}
			}
			logger, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			hot.RedisAddr = redisAddr
			return runNode(cfg, hot)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this node's id, unique in the cluster and fixed for its data directory")
	f.StringVar(&httpAddr, "http", "127.0.0.1:8081", "host:port to serve the HTTP API on")
	f.StringVar(&raftAddr, "raft", "127.0.0.1:9081", "host:port for Raft traffic between nodes")
	f.StringVar(&cfg.DataDir, "data", "", "data directory (created if missing)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", false, "start a new cluster with this node as its first member")
	f.StringVar(&join, "join", "", "HTTP host:port of any member to join through")
	f.StringVar(&redisAddr, "redis", "", "host:port of a Redis server for the hot tier and fan-out")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.IntVar(&hot.HotReads, "hot-reads", hot.HotReads,
		"reads of a key within --hot-window that make it hot (cached near and in Redis)")
	f.DurationVar(&hot.HotWindow, "hot-window", hot.HotWindow,
		"period over which reads are counted for hotness; idle keys are forgotten after it")
	f.IntVar(&hot.MaxValueBytes, "hot-max-bytes", hot.MaxValueBytes,
		"largest value the hot tier caches")
	f.DurationVar(&hot.MaxAge, "hot-max-age", hot.MaxAge,
		"longest a near-cache entry is served without a refresh")
	f.DurationVar(&hot.RedisTTL, "hot-ttl", hot.RedisTTL, "expiry of hot keys in Redis")
	f.DurationVar(&hot.RedisTimeout, "hot-redis-timeout", hot.RedisTimeout,
		"bound on one Redis call on the read path")
	f.StringVar(&hot.KeyPrefix, "hot-prefix", hot.KeyPrefix,
		"prefix of the hot tier's keys in Redis (differs per cluster sharing a Redis)")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", cfg.SnapshotThreshold,
		"log entries between snapshots")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", cfg.SnapshotInterval,
		"how often to check whether a snapshot is due")
	f.Uint64Var(&cfg.TrailingLogs, "trailing-logs", cfg.TrailingLogs,
		"log entries kept after a snapshot for followers that fall behind")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout,
		"time without a leader's heartbeat before a follower starts an election")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout,
		"time a candidate waits for votes")
	f.DurationVar(&cfg.LeaderLeaseTimeout, "leader-lease-timeout", cfg.LeaderLeaseTimeout,
		"time a leader keeps leading without hearing from a quorum")
	_ = cmd.MarkFlagRequired("id")
	_ = cmd.MarkFlagRequired("data")
	rootCmd.AddCommand(cmd)
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// runNode runs a node and its HTTP server until SIGINT or SIGTERM; with
// hot.RedisAddr set, reads go through the hot tier.
func runNode(cfg node.Config, hot hottier.Config) error {
	logger := cfg.Logger.With("node", cfg.ID)
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(
		collectors.ProcessCollectorOpts{}))
	cfg.Registerer = registry
	cfg.Domains = map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks:   stocks.Domain{},
		fsm.DomainText:     text.NewDomain(text.DefaultConfig()),
		fsm.DomainComments: comments.New(),
	}

	// Listen before Raft starts, so a port clash fails fast and peers
	// that learn our address can reach it at once.
	listener, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	if hot.RedisAddr == "" {
		logger.Info("no --redis given: the hot tier and Redis fan-out are off")
	}

	n, err := node.Open(cfg)
	if err != nil {
		listener.Close()
		return err
	}
	apiCfg := api.DefaultConfig()
	apiCfg.Logger, apiCfg.Registry = logger, registry
	if hot.RedisAddr != "" {
		hot.Logger, hot.Registerer = logger, registry
		tier, err := hottier.New(hot, n)
		if err != nil {
			listener.Close()
			n.Close()
			return err
		}
		defer tier.Close()
		tier.Register(fsm.DomainStocks, api.StockChange)
		tier.Register(fsm.DomainComments, api.CommentPageChange)
		n.SetApplyObserver(api.CommentPagesObserver(tier))
		apiCfg.HotTier = tier

		// Committed document ops go to Redis pub/sub, once per revision
		// for the cluster; Redis being down never holds up editing.
		pubCfg := fanout.DefaultConfig()
		pubCfg.RedisAddr, pubCfg.Logger, pubCfg.Registerer = hot.RedisAddr, logger, registry
		publisher, err := fanout.New(pubCfg, n)
		if err != nil {
			listener.Close()
			n.Close()
			return err
		}
		defer publisher.Close()
	}
	apiServer := api.New(n, apiCfg)
	server := &http.Server{
		Handler:           apiServer.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	// Shutdown waits for handlers; event streams end only when told to.
	server.RegisterOnShutdown(apiServer.CloseStreams)
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()
	logger.Info("serving", "http", cfg.HTTPAddr, "raft", cfg.RaftAddr, "data", cfg.DataDir)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	select {
	case sig := <-stop:
		logger.Info("shutting down", "signal", sig.String())
	case err := <-serveErr:
		logger.Error("http server failed", "err", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	if err := n.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("close node: %w", err)
	}
	return nil
}

// splitAddrs parses a comma-separated list of addresses.
func splitAddrs(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if strings.TrimSpace(a) == "" {
			continue
		}
		n, err := addr.Normalize(a)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
