package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-db/shoal/client"
)

func init() {
	registry[WorkloadHotRead] = func(Options) workload { return &hotReads{} }
	registry[WorkloadRedisGet] = func(Options) workload { return &redisGets{} }
}

// noter is implemented by workloads that add notes to the report; Run
// calls notes once after the measured phase.
type noter interface {
	notes(ctx context.Context, e *env) []string
}

// hotReads is the hot tier's workload: every client reads one symbol,
// each read pinned to the next node, while the background task updates
// the symbol WriteRate times a second through any node. Its notes give
// the share of reads each tier answered, from the nodes' own counters.
type hotReads struct {
	before tierCounts
}

func (h *hotReads) prepare(ctx context.Context, e *env) error {
	q, err := e.client.PutStock(ctx, e.opts.HotSymbol, "100.00", time.Time{})
	if err != nil {
		return fmt.Errorf("seed %s: %w", e.opts.HotSymbol, err)
	}
	for _, node := range e.nodes {
		opts := client.ReadOptions{MinIndex: q.Index, Node: node}
		if _, err := e.client.GetStock(ctx, e.opts.HotSymbol, opts); err != nil {
			return fmt.Errorf("wait for seed on %s: %w", node, err)
		}
	}
	h.before = scrapeTiers(ctx, e.nodes)
	return nil
}

func (h *hotReads) background(ctx context.Context, e *env, rec *recorder) {
	if e.opts.WriteRate <= 0 {
		return
	}
	ticker := time.NewTicker(time.Duration(float64(time.Second) / e.opts.WriteRate))
	defer ticker.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		start := time.Now()
		price := fmt.Sprintf("%d.%02d", 100+i%900, i%100)
		_, err := e.client.PutStock(ctx, e.opts.HotSymbol, price, time.Time{})
		if err != nil && ctx.Err() != nil {
			return
		}
		rec.record(OpWrite, time.Since(start), err)
	}
}

func (h *hotReads) op(ctx context.Context, e *env, _ *worker) (string, error) {
	_, err := e.client.GetStock(ctx, e.opts.HotSymbol, client.ReadOptions{
		Consistency: e.opts.Consistency,
		Node:        e.nextNode(),
	})
	return OpRead, err
}

func (h *hotReads) notes(ctx context.Context, e *env) []string {
	after := scrapeTiers(ctx, e.nodes)
	if !after.tierOn {
		return []string{"hot tier: off (the nodes export no shoal_hottier metrics; " +
			"every read went to Pebble)"}
	}
	near := after.hits["near"] - h.before.hits["near"]
	fromRedis := after.hits["redis"] - h.before.hits["redis"]
	pebble := after.hits["pebble"] - h.before.hits["pebble"]
	total := near + fromRedis + pebble
	if total == 0 {
		return []string{"hot tier: on, but it answered no read"}
	}
	pct := func(v float64) float64 { return 100 * v / total }
	return []string{fmt.Sprintf(
		"hot tier: %.0f reads; near cache %.2f%% (hit ratio), redis %.2f%%, pebble %.2f%%",
		total, pct(near), pct(fromRedis), pct(pebble))}
}

// tierCounts sums the hot tier's hit counters over nodes.
type tierCounts struct {
	tierOn bool
	hits   map[string]float64
}

// scrapeTiers reads shoal_hottier_hits_total from every node's /metrics;
// a node that cannot be read counts as zero.
func scrapeTiers(ctx context.Context, nodes []string) tierCounts {
	counts := tierCounts{hits: map[string]float64{}}
	for _, node := range nodes {
		base, err := client.NormalizeAddr(node)
		if err != nil {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			line := scanner.Text()
			if strings.HasPrefix(line, "shoal_hottier_") {
				counts.tierOn = true
			}
			rest, ok := strings.CutPrefix(line, `shoal_hottier_hits_total{tier="`)
			if !ok {
				continue
			}
			tier, value, ok := strings.Cut(rest, `"} `)
			if v, err := strconv.ParseFloat(value, 64); ok && err == nil {
				counts.hits[tier] += v
			}
		}
		resp.Body.Close()
	}
	return counts
}

// redisGets is the reference for hotReads: the same clients and pacing,
// each request a plain GET of one small key from a Redis on this machine.
type redisGets struct {
	noBackground
	rdb *redis.Client
}

// redisBenchKey holds a value the size of a quote.
const redisBenchKey = "shoal:bench:quote"

func (g *redisGets) prepare(ctx context.Context, e *env) error {
	g.rdb = redis.NewClient(&redis.Options{Addr: e.opts.RedisAddr,
		PoolSize: e.opts.Clients, DisableIdentity: true})
	quote := `{"symbol":"AAPL","price":"116.03","time":"2026-12-03T13:05:03.1Z","index":7}`
	return g.rdb.Set(ctx, redisBenchKey, quote, 0).Err()
}

func (g *redisGets) op(ctx context.Context, _ *env, _ *worker) (string, error) {
	return OpRead, g.rdb.Get(ctx, redisBenchKey).Err()
}

func (g *redisGets) notes(context.Context, *env) []string {
	_ = g.rdb.Close()
	return []string{"reference: plain GET of one key from Redis " + g.rdb.Options().Addr}
}
