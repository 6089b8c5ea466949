package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
)

// hotQuote is a quote read over HTTP with the headers the hot tier adds.
type hotQuote struct {
	Symbol string `json:"symbol"`
	Price  string `json:"price"`
	Index  uint64 `json:"index"`

	tier    string // X-Shoal-Tier: near, redis or pebble
	applied uint64 // X-Shoal-Index: the node's applied index for the read
}

var hotHTTP = &http.Client{Timeout: 10 * time.Second}

// readQuote reads symbol from the node at addr, with query added (such as
// "min_index=7"); any failure, a non-200 status included, is an error.
func readQuote(ctx context.Context, addr, symbol, query string) (hotQuote, error) {
	url := fmt.Sprintf("http://%s/v1/stocks/%s?%s", addr, symbol, query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return hotQuote{}, err
	}
	resp, err := hotHTTP.Do(req)
	if err != nil {
		return hotQuote{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hotQuote{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var q hotQuote
	if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
		return hotQuote{}, err
	}
	q.tier = resp.Header.Get("X-Shoal-Tier")
	q.applied, err = strconv.ParseUint(resp.Header.Get("X-Shoal-Index"), 10, 64)
	return q, err
}

// writeQuote writes price to symbol through the node at addr.
func writeQuote(ctx context.Context, addr, symbol, price string) (hotQuote, error) {
	url := fmt.Sprintf("http://%s/v1/stocks/%s", addr, symbol)
	body := strings.NewReader(fmt.Sprintf(`{"price": %q}`, price))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, body)
	if err != nil {
		return hotQuote{}, err
	}
	resp, err := hotHTTP.Do(req)
	if err != nil {
		return hotQuote{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hotQuote{}, fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	var q hotQuote
	return q, json.NewDecoder(resp.Body).Decode(&q)
}

// metric returns the value of one sample of the node's /metrics, 0 when
// absent; sample is the name with its labels as exposed, such as
// `shoal_hottier_hits_total{tier="near"}`.
func metric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := hotHTTP.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), " ")
		if ok && name == sample {
			v, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err)
			return v
		}
	}
	return 0
}

// startHotCluster starts a Redis and a three-node cluster whose nodes use
// it, a key being hot from its first read.
func startHotCluster(t *testing.T) (*cluster.Redis, *cluster.Cluster) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real node processes; skipped with -short")
	}
	r := cluster.StartRedisTest(t)
	c := cluster.StartTest(t, 3, "--redis", r.Addr(), "--hot-reads", "1",
		"--hot-redis-timeout", "50ms")
	return r, c
}

// waitFor polls cond for up to 30 s; a generous bound, not a timing
// assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A write through one node reaches the near caches of the other two: they
// answer it from their near caches (their own apply stream put it there),
// and Redis told them to invalidate the old value.
func TestHotTierWriteInvalidatesOtherNodes(t *testing.T) {
	_, c := startHotCluster(t)
	ctx := testContext(t, 2*time.Minute)
	nodes := c.Members()

	first, err := writeQuote(ctx, nodes[0].HTTP, "AAPL", "100")
	require.NoError(t, err)
	for _, n := range nodes {
		waitFor(t, n.ID+" answers from its near cache", func() bool {
			q, err := readQuote(ctx, n.HTTP, "AAPL",
				"min_index="+strconv.FormatUint(first.Index, 10))
			require.NoError(t, err)
			require.Equal(t, first.Index, q.Index)
			return q.tier == "near"
		})
	}
	invalidations := map[string]float64{}
	for _, n := range nodes {
		invalidations[n.ID] = metric(t, n.HTTP,
			`shoal_hottier_invalidations_total{source="redis"}`)
	}

	for i, writer := range nodes {
		price := fmt.Sprintf("%d.5", 101+i)
		w, err := writeQuote(ctx, writer.HTTP, "AAPL", price)
		require.NoError(t, err)
		for _, n := range nodes {
			// Own and others' writes, read through the tier at the
			// write's index, come back at once.
			q, err := readQuote(ctx, n.HTTP, "AAPL", "min_index="+strconv.FormatUint(w.Index, 10))
			require.NoError(t, err)
			require.Equal(t, w.Index, q.Index, "%s after a write through %s", n.ID, writer.ID)
			require.Equal(t, price, q.Price)
		}
		for _, n := range nodes {
			if n.ID == writer.ID {
				continue
			}
			waitFor(t, n.ID+" hears of the write from Redis", func() bool {
				return metric(t, n.HTTP, `shoal_hottier_invalidations_total{source="redis"}`) >
					invalidations[n.ID]
			})
			invalidations[n.ID] = metric(t, n.HTTP,
				`shoal_hottier_invalidations_total{source="redis"}`)
		}
	}
	for _, n := range nodes {
		require.Positive(t, metric(t, n.HTTP, `shoal_hottier_hits_total{tier="near"}`), n.ID)
		require.Equal(t, float64(1), metric(t, n.HTTP, "shoal_hottier_tracking_up"), n.ID)
	}
}

// historyOf is what a test wrote: for each symbol, the index and price of
// every acknowledged write, in index order.
type historyOf map[string][]hotQuote

// latestAt returns the last write to symbol at or before index.
func (h historyOf) latestAt(symbol string, index uint64) (hotQuote, bool) {
	var latest hotQuote
	found := false
	for _, w := range h[symbol] {
		if w.Index <= index {
			latest, found = w, true
		}
	}
	return latest, found
}

// No stale read, defined precisely. A writer updates random symbols
// through random nodes while readers on every node read random symbols;
// the reads are checked afterwards against every write, all of which are
// acknowledged by then. For a local read from node N answering symbol S
// with version v (the quote's index) and X-Shoal-Index h (N's applied
// index when the request started):
//
//   - v is a real write of S, with the price that write set;
//   - v >= the last write of S at or before h: never older than what N
//     had applied for S (h is a lower bound of N's applied index);
//   - v >= every version the same reader got from N for S before: a
//     node's answers never go backwards.
//
// A strong read answers at least the last write acknowledged before it
// started, and a min_index read at least the write whose index it names.
func TestHotTierNoStaleReads(t *testing.T) {
	_, c := startHotCluster(t)
	ctx := testContext(t, 3*time.Minute)
	nodes := c.Members()
	symbols := []string{"AAPL", "MSFT", "TSLA"}

	var (
		mu      sync.Mutex
		writes  = map[uint64]hotQuote{} // by index
		history = historyOf{}
		acked   atomic.Uint64 // highest acknowledged write index
	)
	record := func(w hotQuote) {
		mu.Lock()
		defer mu.Unlock()
		writes[w.Index] = w
		history[w.Symbol] = append(history[w.Symbol], w)
		acked.Store(max(acked.Load(), w.Index))
	}
	for _, s := range symbols {
		w, err := writeQuote(ctx, nodes[0].HTTP, s, "1")
		require.NoError(t, err)
		record(w)
	}
	for _, n := range nodes {
		_, err := readQuote(ctx, n.HTTP, "AAPL", "min_index="+strconv.FormatUint(acked.Load(), 10))
		require.NoError(t, err)
	}

	type read struct {
		node, query string
		reader      int
		quote       hotQuote
		ackedBefore uint64
	}
	var reads []read
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 6 {
		n := nodes[r%len(nodes)]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), uint64(time.Now().UnixNano())))
			var mine []read
			defer func() {
				mu.Lock()
				reads = append(reads, mine...)
				mu.Unlock()
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := symbols[rng.IntN(len(symbols))]
				query := ""
				switch rng.IntN(20) {
				case 0:
					query = "consistency=strong"
				case 1:
					query = "min_index=" + strconv.FormatUint(acked.Load(), 10)
				}
				before := acked.Load()
				q, err := readQuote(ctx, n.HTTP, s, query)
				if err != nil {
					t.Errorf("read %s from %s: %v", s, n.ID, err)
					return
				}
				q.Symbol = s
				mine = append(mine, read{node: n.ID, query: query, reader: r, quote: q,
					ackedBefore: before})
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range 300 {
		s := symbols[rng.IntN(len(symbols))]
		n := nodes[rng.IntN(len(nodes))]
		price := fmt.Sprintf("%d.%02d", 1+rng.IntN(1000), rng.IntN(100))
		w, err := writeQuote(ctx, n.HTTP, s, price)
		require.NoError(t, err, "write %d", i)
		record(w)
	}
	close(stop)
	wg.Wait()

	lastSeen := map[string]uint64{} // reader/node/symbol -> last version
	tiers := map[string]int{}
	for _, rd := range reads {
		q, s := rd.quote, rd.quote.Symbol
		tiers[q.tier]++
		w, ok := writes[q.Index]
		require.True(t, ok && w.Symbol == s, "%s answered %s at %d, not a write of %s",
			rd.node, s, q.Index, s)
		require.Equal(t, w.Price, q.Price, "price of %s at %d on %s", s, q.Index, rd.node)
		floor, _ := history.latestAt(s, q.applied)
		require.GreaterOrEqual(t, q.Index, floor.Index,
			"%s answered %s at %d (from %s) but had applied %d, which includes the write at %d",
			rd.node, s, q.Index, q.tier, q.applied, floor.Index)
		if rd.query != "" {
			// Strong reads wait for the commit index at their start, and
			// min_index reads for the index named: both cover ackedBefore.
			want, _ := history.latestAt(s, rd.ackedBefore)
			require.GreaterOrEqual(t, q.Index, want.Index, "%s read of %s on %s", rd.query, s,
				rd.node)
		}
		key := fmt.Sprintf("%d/%s/%s", rd.reader, rd.node, s)
		require.GreaterOrEqual(t, q.Index, lastSeen[key], "%s went backwards for %s", rd.node, s)
		lastSeen[key] = q.Index
	}
	t.Logf("%d reads checked against %d writes; answered by tier: %v", len(reads), len(writes),
		tiers)
	require.Positive(t, tiers["near"], "the near cache answered some reads")
}

// hotLoad reads symbol from every node in turn from several goroutines
// until stop is closed, checking that no read fails and that no node's
// answers go backwards. It returns the number of reads and failures.
func hotLoad(ctx context.Context, t *testing.T, nodes []cluster.Member, symbol string,
	stop <-chan struct{}) (reads, failures *atomic.Int64, done func()) {
	reads, failures = &atomic.Int64{}, &atomic.Int64{}
	var wg sync.WaitGroup
	for i := range 6 {
		n := nodes[i%len(nodes)]
		wg.Go(func() {
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				q, err := readQuote(ctx, n.HTTP, symbol, "")
				reads.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("read from %s failed: %v", n.ID, err)
					continue
				}
				if q.Index < last {
					t.Errorf("%s went backwards: %d after %d", n.ID, q.Index, last)
				}
				last = q.Index
			}
		})
	}
	return reads, failures, wg.Wait
}

// writeLoad writes symbol ten times a second through the nodes in turn
// until stop is closed, and returns the index of the last write.
func writeLoad(ctx context.Context, t *testing.T, nodes []cluster.Member, symbol string,
	stop <-chan struct{}) (last *atomic.Uint64, done func()) {
	last = &atomic.Uint64{}
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			w, err := writeQuote(ctx, nodes[i%len(nodes)].HTTP, symbol, fmt.Sprintf("%d", 100+i))
			if err != nil {
				t.Errorf("write failed: %v", err)
				continue
			}
			last.Store(w.Index)
		}
	})
	return last, wg.Wait
}

// Redis killed while the nodes serve a read load: not one read fails, and
// writes carry on.
func TestHotTierRedisKilledDuringReads(t *testing.T) {
	r, c := startHotCluster(t)
	ctx := testContext(t, 2*time.Minute)
	nodes := c.Members()
	seed, err := writeQuote(ctx, nodes[0].HTTP, "AAPL", "100")
	require.NoError(t, err)
	for _, n := range nodes {
		// A local read may lag; the load starts once every node has AAPL.
		_, err := readQuote(ctx, n.HTTP, "AAPL", "min_index="+strconv.FormatUint(seed.Index, 10))
		require.NoError(t, err)
	}

	stop := make(chan struct{})
	reads, failures, readsDone := hotLoad(ctx, t, nodes, "AAPL", stop)
	lastWrite, writesDone := writeLoad(ctx, t, nodes, "AAPL", stop)
	waitFor(t, "reads under way", func() bool { return reads.Load() > 500 })

	r.Kill()
	killedAt := lastWrite.Load()
	for _, n := range nodes {
		waitFor(t, n.ID+" sees Redis gone", func() bool {
			return metric(t, n.HTTP, "shoal_hottier_tracking_up") == 0
		})
	}
	before := reads.Load()
	waitFor(t, "reads go on without Redis", func() bool { return reads.Load() > before+2000 })
	waitFor(t, "writes go on without Redis", func() bool { return lastWrite.Load() > killedAt+2 })
	close(stop)
	readsDone()
	writesDone()

	require.Zero(t, failures.Load(), "failed reads")
	for _, n := range nodes {
		last := strconv.FormatUint(lastWrite.Load(), 10)
		q, err := readQuote(ctx, n.HTTP, "AAPL", "min_index="+last)
		require.NoError(t, err)
		require.Equal(t, lastWrite.Load(), q.Index, n.ID)
	}
	t.Logf("%d reads, %d failed", reads.Load(), failures.Load())
}

// Redis restarted (empty) and flushed, and even seeded with a stale value:
// no node answers anything older than the last write it applied.
func TestHotTierRedisRestartedAndFlushed(t *testing.T) {
	r, c := startHotCluster(t)
	ctx := testContext(t, 2*time.Minute)
	nodes := c.Members()

	// Warm: every node answers AAPL from its near cache.
	w, err := writeQuote(ctx, nodes[0].HTTP, "AAPL", "100")
	require.NoError(t, err)
	for _, n := range nodes {
		waitFor(t, n.ID+" caches AAPL", func() bool {
			q, err := readQuote(ctx, n.HTTP, "AAPL", "min_index="+strconv.FormatUint(w.Index, 10))
			require.NoError(t, err)
			return q.tier == "near"
		})
	}

	// Redis goes away; a write goes through without it.
	r.Stop()
	w, err = writeQuote(ctx, nodes[1].HTTP, "AAPL", "200")
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	for _, n := range nodes {
		waitFor(t, n.ID+" resubscribes", func() bool {
			return metric(t, n.HTTP, "shoal_hottier_tracking_up") == 1
		})
	}

	// Seed Redis with an old version of AAPL, then flush it all.
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	stale := fmt.Sprintf("%020d", 1) + `{"symbol":"AAPL","price":"1","index":1}`
	require.NoError(t, rc.Set(ctx, "shoal:hot:stocks/AAPL", stale, 0).Err())
	checkLatest := func(want hotQuote) {
		t.Helper()
		for range 20 {
			for _, n := range nodes {
				q, err := readQuote(ctx, n.HTTP, "AAPL",
					"min_index="+strconv.FormatUint(want.Index, 10))
				require.NoError(t, err)
				require.Equal(t, want.Index, q.Index, "%s answered from %s", n.ID, q.tier)
				require.Equal(t, "200", q.Price)
			}
		}
	}
	checkLatest(w)

	flushes := map[string]float64{}
	for _, n := range nodes {
		flushes[n.ID] = metric(t, n.HTTP, `shoal_hottier_flushes_total{reason="flushall"}`)
	}
	require.NoError(t, rc.FlushAll(ctx).Err())
	for _, n := range nodes {
		waitFor(t, n.ID+" flushes on FLUSHALL", func() bool {
			return metric(t, n.HTTP, `shoal_hottier_flushes_total{reason="flushall"}`) >
				flushes[n.ID]
		})
	}
	checkLatest(w)
}
