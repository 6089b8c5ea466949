package fanout

import "github.com/prometheus/client_golang/prometheus"

// metrics are a Publisher's Prometheus metrics.
type metrics struct {
	registerer   prometheus.Registerer
	published    prometheus.Counter
	skipped      prometheus.Counter
	dropped      prometheus.Counter
	errors       prometheus.Counter
	resubscribed prometheus.Counter
	up           prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		registerer: reg,
		published: counter("shoal_fanout_published_total",
			"Document ops this node published to Redis."),
		skipped: counter("shoal_fanout_skipped_total",
			"Document ops another node had already published to Redis."),
		dropped: counter("shoal_fanout_dropped_total",
			"Document ops dropped unpublished because the fan-out queue was full."),
		errors: counter("shoal_fanout_errors_total",
			"Failed round trips to Redis (each is retried)."),
		resubscribed: counter("shoal_fanout_resubscribed_total",
			"Times the node dropped the fan-out's event subscription (ops lost)."),
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_fanout_redis_up",
			Help: "1 while the last round trip to Redis succeeded, else 0."}),
	}
	m.up.Set(1)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.skipped, m.dropped,
			m.errors, m.resubscribed, m.up} {
			_ = reg.Register(c)
		}
	}
	return m
}

// queueLen exports the length of the queue as a gauge.
func (m *metrics) queueLen(fn func() int) {
	if m.registerer == nil {
		return
	}
	_ = m.registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shoal_fanout_queue_length",
		Help: "Document ops waiting to be published to Redis.",
	}, func() float64 { return float64(fn()) }))
}
