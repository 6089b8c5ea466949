package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/text"
)

// fakeSource stands in for a node: it hands its events to whoever is
// subscribed, closing a subscription that is full as the node does.
type fakeSource struct {
	mu   sync.Mutex
	subs map[chan fsm.Event]bool
}

func newFakeSource() *fakeSource { return &fakeSource{subs: map[chan fsm.Event]bool{}} }

func (s *fakeSource) Subscribe(_ fsm.DomainID, buffer int) (<-chan fsm.Event, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan fsm.Event, buffer)
	s.subs[ch] = true
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.subs[ch] {
			delete(s.subs, ch)
			close(ch)
		}
	}
}

func (s *fakeSource) publish(events ...fsm.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		for _, e := range events {
			select {
			case ch <- e:
			default:
				delete(s.subs, ch)
				close(ch)
			}
			if !s.subs[ch] {
				break
			}
		}
	}
}

// opEvent returns the event of revision rev of doc, inserting "x" at the
// end.
func opEvent(doc string, rev uint64) fsm.Event {
	op, _ := text.FromSplice(int(rev-1), 0, "x", int(rev-1))
	return fsm.Event{Domain: fsm.DomainText, Key: doc, Revision: rev,
		Data: text.EventData(rev, op, "c1")}
}

func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.RedisAddr = addr
	cfg.Timeout = 500 * time.Millisecond
	cfg.MaxBackoff = 100 * time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

// published is one message received on a document channel.
type published struct {
	Rev    uint64          `json:"rev"`
	Op     json.RawMessage `json:"op"`
	Client string          `json:"client"`
	Doc    string          `json:"doc"`
}

// subscribe listens on the channels of docs and sends what arrives to
// the returned channel.
func subscribe(t *testing.T, addr string, docs ...string) <-chan published {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	channels := make([]string, len(docs))
	for i, d := range docs {
		channels[i] = ChannelPrefix + d
	}
	sub := client.Subscribe(context.Background(), channels...)
	_, err := sub.Receive(context.Background()) // the subscription is live
	require.NoError(t, err)
	t.Cleanup(func() { sub.Close() })

	out := make(chan published, 100000)
	go func() {
		for msg := range sub.Channel() {
			var p published
			if err := json.Unmarshal([]byte(msg.Payload), &p); err != nil {
				panic(err)
			}
			if msg.Channel != ChannelPrefix+p.Doc {
				panic("message on the wrong channel: " + msg.Channel)
			}
			out <- p
		}
	}()
	return out
}

// TestPublishOncePerRevision runs three publishers, as three nodes do, on
// the same committed ops: every revision reaches subscribers exactly once
// and in order.
func TestPublishOncePerRevision(t *testing.T) {
	r := cluster.StartRedisTest(t)
	messages := subscribe(t, r.Addr(), "a", "b")

	var sources []*fakeSource
	var pubs []*Publisher
	for range 3 {
		src := newFakeSource()
		p, err := New(testConfig(r.Addr()), src)
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		sources, pubs = append(sources, src), append(pubs, p)
	}
	waitSubscribed(t, sources...)

	const revs = 2000
	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() {
			for rev := uint64(1); rev <= revs; rev++ {
				src.publish(opEvent("a", rev), opEvent("b", rev))
				if rev%(uint64(i)*50+50) == 0 {
					time.Sleep(time.Millisecond) // nodes apply at their own pace
				}
			}
		})
	}
	wg.Wait()

	last := map[string]uint64{}
	deadline := time.After(30 * time.Second)
	for last["a"] < revs || last["b"] < revs {
		select {
		case m := <-messages:
			require.Equal(t, last[m.Doc]+1, m.Rev, "doc %s: revision out of order or repeated",
				m.Doc)
			require.Equal(t, "c1", m.Client)
			op, err := text.ParseOp(m.Op)
			require.NoError(t, err)
			require.Equal(t, int(m.Rev), op.TargetLen())
			last[m.Doc] = m.Rev
		case <-deadline:
			t.Fatalf("got revisions %v of %d", last, revs)
		}
	}

	// Nothing more comes: no duplicates arrive late.
	select {
	case m := <-messages:
		t.Fatalf("a revision was published twice: %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
	total := 0.0
	for _, p := range pubs {
		total += testutil.ToFloat64(p.metrics.published)
		require.Zero(t, testutil.ToFloat64(p.metrics.dropped))
	}
	require.Equal(t, float64(2*revs), total)
}

// waitSubscribed waits until every source has a subscriber.
func waitSubscribed(t *testing.T, sources ...*fakeSource) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, s := range sources {
			s.mu.Lock()
			n := len(s.subs)
			s.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// TestRedisDownNeverBlocks kills Redis: the publisher keeps taking events
// without blocking its source, drops the oldest when its queue is full,
// and publishes again once Redis is back.
func TestRedisDownNeverBlocks(t *testing.T) {
	r := cluster.StartRedisTest(t)
	src := newFakeSource()
	cfg := testConfig(r.Addr())
	cfg.QueueLen = 100
	p, err := New(cfg, src)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	waitSubscribed(t, src)

	src.publish(opEvent("d", 1))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(p.metrics.published) == 1
	}, 10*time.Second, 5*time.Millisecond)

	r.Kill()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rev := uint64(2); rev <= 5000; rev++ {
			src.publish(opEvent("d", rev))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishing events blocked while Redis is down")
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(p.metrics.dropped) > 0 &&
			testutil.ToFloat64(p.metrics.up) == 0
	}, 10*time.Second, 5*time.Millisecond)
	require.LessOrEqual(t, p.queue.len(), cfg.QueueLen)

	// Back up, Redis holds no revision for the document (no persistence),
	// and what is queued goes out: the newest ops, in order.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.Start(ctx))
	messages := subscribe(t, r.Addr(), "d")
	src.publish(opEvent("d", 5001))
	var last uint64
	deadline := time.After(30 * time.Second)
	for last < 5001 {
		select {
		case m := <-messages:
			require.Greater(t, m.Rev, last)
			last = m.Rev
		case <-deadline:
			t.Fatalf("revision 5001 never came; last %d", last)
		}
	}
	require.Equal(t, 1.0, testutil.ToFloat64(p.metrics.up))
}

func TestConfigValidate(t *testing.T) {
	for i, mutate := range []func(*Config){
		func(c *Config) { c.RedisAddr = "" },
		func(c *Config) { c.QueueLen = 0 },
		func(c *Config) { c.BatchLen = 0 },
		func(c *Config) { c.Timeout = 0 },
		func(c *Config) { c.MaxBackoff = -1 },
	} {
		cfg := testConfig("127.0.0.1:1")
		mutate(&cfg)
		require.Error(t, cfg.Validate(), "#%d", i)
		_, err := New(cfg, newFakeSource())
		require.Error(t, err, fmt.Sprintf("#%d", i))
	}
	require.NoError(t, testConfig("127.0.0.1:1").Validate())
}

func TestQueueDropsOldest(t *testing.T) {
	q := newQueue(3)
	for rev := uint64(1); rev <= 5; rev++ {
		dropped := q.push(message{doc: "d", rev: rev})
		if rev <= 3 {
			require.Nil(t, dropped)
		} else {
			require.Equal(t, rev-3, dropped.rev)
		}
	}
	got := q.take(nil, 2)
	require.Equal(t, []uint64{3, 4}, []uint64{got[0].rev, got[1].rev})
	q.push(message{rev: 6})
	got = q.take(nil, 10)
	require.Len(t, got, 2)
	require.Equal(t, uint64(6), got[1].rev)
	require.Zero(t, q.len())
}
