package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/internal/addr"
)

// startClusterRedis starts the Redis shared by a local cluster's hot
// tiers, in DIR/redis, when cfg.Redis is empty and redis-server is on the
// PATH; it reuses the port the cluster directory recorded, so restarted
// nodes find it again. With cfg.Redis "off" or redis-server missing the
// tier stays off; with an address, that Redis is used and none started.
// It sets cfg.Redis to what the nodes should use.
func startClusterRedis(ctx context.Context, out io.Writer, cfg *cluster.Config) (*cluster.Redis,
	error) {
	switch cfg.Redis {
	case "off":
		cfg.Redis = ""
		return nil, nil
	case "":
	default:
		normalized, err := addr.Normalize(cfg.Redis)
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		cfg.Redis = normalized
		return nil, nil
	}

	port := 0
	if state, err := cluster.Load(cfg.Dir); err == nil && state.Redis != "" {
		if _, p, err := net.SplitHostPort(state.Redis); err == nil {
			port, _ = strconv.Atoi(p)
		}
	}
	dir := filepath.Join(cfg.Dir, "redis")
	r, err := cluster.StartRedis(ctx, dir, port)
	if errors.Is(err, cluster.ErrNoRedis) {
		fmt.Fprintln(out, "redis-server is not on the PATH: the hot tier is off")
		return nil, nil
	}
	if err != nil && port != 0 {
		// The recorded port may be taken now; any free one will do.
		r, err = cluster.StartRedis(ctx, dir, 0)
	}
	if err != nil {
		return nil, err
	}
	cfg.Redis = r.Addr()
	fmt.Fprintf(out, "redis-server for the hot tier on %s (logs in %s)\n", r.Addr(), dir)
	return r, nil
}
