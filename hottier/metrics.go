package hottier

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Tiers a read can be answered from, the label of the hit and miss
// counters.
const (
	TierNear  = "near"
	TierRedis = "redis"
	TierState = "pebble"
)

// metrics are the tier's Prometheus collectors.
type metrics struct {
	hits          *prometheus.CounterVec
	misses        *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	flushes       *prometheus.CounterVec
	redisSeconds  *prometheus.HistogramVec
	redisErrors   *prometheus.CounterVec
	dropped       prometheus.Counter
	breakerState  prometheus.Gauge
	trackingUp    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, entries func() float64) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hottier_hits_total",
			Help: "Reads answered by each tier (near cache, redis, pebble).",
		}, []string{"tier"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hottier_misses_total",
			Help: "Reads a tier could not answer (absent, too old, or older " +
				"than this node's state), by tier.",
		}, []string{"tier"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hottier_invalidations_total",
			Help: "Near-cache invalidations by source: redis (a tracking message), " +
				"apply (this node applied a write).",
		}, []string{"source"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hottier_flushes_total",
			Help: "Whole near-cache flushes by reason.",
		}, []string{"reason"}),
		redisSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_hottier_redis_seconds",
			Help:    "Latency of Redis calls by operation (get, write).",
			Buckets: prometheus.ExponentialBuckets(0.00002, 2, 16),
		}, []string{"op"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hottier_redis_errors_total",
			Help: "Failed Redis calls by operation; calls the open breaker " +
				"refused count as op=\"rejected\".",
		}, []string{"op"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_hottier_writes_dropped_total",
			Help: "Write-throughs to Redis dropped because the queue was full " +
				"or the breaker open.",
		}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_hottier_breaker_state",
			Help: "Redis circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		trackingUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_hottier_tracking_up",
			Help: "1 while the Redis invalidation connection is subscribed.",
		}),
	}
	if reg == nil {
		return m
	}
	for _, c := range []prometheus.Collector{
		m.hits, m.misses, m.invalidations, m.flushes, m.redisSeconds,
		m.redisErrors, m.dropped, m.breakerState, m.trackingUp,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_hottier_keys",
			Help: "Keys the tier tracks, hot or not.",
		}, entries),
	} {
		_ = reg.Register(c)
	}
	return m
}
