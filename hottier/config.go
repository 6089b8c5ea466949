package hottier

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config describes a Tier. Start from DefaultConfig and set RedisAddr.
type Config struct {
	// RedisAddr is the host:port of the Redis server (6 or newer) shared
	// by the cluster's nodes.
	RedisAddr string

	// KeyPrefix is put in front of every key in Redis; it is also the
	// prefix whose invalidations the tier subscribes to, so clusters
	// sharing one Redis need different prefixes.
	KeyPrefix string

	// HotReads is how many reads of a key within one HotWindow make it
	// hot. Only hot keys are kept in the near cache and put in Redis; a
	// cold key is read from the state every time.
	HotReads int

	// HotWindow is the period over which reads are counted. A key read
	// fewer than HotReads times in a window turns cold again, and a key
	// not read at all for a window is forgotten.
	HotWindow time.Duration

	// MaxValueBytes is the largest value kept in the near cache or in
	// Redis; larger ones are always read from the state.
	MaxValueBytes int

	// MaxEntries bounds how many keys the tier tracks (hot or not). Reads
	// of further keys go to the state until the sweep frees room.
	MaxEntries int

	// MaxAge is the longest a near-cache entry is served without being
	// refreshed, whatever the invalidations say: a backstop for an
	// invalidation lost without the connection dropping.
	MaxAge time.Duration

	// RedisTTL is the expiry set on a key in Redis at each write, so keys
	// nobody reads any more leave Redis.
	RedisTTL time.Duration

	// RedisTimeout bounds one Redis call on the read path, and with the
	// breaker it bounds the latency a slow Redis can add to a read.
	RedisTimeout time.Duration

	// BreakerFailures is how many Redis failures in a row open the
	// breaker; while it is open the tier does not call Redis at all.
	BreakerFailures int

	// BreakerOpen is how long the breaker stays open before it lets one
	// probe call through.
	BreakerOpen time.Duration

	// PingInterval is how often the invalidation connection is pinged;
	// three intervals without any answer count as a lost connection.
	PingInterval time.Duration

	// WriteQueue is how many write-throughs may wait for Redis; more are
	// dropped (and counted), which costs only hit ratio.
	WriteQueue int

	// Logger receives state changes at Info (connected, lost, breaker);
	// nil means slog.Default().
	Logger *slog.Logger

	// Registerer receives the tier's metrics; nil means none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults: a key is hot after 3 reads in 10 s,
// values up to 64 KiB, 100,000 keys, near-cache entries at most 30 s old,
// Redis keys expiring after 10 minutes, 25 ms per Redis call, and a
// breaker that opens after 3 failures for 1 s.
func DefaultConfig() Config {
	return Config{
		KeyPrefix:       "shoal:hot:",
		HotReads:        3,
		HotWindow:       10 * time.Second,
		MaxValueBytes:   64 << 10,
		MaxEntries:      100_000,
		MaxAge:          30 * time.Second,
		RedisTTL:        10 * time.Minute,
		RedisTimeout:    25 * time.Millisecond,
		BreakerFailures: 3,
		BreakerOpen:     time.Second,
		PingInterval:    time.Second,
		WriteQueue:      4096,
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("hottier: "+format, args...))
		}
	}
	check(c.RedisAddr != "", "a Redis address is required")
	check(c.KeyPrefix != "", "a key prefix is required")
	check(c.HotReads >= 1, "hot reads must be at least 1, not %d", c.HotReads)
	check(c.HotWindow >= 10*time.Millisecond, "hot window %v is too short", c.HotWindow)
	check(c.MaxValueBytes >= 1, "max value bytes must be positive")
	check(c.MaxEntries >= 1, "max entries must be positive")
	check(c.MaxAge > 0, "max age must be positive")
	check(c.RedisTTL >= time.Millisecond, "Redis TTL must be at least 1ms")
	check(c.RedisTimeout > 0, "Redis timeout must be positive")
	check(c.BreakerFailures >= 1, "breaker failures must be at least 1")
	check(c.BreakerOpen > 0, "breaker open time must be positive")
	check(c.PingInterval > 0, "ping interval must be positive")
	check(c.WriteQueue >= 1, "write queue must be at least 1")
	return errors.Join(errs...)
}
