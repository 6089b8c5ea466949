package hottier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// versionWidth is the width of the zero-padded decimal version that
// starts every value in Redis; fixed width makes the script's string
// comparison a numeric one.
const versionWidth = 20

// errBreakerOpen is what a Redis call returns while the breaker keeps
// Redis out of the read path.
var errBreakerOpen = errors.New("hottier: Redis breaker is open")

// writeScript stores a value only over an older one, so that every node
// writing the same applied command through changes Redis once and never
// moves a key backwards. KEYS[1] is the key; ARGV[1] the zero-padded
// version; ARGV[2] the value; ARGV[3] the TTL in ms; ARGV[4] "c" to create
// the key when absent, "u" to only update it, "d" to delete an older
// value instead of storing one. It returns 1 when it changed the key.
var writeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, 20) >= ARGV[1] then return 0 end
elseif ARGV[4] ~= 'c' then
  return 0
end
if ARGV[4] == 'd' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'PX', ARGV[3])
end
return 1
`)

// Write modes of writeScript.
const (
	modeCreate = "c"
	modeUpdate = "u"
	modeDelete = "d"
)

// write is one queued write-through.
type write struct {
	key   string
	value Value
	mode  string
}

// redisStore is the Redis tier: reads on the read path under a breaker
// and a per-call timeout, writes from a queue on their own goroutine.
type redisStore struct {
	cfg     Config
	client  *redis.Client
	breaker *gobreaker.CircuitBreaker[any]
	queue   chan write
	m       *metrics
	logger  *slog.Logger
}

// quietRedis routes go-redis's own log lines (one per failed dial while
// Redis is down) to Debug; the tier logs state changes itself.
var quietRedis sync.Once

func newRedisStore(cfg Config, m *metrics, logger *slog.Logger) *redisStore {
	quietRedis.Do(func() { redis.SetLogger(debugLogger{logger}) })
	s := &redisStore{
		cfg: cfg,
		client: redis.NewClient(&redis.Options{
			Addr:     cfg.RedisAddr,
			Protocol: 2,
			// The read path has its own timeout and falls back to the
			// state, so the client must neither retry nor wait long.
			MaxRetries:            -1,
			DialTimeout:           max(cfg.RedisTimeout, 100*time.Millisecond),
			ReadTimeout:           max(cfg.RedisTimeout, 100*time.Millisecond),
			WriteTimeout:          max(cfg.RedisTimeout, 100*time.Millisecond),
			ContextTimeoutEnabled: true,
			DisableIdentity:       true,
		}),
		queue:  make(chan write, cfg.WriteQueue),
		m:      m,
		logger: logger,
	}
	s.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.BreakerFailures)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			m.breakerState.Set(float64(to))
			logger.Info("redis breaker changed state", "from", from.String(),
				"to", to.String())
		},
	})
	return s
}

// usable reports whether the read path may call Redis: only while the
// breaker is closed. A half-open breaker is probed by probe, never by a
// reader, so that a slow Redis cannot add latency to a read.
func (s *redisStore) usable() bool { return s.breaker.State() == gobreaker.StateClosed }

// call runs fn under the breaker and the per-call timeout and records its
// latency and failure.
func (s *redisStore) call(ctx context.Context, op string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	_, err := s.breaker.Execute(func() (any, error) { return nil, fn(ctx) })
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		s.m.redisErrors.WithLabelValues("rejected").Inc()
		return errBreakerOpen
	case err != nil:
		s.m.redisErrors.WithLabelValues(op).Inc()
	}
	s.m.redisSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	return err
}

// get reads key from Redis. ok is false when Redis holds no usable value.
func (s *redisStore) get(ctx context.Context, key string) (v Value, ok bool, err error) {
	if !s.usable() {
		return Value{}, false, errBreakerOpen
	}
	var raw []byte
	err = s.call(ctx, "get", func(ctx context.Context) error {
		var err error
		raw, err = s.client.Get(ctx, s.cfg.KeyPrefix+key).Bytes()
		if errors.Is(err, redis.Nil) {
			raw, err = nil, nil
		}
		return err
	})
	if err != nil || raw == nil {
		return Value{}, false, err
	}
	v, ok = decodeValue(raw)
	return v, ok, nil
}

// enqueue queues a write-through without ever blocking; a full queue or
// an open breaker drops it.
func (s *redisStore) enqueue(w write) {
	if !s.usable() {
		s.m.dropped.Inc()
		return
	}
	select {
	case s.queue <- w:
	default:
		s.m.dropped.Inc()
	}
}

// runWriter sends queued writes to Redis in pipelined batches until stop
// is closed.
func (s *redisStore) runWriter(stop <-chan struct{}) {
	batch := make([]write, 0, 128)
	for {
		select {
		case <-stop:
			return
		case w := <-s.queue:
			batch = append(batch[:0], w)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case w := <-s.queue:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		if !s.usable() {
			s.m.dropped.Add(float64(len(batch)))
			continue
		}
		err := s.call(context.Background(), "write", func(ctx context.Context) error {
			return s.writeBatch(ctx, batch)
		})
		if err != nil {
			s.logger.Debug("write-through to Redis failed", "writes", len(batch), "err", err)
		}
	}
}

// writeBatch runs writeScript once per write in one pipeline, loading the
// script first when Redis does not know it (after a restart).
func (s *redisStore) writeBatch(ctx context.Context, batch []write) error {
	run := func(useSHA bool) error {
		pipe := s.client.Pipeline()
		for _, w := range batch {
			keys := []string{s.cfg.KeyPrefix + w.key}
			args := []any{versionString(w.value.Index), w.value.Data,
				s.cfg.RedisTTL.Milliseconds(), w.mode}
			if useSHA {
				writeScript.EvalSha(ctx, pipe, keys, args...)
			} else {
				writeScript.Eval(ctx, pipe, keys, args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run(true)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if loadErr := writeScript.Load(ctx, s.client).Err(); loadErr != nil {
			return loadErr
		}
		err = run(true)
	}
	return err
}

// probe lets one call through a half-open breaker, so that Redis coming
// back closes it without a reader paying for the probe.
func (s *redisStore) probe(ctx context.Context) {
	if s.breaker.State() != gobreaker.StateHalfOpen {
		return
	}
	_ = s.call(ctx, "ping", func(ctx context.Context) error {
		return s.client.Ping(ctx).Err()
	})
}

func (s *redisStore) close() error { return s.client.Close() }

// versionString is the fixed-width form of a version in Redis.
func versionString(index uint64) string {
	return fmt.Sprintf("%0*d", versionWidth, index)
}

// decodeValue splits a Redis value into its version and data.
func decodeValue(raw []byte) (Value, bool) {
	if len(raw) < versionWidth {
		return Value{}, false
	}
	index, err := strconv.ParseUint(string(raw[:versionWidth]), 10, 64)
	if err != nil {
		return Value{}, false
	}
	return Value{Data: raw[versionWidth:], Index: index}, true
}

// debugLogger adapts go-redis's logger to slog at Debug.
type debugLogger struct{ logger *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (l debugLogger) Printf(_ context.Context, format string, v ...any) {
	l.logger.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}
