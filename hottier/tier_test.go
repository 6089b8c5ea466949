package hottier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/fsm"
)

// errMissing is the fake state's "not found".
var errMissing = errors.New("missing")

// fakeState is a node's applied state in memory: what the tier would
// otherwise read from Pebble. apply moves it forward and tells the tier,
// the way the node's apply goroutine does.
type fakeState struct {
	mu      sync.Mutex
	applied uint64
	values  map[string]Value
	advance chan struct{}
	loads   int
}

func newFakeState() *fakeState {
	return &fakeState{values: map[string]Value{}, advance: make(chan struct{})}
}

func (f *fakeState) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fakeState) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		applied, advance := f.applied, f.advance
		f.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-advance:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// apply applies a write of data to key at index and, if tier is not nil,
// tells it.
func (f *fakeState) apply(tier *Tier, key string, index uint64, data string) {
	f.mu.Lock()
	first := f.applied + 1
	f.values[key] = Value{Data: []byte(data), Index: index}
	f.applied = index
	close(f.advance)
	f.advance = make(chan struct{})
	f.mu.Unlock()
	if tier != nil {
		tier.Applied([]fsm.Event{{Domain: fsm.DomainStocks, Key: key, Index: index,
			Data: []byte(data)}}, first, index)
	}
}

func (f *fakeState) loader(key string) Loader {
	return func() (Value, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.loads++
		v, ok := f.values[key]
		if !ok {
			return Value{}, errMissing
		}
		return v, nil
	}
}

// testConfig is a tier configuration for tests: hot after one read, and
// windows and ages far longer than any test.
func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.RedisAddr = addr
	cfg.HotReads = 1
	cfg.HotWindow = time.Hour
	cfg.MaxAge = time.Hour
	cfg.RedisTimeout = time.Second
	cfg.PingInterval = 100 * time.Millisecond
	cfg.Registerer = prometheus.NewRegistry()
	return cfg
}

// startTier starts a tier over state, registers the stocks mapping and
// waits until it receives invalidations.
func startTier(t *testing.T, cfg Config, state *fakeState) *Tier {
	t.Helper()
	tier, err := New(cfg, state)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tier.Close() })
	tier.Register(fsm.DomainStocks, func(e fsm.Event) (Change, bool) {
		return Change{Key: e.Key, Index: e.Index, Data: e.Data, HasData: true}, true
	})
	eventually(t, "subscribed to invalidations", tier.tracking.Load)
	return tier
}

// eventually polls cond for up to 20 s; the bound is generous, never a
// timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func get(t *testing.T, tier *Tier, state *fakeState, key string) (Value, string) {
	t.Helper()
	v, source, err := tier.Get(context.Background(), key, state.loader(key))
	require.NoError(t, err)
	return v, source
}

func redisClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// redisVersion returns the version of key in Redis, 0 if absent.
func redisVersion(t *testing.T, c *redis.Client, key string) uint64 {
	raw, err := c.Get(context.Background(), DefaultConfig().KeyPrefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	require.NoError(t, err)
	v, ok := decodeValue(raw)
	require.True(t, ok)
	return v.Index
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	require.Error(t, cfg.Validate(), "no Redis address")
	cfg.RedisAddr = "127.0.0.1:6379"
	require.NoError(t, cfg.Validate())
	cfg.HotReads, cfg.MaxAge = 0, 0
	require.Error(t, cfg.Validate())
}

func TestNilTierReadsState(t *testing.T) {
	var tier *Tier
	state := newFakeState()
	state.apply(nil, "AAPL", 3, "q3")
	v, source, err := tier.Get(context.Background(), "AAPL", state.loader("AAPL"))
	require.NoError(t, err)
	require.Equal(t, TierState, source)
	require.Equal(t, uint64(3), v.Index)
}

func TestNearCacheFollowsOwnApplyStream(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	tier := startTier(t, testConfig(r.Addr()), state)

	v, source := get(t, tier, state, "AAPL")
	require.Equal(t, TierState, source, "first read learns the floor from the state")
	require.Equal(t, uint64(5), v.Index)
	v, source = get(t, tier, state, "AAPL")
	require.Equal(t, TierNear, source)
	require.Equal(t, "q5", string(v.Data))

	// Writing through this node: the event replaces the entry at once, so
	// the very next read returns it, whatever Redis is doing meanwhile.
	state.apply(tier, "AAPL", 9, "q9")
	v, _ = get(t, tier, state, "AAPL")
	require.Equal(t, uint64(9), v.Index)
	require.Equal(t, "q9", string(v.Data))

	// The write-through reaches Redis.
	c := redisClient(t, r.Addr())
	eventually(t, "Redis has version 9", func() bool { return redisVersion(t, c, "AAPL") == 9 })
}

func TestWriteScriptOnlyMovesForward(t *testing.T) {
	r := cluster.StartRedisTest(t)
	cfg := testConfig(r.Addr())
	store := newRedisStore(cfg, newMetrics(nil, func() float64 { return 0 }), testLogger(t))
	defer store.close()
	c := redisClient(t, r.Addr())
	ctx := context.Background()

	for i, tc := range []struct {
		mode    string
		index   uint64
		want    uint64
		comment string
	}{
		{modeUpdate, 4, 0, "update does not create"},
		{modeCreate, 4, 4, "create does"},
		{modeCreate, 3, 4, "an older version never replaces a newer one"},
		{modeUpdate, 4, 4, "the same version is a no-op"},
		{modeUpdate, 7, 7, "a newer version replaces"},
		{modeDelete, 6, 7, "delete leaves a newer value"},
		{modeDelete, 8, 0, "and removes an older one"},
	} {
		w := write{key: "K", value: Value{Data: []byte("v" + strconv.Itoa(int(tc.index))),
			Index: tc.index}, mode: tc.mode}
		require.NoError(t, store.writeBatch(ctx, []write{w}), "#%d", i)
		require.Equal(t, tc.want, redisVersion(t, c, "K"), "#%d %s", i, tc.comment)
	}

	// After a restart Redis has forgotten the script; the batch loads it.
	r.Kill()
	require.NoError(t, r.Start(ctx))
	w := write{key: "K", value: Value{Data: []byte("v9"), Index: 9}, mode: modeCreate}
	require.NoError(t, store.writeBatch(ctx, []write{w}))
	require.Equal(t, uint64(9), redisVersion(t, c, "K"))
}

// Another node applies a write first and writes it through; this node's
// near-cache entry is invalidated through Redis, and its next read returns
// the newer value from Redis although its own state is still behind. From
// then on its answers never go back, even when the near cache and Redis
// are both gone.
func TestInvalidationFromAnotherNode(t *testing.T) {
	r := cluster.StartRedisTest(t)
	stateA, stateB := newFakeState(), newFakeState()
	stateA.apply(nil, "AAPL", 5, "q5")
	stateB.apply(nil, "AAPL", 5, "q5")
	a := startTier(t, testConfig(r.Addr()), stateA)
	b := startTier(t, testConfig(r.Addr()), stateB)
	get(t, a, stateA, "AAPL")
	get(t, b, stateB, "AAPL")
	_, source := get(t, b, stateB, "AAPL")
	require.Equal(t, TierNear, source)

	stateA.apply(a, "AAPL", 9, "q9")
	eventually(t, "b answers 9", func() bool {
		v, _ := get(t, b, stateB, "AAPL")
		return v.Index == 9
	})
	require.Equal(t, uint64(5), stateB.AppliedIndex(), "b answered 9 before applying it")
	_, source = get(t, b, stateB, "AAPL")
	require.Equal(t, TierNear, source, "the value from Redis is cached")

	// Redis flushed and the near cache with it: b's state (at 5) is
	// behind what b answered, so the read waits for b to apply 9.
	require.NoError(t, redisClient(t, r.Addr()).FlushAll(context.Background()).Err())
	eventually(t, "b flushed", func() bool {
		return testutil.ToFloat64(b.m.flushes.WithLabelValues("flushall")) >= 1
	})
	go func() {
		time.Sleep(20 * time.Millisecond)
		stateB.apply(b, "AAPL", 9, "q9")
	}()
	v, _ := get(t, b, stateB, "AAPL")
	require.Equal(t, uint64(9), v.Index, "an answer never goes backwards")
}

// A read fetches a value from Redis; before it stores it in the near
// cache, another node writes a newer value and the invalidation arrives.
// The fetched value must not stay in the near cache.
func TestReadRacingInvalidation(t *testing.T) {
	r := cluster.StartRedisTest(t)
	stateA, stateB := newFakeState(), newFakeState()
	stateA.apply(nil, "AAPL", 5, "q5")
	stateB.apply(nil, "AAPL", 5, "q5")
	a := startTier(t, testConfig(r.Addr()), stateA)
	b := startTier(t, testConfig(r.Addr()), stateB)
	seen := watchInvalidations(b)
	get(t, a, stateA, "AAPL")
	get(t, b, stateB, "AAPL")
	stateA.apply(a, "AAPL", 6, "q6")
	eventually(t, "b answers 6", func() bool {
		v, _ := get(t, b, stateB, "AAPL")
		return v.Index == 6
	})
	syncInvalidations(t, b, seen, redisClient(t, r.Addr()))
	b.invalidate([]string{"AAPL"})
	seen.reset()

	var once sync.Once
	b.fetched = func(string) {
		once.Do(func() {
			stateA.apply(a, "AAPL", 7, "q7")
			eventually(t, "the racing invalidation arrives", func() bool {
				return seen.has("AAPL")
			})
		})
	}
	v, source := get(t, b, stateB, "AAPL")
	require.Equal(t, TierRedis, source)
	require.Equal(t, uint64(6), v.Index, "the racing read answers what it fetched")
	b.fetched = nil

	v, source = get(t, b, stateB, "AAPL")
	require.NotEqual(t, TierNear, source, "the fetched value must not have been cached")
	require.Equal(t, uint64(7), v.Index)
}

// invalidationLog records the keys of a tier's invalidation messages.
type invalidationLog struct {
	mu   sync.Mutex
	keys map[string]bool
}

func watchInvalidations(tier *Tier) *invalidationLog {
	l := &invalidationLog{keys: map[string]bool{}}
	tier.invalidated = func(keys []string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, k := range keys {
			l.keys[k] = true
		}
	}
	return l
}

func (l *invalidationLog) has(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[key]
}

func (l *invalidationLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.keys)
}

// syncInvalidations waits until tier has processed every invalidation
// Redis sent it so far: they arrive in order on one connection, so seeing
// a sentinel key's means every earlier one was processed. Then it forgets
// them.
func syncInvalidations(t *testing.T, tier *Tier, seen *invalidationLog, c *redis.Client) {
	t.Helper()
	sentinel := DefaultConfig().KeyPrefix + "sync"
	require.NoError(t, c.Incr(context.Background(), sentinel).Err())
	eventually(t, "the sentinel's invalidation", func() bool { return seen.has("sync") })
	seen.reset()
}

// A value in Redis older than what this node applied is never answered.
func TestStaleRedisValueIsNotServed(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 8, "q8")
	tier := startTier(t, testConfig(r.Addr()), state)
	seen := watchInvalidations(tier)
	get(t, tier, state, "AAPL")
	c := redisClient(t, r.Addr())
	eventually(t, "the read filled Redis", func() bool { return redisVersion(t, c, "AAPL") == 8 })
	syncInvalidations(t, tier, seen, c)

	old := versionString(3) + "q3"
	require.NoError(t, c.Set(context.Background(), DefaultConfig().KeyPrefix+"AAPL", old, 0).Err())
	eventually(t, "the entry is invalidated", func() bool { return seen.has("AAPL") })
	v, source := get(t, tier, state, "AAPL")
	require.Equal(t, TierState, source)
	require.Equal(t, uint64(8), v.Index)
	eventually(t, "the read repaired Redis", func() bool {
		return redisVersion(t, c, "AAPL") == 8
	})
}

// A lost invalidation connection flushes the near cache, and nothing is
// cached until it is back.
func TestLostConnectionFlushes(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	tier := startTier(t, testConfig(r.Addr()), state)
	get(t, tier, state, "AAPL")
	_, source := get(t, tier, state, "AAPL")
	require.Equal(t, TierNear, source)

	r.Kill()
	eventually(t, "the loss is noticed", func() bool { return !tier.tracking.Load() })
	for range 5 {
		v, source := get(t, tier, state, "AAPL")
		require.Equal(t, TierState, source, "no near cache without invalidations")
		require.Equal(t, uint64(5), v.Index)
	}
	// Writes carry on while Redis is gone.
	state.apply(tier, "AAPL", 6, "q6")
	v, _ := get(t, tier, state, "AAPL")
	require.Equal(t, uint64(6), v.Index)

	require.NoError(t, r.Start(context.Background()))
	eventually(t, "resubscribed", tier.tracking.Load)
	eventually(t, "cached again", func() bool {
		v, source := get(t, tier, state, "AAPL")
		require.Equal(t, uint64(6), v.Index)
		return source == TierNear
	})
}

// A slow (frozen) Redis opens the breaker; reads keep being answered from
// the state and stop calling Redis at all.
func TestBreakerOpensOnSlowRedis(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	cfg := testConfig(r.Addr())
	cfg.RedisTimeout = 50 * time.Millisecond
	cfg.BreakerOpen = 5 * time.Second
	tier := startTier(t, cfg, state)
	get(t, tier, state, "AAPL")

	r.Pause()
	defer r.Resume()
	// Invalidate the entry through the apply stream's invalidate-only
	// path so that reads must look past the near cache.
	tier.Register(fsm.DomainText, func(e fsm.Event) (Change, bool) {
		return Change{Key: e.Key, Index: e.Index}, true
	})
	state.mu.Lock()
	state.applied = 6
	state.mu.Unlock()
	tier.Applied([]fsm.Event{{Domain: fsm.DomainText, Key: "AAPL", Index: 6}}, 6, 6)

	for range 20 {
		v, _ := get(t, tier, state, "AAPL")
		require.Equal(t, uint64(5), v.Index)
	}
	require.Equal(t, float64(2), testutil.ToFloat64(tier.m.breakerState), "breaker open")
	calls := redisCalls(t, tier)
	for range 20 {
		_, source := get(t, tier, state, "AAPL")
		require.Equal(t, TierState, source)
	}
	require.Equal(t, calls, redisCalls(t, tier), "no Redis call while the breaker is open")

	// Back: the probe closes the breaker without a reader paying for it.
	r.Resume()
	eventually(t, "breaker closed", func() bool {
		return testutil.ToFloat64(tier.m.breakerState) == 0
	})
}

// A Redis error in the middle of a call (a reply cut short) counts as a
// failure and the read is answered from the state.
func TestRedisErrorMidCall(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	tier := startTier(t, testConfig(r.Addr()), state)
	get(t, tier, state, "AAPL")
	tier.invalidate([]string{"AAPL"})

	tier.redis.client.AddHook(failingHook{})
	v, source := get(t, tier, state, "AAPL")
	require.Equal(t, TierState, source)
	require.Equal(t, uint64(5), v.Index)
	require.Equal(t, float64(1), testutil.ToFloat64(tier.m.redisErrors.WithLabelValues("get")))
}

// failingHook makes every command fail as if the connection broke while
// the reply was being read.
type failingHook struct{}

func (failingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (failingHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(_ context.Context, cmd redis.Cmder) error {
		err := fmt.Errorf("read: %w", errors.New("connection reset by peer"))
		cmd.SetErr(err)
		return err
	}
}

func (failingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A snapshot restore (a gap in the applied batches) makes the tier forget
// what it knew: nothing is served from the near cache until the state was
// read again.
func TestRestoreForgetsFloors(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	tier := startTier(t, testConfig(r.Addr()), state)
	get(t, tier, state, "AAPL")

	// The state jumps to 20 without events (a snapshot), then a batch at
	// 21 arrives.
	state.mu.Lock()
	state.values["AAPL"] = Value{Data: []byte("q15"), Index: 15}
	state.applied = 20
	state.mu.Unlock()
	_, source := get(t, tier, state, "AAPL")
	require.Equal(t, TierState, source, "the watermark is behind the applied index")
	tier.Applied(nil, 21, 21)
	state.mu.Lock()
	state.applied = 21
	state.mu.Unlock()

	v, source := get(t, tier, state, "AAPL")
	require.Equal(t, TierState, source)
	require.Equal(t, uint64(15), v.Index)
}

func TestMaxAge(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	cfg := testConfig(r.Addr())
	cfg.MaxAge = 20 * time.Millisecond
	tier := startTier(t, cfg, state)
	get(t, tier, state, "AAPL")
	time.Sleep(2 * cfg.MaxAge)
	_, source := get(t, tier, state, "AAPL")
	require.NotEqual(t, TierNear, source, "an entry past its age is not served")
}

func TestColdKeysAreNotCached(t *testing.T) {
	r := cluster.StartRedisTest(t)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	cfg := testConfig(r.Addr())
	cfg.HotReads = 3
	cfg.MaxValueBytes = 8
	state.apply(nil, "BIG", 6, "a value longer than eight bytes")
	tier := startTier(t, cfg, state)

	for i := range 3 {
		_, source := get(t, tier, state, "AAPL")
		require.Equal(t, TierState, source, "read #%d", i)
	}
	// Hot now: cached near (the read's own fill of Redis may invalidate
	// the entry once, sending a read to Redis before it is cached again).
	eventually(t, "AAPL answered from the near cache", func() bool {
		_, source := get(t, tier, state, "AAPL")
		return source == TierNear
	})
	for range 5 {
		_, source := get(t, tier, state, "BIG")
		require.Equal(t, TierState, source, "too large to cache")
	}
}

func TestRESPReader(t *testing.T) {
	for i, tc := range []struct {
		in   string
		want any
	}{
		{"+OK\r\n", "OK"},
		{":12\r\n", "12"},
		{"$3\r\nabc\r\n", "abc"},
		{"$-1\r\n", nil},
		{"_\r\n", nil},
		{"-ERR bad\r\n", respError("ERR bad")},
		{"*2\r\n$1\r\na\r\n:1\r\n", []any{"a", "1"}},
		{"%1\r\n+k\r\n+v\r\n", []any{"k", "v"}},
		{">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", respPush{"invalidate", []any{"k"}}},
		{">2\r\n$10\r\ninvalidate\r\n_\r\n", respPush{"invalidate", nil}},
		{"|1\r\n+a\r\n+b\r\n+after\r\n", "after"},
	} {
		got, err := readRESP(bufioReader(tc.in))
		require.NoError(t, err, "#%d", i)
		require.Equal(t, tc.want, got, "#%d", i)
	}
}

// redisCalls returns how many Redis reads tier made.
func redisCalls(t *testing.T, tier *Tier) uint64 {
	reg, ok := tier.cfg.Registerer.(*prometheus.Registry)
	require.True(t, ok)
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "shoal_hottier_redis_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "get" {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func testLogger(t *testing.T) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	return slog.New(slog.NewTextHandler(testWriter{t}, opts))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// BenchmarkGetNearHit is the cost of a read the near cache answers.
func BenchmarkGetNearHit(b *testing.B) {
	r := cluster.StartRedisTest(b)
	state := newFakeState()
	state.apply(nil, "AAPL", 5, "q5")
	cfg := testConfig(r.Addr())
	tier, err := New(cfg, state)
	if err != nil {
		b.Fatal(err)
	}
	defer tier.Close()
	for !tier.tracking.Load() {
		time.Sleep(time.Millisecond)
	}
	ctx, load := context.Background(), state.loader("AAPL")
	// Warm: the first reads fill Redis, whose invalidation comes back.
	for source := ""; source != TierNear; {
		_, source, _ = tier.Get(ctx, "AAPL", load)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _, _ = tier.Get(ctx, "AAPL", load)
		}
	})
}
