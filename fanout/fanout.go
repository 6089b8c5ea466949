// Package fanout publishes the ops committed to text documents to Redis
// pub/sub, once per revision for the whole cluster.
//
// # Contract for subscribers
//
// Each committed op of document id is published to the channel
// "shoal:doc:{id}" as the JSON object
//
//	{"rev": 13, "op": [5, "hi", -2, 10], "client": "c1", "doc": "notes"}
//
// where op is the op as applied to revision rev-1 (the same op the HTTP
// API and the server-sent events carry). Within a channel, revisions only
// increase, and no revision is published twice. A revision can be missing:
// Redis pub/sub keeps nothing for a subscriber that is away, and a node
// drops what it cannot publish while Redis is down. A subscriber therefore
// remembers the last revision it applied, and when a message's rev is
// more than one above it, fetches the ops in between with
// GET /v1/docs/{id}/ops?from={last} from any node before applying the
// message; a message at or below the last revision is ignored. A new
// subscriber subscribes first, then reads the document
// (GET /v1/docs/{id}), then applies the messages above its revision.
//
// # Once for the cluster
//
// Every node runs a Publisher on its own committed events. For each op it
// runs a Lua script on Redis that publishes the message only if the op's
// revision is above the one stored under "shoal:docrev:{id}", and stores
// it: Redis runs scripts one at a time, so the first node to get there
// publishes and the others skip, whichever nodes are up. The revision keys
// have no expiry.
//
// # When Redis is slow or gone
//
// A Publisher never blocks the state machine: the node drops a
// subscription that falls behind, and the Publisher keeps a bounded queue
// of its own, dropping the oldest ops when it is full (counted in
// shoal_fanout_dropped_total, logged at Debug). A failed round trip is
// retried with backoff until Redis answers again; editing and the event
// streams do not depend on it.
package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shoal-db/shoal/fsm"
)

// Names in Redis.
const (
	// ChannelPrefix followed by a document id names the document's
	// pub/sub channel.
	ChannelPrefix = "shoal:doc:"

	// RevKeyPrefix followed by a document id names the key holding the
	// last revision published for the document.
	RevKeyPrefix = "shoal:docrev:"
)

// publishScript publishes ARGV[3] to channel ARGV[2] if revision ARGV[1]
// is above the one in KEYS[1], which it then becomes. It returns 1 if it
// published, 0 if not.
var publishScript = redis.NewScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local rev = tonumber(ARGV[1])
if rev <= last then
	return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

// Source gives committed events; *node.Node is one.
type Source interface {
	// Subscribe returns a channel of committed events of one domain,
	// which is closed if the subscriber falls more than buffer behind,
	// and a function that ends the subscription.
	Subscribe(domain fsm.DomainID, buffer int) (<-chan fsm.Event, func())
}

// Config holds what a Publisher needs.
type Config struct {
	// RedisAddr is the host:port of the Redis server.
	RedisAddr string

	// QueueLen is the most ops waiting to be published; beyond it the
	// oldest are dropped.
	QueueLen int

	// BatchLen is the most ops published in one round trip.
	BatchLen int

	// Timeout bounds one round trip to Redis.
	Timeout time.Duration

	// MaxBackoff is the longest wait between retries while Redis fails.
	MaxBackoff time.Duration

	// Logger receives outages at Warn, recoveries at Info and drops at
	// Debug.
	Logger *slog.Logger

	// Registerer, if set, receives the Publisher's metrics.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config without a Redis address.
func DefaultConfig() Config {
	return Config{
		QueueLen:   65536,
		BatchLen:   256,
		Timeout:    2 * time.Second,
		MaxBackoff: 2 * time.Second,
		Logger:     slog.Default(),
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	switch {
	case c.RedisAddr == "":
		return errors.New("fanout: Config.RedisAddr is required")
	case c.QueueLen < 1 || c.BatchLen < 1:
		return errors.New("fanout: Config.QueueLen and BatchLen must be positive")
	case c.Timeout <= 0 || c.MaxBackoff <= 0:
		return errors.New("fanout: Config.Timeout and MaxBackoff must be positive")
	}
	return nil
}

// subscriptionBuffer is the events the node holds for a Publisher before
// dropping its subscription; the Publisher drains it into its queue at
// once, so this only absorbs scheduling hiccups.
const subscriptionBuffer = 8192

// Publisher publishes one node's committed document ops to Redis. Its
// methods are safe for concurrent use.
type Publisher struct {
	cfg     Config
	logger  *slog.Logger
	client  *redis.Client
	source  Source
	metrics *metrics
	queue   *queue

	// ctx is canceled by Close, ending a round trip in flight.
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts a Publisher of src's text events to the Redis at
// cfg.RedisAddr. It does not wait for Redis: if Redis is down, ops queue
// and are retried in the background. Close stops it.
func New(cfg Config, src Source) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Publisher{
		cfg:    cfg,
		logger: cfg.Logger.With("component", "fanout"),
		client: redis.NewClient(&redis.Options{
			Addr:         cfg.RedisAddr,
			DialTimeout:  cfg.Timeout,
			ReadTimeout:  cfg.Timeout,
			WriteTimeout: cfg.Timeout,
			MaxRetries:   -1, // the Publisher retries itself
			PoolSize:     2,
		}),
		source:  src,
		metrics: newMetrics(cfg.Registerer),
		queue:   newQueue(cfg.QueueLen),
		stop:    make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.metrics.queueLen(p.queue.len)

	p.wg.Add(2)
	go p.pump()
	go p.publishLoop()
	p.logger.Info("publishing document ops to redis", "redis", cfg.RedisAddr)
	return p, nil
}

// Close stops publishing and closes the Redis client; queued ops are
// dropped. Later calls do nothing.
func (p *Publisher) Close() error {
	var err error
	p.once.Do(func() {
		close(p.stop)
		p.cancel()
		p.wg.Wait()
		err = p.client.Close()
	})
	return err
}

// message is one op to publish.
type message struct {
	doc     string
	rev     uint64
	payload []byte
}

// pump moves committed events from the node into the queue, never
// blocking the node for long, and subscribes again when the node drops
// the subscription.
func (p *Publisher) pump() {
	defer p.wg.Done()
	for {
		events, cancel := p.source.Subscribe(fsm.DomainText, subscriptionBuffer)
		received := p.drain(events)
		cancel()
		if !received {
			// Closed at once: the node is closing, or has not room for us.
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		select {
		case <-p.stop:
			return
		default:
		}
		p.metrics.resubscribed.Inc()
		p.logger.Debug("event subscription dropped; ops committed meanwhile are not published")
	}
}

// drain queues the events of one subscription until it is closed or the
// Publisher stops, and reports whether any arrived.
func (p *Publisher) drain(events <-chan fsm.Event) bool {
	received := false
	for {
		select {
		case <-p.stop:
			return true
		case ev, ok := <-events:
			if !ok {
				return received
			}
			received = true
			msg, err := newMessage(ev)
			if err != nil {
				p.logger.Error("cannot publish event", "doc", ev.Key, "rev", ev.Revision,
					"err", err)
				continue
			}
			if dropped := p.queue.push(msg); dropped != nil {
				p.metrics.dropped.Inc()
				p.logger.Debug("fan-out queue full; dropped the oldest op",
					"doc", dropped.doc, "rev", dropped.rev)
			}
		}
	}
}

// newMessage builds the pub/sub message of an op event, whose data is
// {"rev", "op", "client"}.
func newMessage(ev fsm.Event) (message, error) {
	var data struct {
		Rev    uint64          `json:"rev"`
		Op     json.RawMessage `json:"op"`
		Client string          `json:"client"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		return message{}, fmt.Errorf("fanout: event data: %w", err)
	}
	payload, err := json.Marshal(struct {
		Rev    uint64          `json:"rev"`
		Op     json.RawMessage `json:"op"`
		Client string          `json:"client"`
		Doc    string          `json:"doc"`
	}{ev.Revision, data.Op, data.Client, ev.Key})
	if err != nil {
		return message{}, err
	}
	return message{doc: ev.Key, rev: ev.Revision, payload: payload}, nil
}

// publishLoop publishes queued ops in batches, retrying a failed batch
// with backoff until Redis takes it.
func (p *Publisher) publishLoop() {
	defer p.wg.Done()
	var batch []message
	backoff := 50 * time.Millisecond
	up := true
	for {
		if len(batch) == 0 {
			batch = p.queue.take(batch[:0], p.cfg.BatchLen)
		}
		if len(batch) == 0 {
			select {
			case <-p.stop:
				return
			case <-p.queue.ready:
				continue
			}
		}

		err := p.publish(batch)
		if err == nil {
			if !up {
				p.logger.Info("redis is reachable again; publishing document ops", "redis",
					p.cfg.RedisAddr)
				up = true
				p.metrics.up.Set(1)
			}
			batch = batch[:0]
			backoff = 50 * time.Millisecond
			continue
		}

		if p.ctx.Err() != nil {
			return // closing
		}
		p.metrics.errors.Inc()
		if up {
			p.logger.Warn("cannot publish document ops to redis; retrying in the background",
				"redis", p.cfg.RedisAddr, "err", err)
			up = false
			p.metrics.up.Set(0)
		}
		select {
		case <-p.stop:
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, p.cfg.MaxBackoff)
		}
	}
}

// publish runs the publish script for each message in one round trip. A
// retry of messages already published is harmless: the script skips them.
func (p *Publisher) publish(batch []message) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Timeout)
	defer cancel()

	cmds, err := p.run(ctx, batch)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = publishScript.Load(ctx, p.client).Err(); err == nil {
			cmds, err = p.run(ctx, batch)
		}
	}
	if err != nil {
		return err
	}
	for _, cmd := range cmds {
		if n, _ := cmd.Int(); n == 1 {
			p.metrics.published.Inc()
		} else {
			p.metrics.skipped.Inc()
		}
	}
	return nil
}

func (p *Publisher) run(ctx context.Context, batch []message) ([]*redis.Cmd, error) {
	pipe := p.client.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, m := range batch {
		cmds[i] = publishScript.EvalSha(ctx, pipe, []string{RevKeyPrefix + m.doc},
			m.rev, ChannelPrefix+m.doc, m.payload)
	}
	_, err := pipe.Exec(ctx)
	return cmds, err
}
