// Package hottier is the hot tier in front of a node's state: an
// in-process near cache, kept coherent by Redis server-assisted client-side
// caching, then Redis shared by the cluster's nodes, then the node's own
// Pebble state. It is generic: a key (such as "stocks/AAPL") maps to a
// value and the Raft index of the write that produced it, its version.
//
// # Coherence
//
// The tier never answers with a value older than what this node has
// applied for the key, and for one node the versions it answers for a key
// never go backwards. Three mechanisms make it so.
//
// The node's apply stream (node.ApplyObserver) tells the tier, on the
// apply goroutine, about every applied batch and its events. For each
// key it tracks, the tier keeps a floor: the highest version of the key
// this node has applied or answered. A value is served from any tier only
// if its version is at least the floor, and a read only trusts the floor
// when the tier has processed every batch up to the applied index the
// read started at (the watermark); otherwise it reads the state. An event
// that carries the new value (a stock quote) replaces the near-cache
// entry at once, so a node reads its own writes from the near cache.
//
// Redis holds each hot value prefixed with its version. Every node writes
// through from its own apply stream with a script that only replaces a
// value with a newer one, so three nodes applying one command change Redis
// once and never move a key backwards. A node may answer a Redis value
// newer than its own state (another node applied it first); the floor
// then rises to it, and a later read that falls back to a state still
// behind waits for the state to catch up.
//
// A dedicated RESP3 connection subscribes with CLIENT TRACKING ON BCAST
// PREFIX: each change to a key in Redis drops the key's near-cache entry
// on every node, and a FLUSHALL or a lost connection drops them all. Each
// key has a generation, bumped by every invalidation; a read that fetched
// a value stores it only if the generation (and the tier's flush epoch)
// did not move meanwhile, so a read racing an invalidation cannot leave
// a stale entry behind. Entries also have a maximum age.
//
// # Failure
//
// Redis calls on the read path have a short timeout and go through a
// circuit breaker; while it is open reads skip Redis entirely, and a
// background probe, never a reader, closes it again. Writes to Redis are
// queued and never block the apply goroutine. Redis being slow, gone,
// restarted or flushed therefore costs hit ratio, never a failed read or
// a stale one.
package hottier

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/internal/lock"
)

// Value is a cached value and its version: the Raft index of the write
// that produced it.
type Value struct {
	Data  []byte
	Index uint64
}

// Loader reads a key from this node's own state and returns its value and
// version. Its errors (such as storage.ErrNotFound) are returned by Get
// unchanged and nothing is cached.
type Loader func() (Value, error)

// Change is what an applied event means to the tier: Key changed at
// Index. With HasData, Data is the key's new value (what a read returns);
// without it the key's value must be recomputed from the state.
type Change struct {
	Key     string
	Index   uint64
	Data    []byte
	HasData bool
}

// ChangeFunc maps an applied event of one domain to the tier key it
// changes; ok is false for events that change no cached key.
type ChangeFunc func(e fsm.Event) (c Change, ok bool)

// State is the node's applied state as the tier sees it.
type State interface {
	// AppliedIndex returns the index of the last applied entry.
	AppliedIndex() uint64

	// WaitApplied blocks until the applied index reaches index or ctx
	// ends.
	WaitApplied(ctx context.Context, index uint64) error
}

const shardCount = 64

// Tier is one node's hot tier. Its methods are safe for concurrent use,
// and a nil *Tier is a tier that is off: Get reads the state.
type Tier struct {
	cfg    Config
	state  State
	logger *slog.Logger
	m      *metrics
	redis  *redisStore
	seed   maphash.Seed

	shards  [shardCount]shard
	entries atomic.Int64

	changeMu sync.RWMutex
	changes  map[fsm.DomainID]ChangeFunc

	// watermark is the last index of the last batch Applied processed.
	watermark atomic.Uint64
	// epoch moves with every whole flush.
	epoch atomic.Uint64
	// tracking is true while invalidations are being received.
	tracking atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup

	// fetched, if set, runs between a Redis read and storing its value;
	// invalidated, if set, after each invalidation message. Tests use
	// them to race an invalidation against a read.
	fetched     func(key string)
	invalidated func(keys []string)
}

type shard struct {
	mu    lock.Mutex
	slots map[string]*slot
}

// slot is what the tier knows about one key; its fields are guarded by
// the shard's mutex.
type slot struct {
	// floor is the least version this node may answer: the highest it
	// has applied or answered. known says the floor covers every write
	// this node applied to the key (it is unknown until a first read of
	// the state or an applied event, and again after a restore).
	floor uint64
	known bool

	// value is the last value seen; cached says the near cache may
	// answer it, since storedAt.
	value    Value
	cached   bool
	storedAt time.Time

	// gen moves with every invalidation of the key.
	gen uint64

	reads    int
	hot      bool
	lastRead time.Time
}

// New starts a tier for the node whose applied state is state. The tier
// does not see applied batches until it is made the node's apply observer
// (node.SetApplyObserver); it serves nothing from its caches before.
func New(cfg Config, state State) (*Tier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Tier{
		cfg:     cfg,
		state:   state,
		logger:  cfg.Logger.With("component", "hottier"),
		seed:    maphash.MakeSeed(),
		changes: map[fsm.DomainID]ChangeFunc{},
		stop:    make(chan struct{}),
	}
	for i := range t.shards {
		t.shards[i].slots = map[string]*slot{}
	}
	t.m = newMetrics(cfg.Registerer, func() float64 { return float64(t.entries.Load()) })
	t.redis = newRedisStore(cfg, t.m, t.logger)
	t.watermark.Store(state.AppliedIndex())

	tr := &tracker{
		addr: cfg.RedisAddr, prefix: cfg.KeyPrefix, ping: cfg.PingInterval, logger: t.logger,
		up:       t.trackingUp,
		down:     t.trackingDown,
		keys:     t.invalidate,
		flushAll: func() { t.flush("flushall") },
	}
	t.wg.Go(func() { tr.run(t.stop) })
	t.wg.Go(func() { t.redis.runWriter(t.stop) })
	t.wg.Go(t.maintain)
	t.logger.Info("hot tier on", "redis", cfg.RedisAddr, "prefix", cfg.KeyPrefix,
		"hot_reads", cfg.HotReads, "hot_window", cfg.HotWindow, "max_age", cfg.MaxAge)
	return t, nil
}

// Close stops the tier's goroutines and closes its Redis connections.
func (t *Tier) Close() error {
	if t == nil {
		return nil
	}
	close(t.stop)
	t.wg.Wait()
	return t.redis.close()
}

// Register makes fn the mapping from domain's events to tier keys. Events
// of domains without one change nothing in the tier.
func (t *Tier) Register(domain fsm.DomainID, fn ChangeFunc) {
	if t == nil {
		return
	}
	t.changeMu.Lock()
	defer t.changeMu.Unlock()
	t.changes[domain] = fn
}

// Enabled reports whether the tier is on.
func (t *Tier) Enabled() bool { return t != nil }

func (t *Tier) shardOf(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)%shardCount]
}

// Get returns key's value from the first tier that has it fresh enough
// (near cache, Redis, then the state through load), and the tier that
// answered (TierNear, TierRedis or TierState). The value's version is at
// least what this node had applied for key when Get was called, and at
// least any version Get returned for key before. A caller wanting a
// stronger read (strong, min_index) waits for the node's barrier first.
//
// Redis failing never fails Get; only load's errors are returned.
func (t *Tier) Get(ctx context.Context, key string, load Loader) (Value, string, error) {
	if t == nil {
		v, err := load()
		return v, TierState, err
	}
	now := time.Now()
	applied := t.state.AppliedIndex()
	// Read after applied: every event up to applied is in the floors.
	current := t.watermark.Load() >= applied
	epoch := t.epoch.Load()

	sh := t.shardOf(key)
	sh.mu.Lock()
	s := sh.slots[key]
	if s == nil && t.entries.Load() < int64(t.cfg.MaxEntries) {
		s = &slot{}
		sh.slots[key] = s
		t.entries.Add(1)
	}
	if s == nil {
		sh.mu.Unlock()
		v, err := load()
		return v, TierState, err
	}
	s.reads++
	s.lastRead = now
	if s.reads >= t.cfg.HotReads {
		s.hot = true
	}
	trusted := current && s.known
	if trusted && s.cached && s.value.Index >= s.floor && now.Sub(s.storedAt) < t.cfg.MaxAge {
		v := s.value
		sh.mu.Unlock()
		t.m.hits.WithLabelValues(TierNear).Inc()
		return v, TierNear, nil
	}
	hot, gen, floor := s.hot, s.gen, s.floor
	sh.mu.Unlock()
	if hot {
		t.m.misses.WithLabelValues(TierNear).Inc()
	}

	// Redis: only with a floor to check its value against.
	redisStale := false
	if hot && trusted && t.redis.usable() {
		v, ok, err := t.redis.get(ctx, key)
		if t.fetched != nil {
			t.fetched(key)
		}
		switch {
		case err != nil:
			t.logger.Debug("redis read failed", "key", key, "err", err)
		case ok && v.Index >= floor:
			if served, ok := t.accept(sh, key, s, v, gen, epoch, true); ok {
				t.m.hits.WithLabelValues(TierRedis).Inc()
				return served, TierRedis, nil
			}
		default:
			redisStale = true
		}
		t.m.misses.WithLabelValues(TierRedis).Inc()
	}

	// TODO(hottier): a key with no value (not found) is not cached, so it
	// is read from the state every time.
	v, err := t.loadAtLeast(ctx, load, floor)
	if err != nil {
		return Value{}, TierState, err
	}
	t.m.hits.WithLabelValues(TierState).Inc()
	served, _ := t.accept(sh, key, s, v, gen, epoch, false)
	if hot && (redisStale || !trusted) && len(served.Data) <= t.cfg.MaxValueBytes {
		t.redis.enqueue(write{key: key, value: served, mode: modeCreate})
	}
	return served, TierState, nil
}

// loadAtLeast loads from the state; when the state is behind floor (this
// node answered a newer value from Redis before) it waits for the state
// to catch up, so that the node's answers never go backwards.
func (t *Tier) loadAtLeast(ctx context.Context, load Loader, floor uint64) (Value, error) {
	v, err := load()
	if err != nil || v.Index >= floor {
		return v, err
	}
	wait, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := t.state.WaitApplied(wait, floor); err != nil {
		// TODO(hottier): a node cut off from the leader right after it
		// answered a newer value from Redis answers its older state
		// here; keeping that value would need it pinned past flushes.
		t.logger.Debug("state did not reach a version answered before", "floor", floor,
			"have", v.Index, "err", err)
		return v, nil
	}
	return load()
}

// accept records that v is about to be answered for key: the floor rises
// to it, and it becomes the near-cache entry if nothing invalidated the
// key since the read began (gen and epoch) and it is not older than what
// the node knows. fromRedis values are answered only if still at least
// the floor, which an applied event may have raised meanwhile; a value
// from the state is always answered and makes the floor known.
func (t *Tier) accept(sh *shard, key string, s *slot, v Value, gen, epoch uint64,
	fromRedis bool) (Value, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.slots[key] != s {
		// The slot was swept or flushed away meanwhile; answer without
		// caching.
		return v, !fromRedis
	}
	if fromRedis && (v.Index < s.floor || !s.known) {
		return v, false
	}
	s.floor = max(s.floor, v.Index)
	if !fromRedis && t.epoch.Load() == epoch {
		s.known = true
	}
	if v.Index < s.value.Index {
		return v, true
	}
	s.value = v
	if s.hot && s.gen == gen && t.epoch.Load() == epoch && t.tracking.Load() &&
		len(v.Data) <= t.cfg.MaxValueBytes {
		s.cached, s.storedAt = true, time.Now()
	}
	return v, true
}

// Applied implements node.ApplyObserver: it raises the floors of the keys
// the batch changed, replaces near-cache values the events carry, queues
// their write-through to Redis, and advances the watermark. A gap before
// first means a snapshot replaced the state: everything is forgotten.
func (t *Tier) Applied(events []fsm.Event, first, last uint64) {
	if first > t.watermark.Load()+1 {
		t.forget()
	}
	if len(events) > 0 {
		t.changeMu.RLock()
		for _, e := range events {
			fn := t.changes[e.Domain]
			if fn == nil {
				continue
			}
			if c, ok := fn(e); ok {
				t.applyChange(c)
			}
		}
		t.changeMu.RUnlock()
	}
	t.watermark.Store(last)
}

func (t *Tier) applyChange(c Change) {
	sh := t.shardOf(c.Key)
	sh.mu.Lock()
	s := sh.slots[c.Key]
	if s == nil {
		sh.mu.Unlock()
		return
	}
	if len(c.Data) > t.cfg.MaxValueBytes {
		c.Data, c.HasData = nil, false
	}
	s.floor = max(s.floor, c.Index)
	s.known = true
	s.gen++
	writeThrough := s.hot
	switch {
	case c.HasData && c.Index >= s.value.Index:
		s.value = Value{Data: c.Data, Index: c.Index}
		s.cached = s.hot && t.tracking.Load()
		s.storedAt = time.Now()
	case !c.HasData:
		s.cached = false
	}
	sh.mu.Unlock()
	t.m.invalidations.WithLabelValues("apply").Inc()

	// TODO(hottier): this node's own write-through comes back as a BCAST
	// invalidation and drops the entry just stored, costing one Redis read
	// per write per node; sending the writes on the tracking connection
	// with NOLOOP would avoid it.
	switch {
	case !writeThrough:
	case c.HasData:
		t.redis.enqueue(write{key: c.Key, value: Value{Data: c.Data, Index: c.Index},
			mode: modeUpdate})
	default:
		t.redis.enqueue(write{key: c.Key, value: Value{Index: c.Index}, mode: modeDelete})
	}
}

// invalidate drops the near-cache entries of keys that changed in Redis.
func (t *Tier) invalidate(keys []string) {
	for _, key := range keys {
		sh := t.shardOf(key)
		sh.mu.Lock()
		if s := sh.slots[key]; s != nil {
			s.cached = false
			s.gen++
		}
		sh.mu.Unlock()
	}
	t.m.invalidations.WithLabelValues("redis").Add(float64(len(keys)))
	if t.invalidated != nil {
		t.invalidated(keys)
	}
}

// flush drops every near-cache entry; floors stay, being this node's own.
func (t *Tier) flush(reason string) {
	t.epoch.Add(1)
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slots {
			s.cached = false
			s.gen++
		}
		sh.mu.Unlock()
	}
	t.m.flushes.WithLabelValues(reason).Inc()
}

// forget flushes and marks every floor unknown: the state was replaced by
// a snapshot, so writes may have been applied without events.
func (t *Tier) forget() {
	t.flush("restore")
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slots {
			s.known = false
		}
		sh.mu.Unlock()
	}
	t.logger.Info("state restored from a snapshot; near cache flushed")
}

func (t *Tier) trackingUp() {
	// Anything cached before was not covered by this subscription.
	t.flush("reconnect")
	t.tracking.Store(true)
	t.m.trackingUp.Set(1)
	t.logger.Info("subscribed to Redis invalidations", "redis", t.cfg.RedisAddr)
}

func (t *Tier) trackingDown(err error) {
	t.tracking.Store(false)
	t.flush("connection_lost")
	t.m.trackingUp.Set(0)
	t.logger.Info("lost the Redis invalidation connection; near cache flushed",
		"redis", t.cfg.RedisAddr, "err", err)
}

// maintain runs the periodic work: the hotness window, forgetting idle
// keys, expiring old entries, and probing a half-open breaker.
func (t *Tier) maintain() {
	sweep := time.NewTicker(t.cfg.HotWindow)
	defer sweep.Stop()
	probe := time.NewTicker(max(t.cfg.BreakerOpen/4, 10*time.Millisecond))
	defer probe.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-probe.C:
			ctx, cancel := context.WithTimeout(context.Background(), t.cfg.RedisTimeout)
			t.redis.probe(ctx)
			cancel()
		case <-sweep.C:
			t.sweep(time.Now())
		}
	}
}

// sweep closes a hotness window: keys read often enough stay hot, others
// turn cold, keys not read in the window are forgotten unless their floor
// is ahead of the applied state (forgetting it could let answers go
// backwards), and entries past MaxAge stop being served.
func (t *Tier) sweep(now time.Time) {
	watermark := t.watermark.Load()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for key, s := range sh.slots {
			if s.reads == 0 && now.Sub(s.lastRead) >= t.cfg.HotWindow && s.floor <= watermark {
				delete(sh.slots, key)
				t.entries.Add(-1)
				continue
			}
			s.hot = s.reads >= t.cfg.HotReads
			s.reads = 0
			if !s.hot || now.Sub(s.storedAt) >= t.cfg.MaxAge {
				s.cached = false
			}
		}
		sh.mu.Unlock()
	}
}
