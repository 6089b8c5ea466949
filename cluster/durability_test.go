package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/fsm/stocks"
)

// ackedWrite is a write the cluster acknowledged.
type ackedWrite struct {
	symbol, price string
	index         uint64
}

// TestAcknowledgedWritesSurviveKillingEveryNodeUnderLoad kills every node
// at once with SIGKILL while many clients are writing, twice, and checks
// after each full restart that every acknowledged write is there on every
// node. Each write has a symbol of its own, so no later write can hide a
// lost one.
func TestAcknowledgedWritesSurviveKillingEveryNodeUnderLoad(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 4*time.Minute)

	var all []ackedWrite
	for round := 0; round < 2; round++ {
		acked := writeUntilKilled(t, ctx, c, round, 1000)
		t.Logf("round %d: %d writes acknowledged before every node was killed", round, len(acked))
		all = append(all, acked...)

		for _, m := range c.Members() {
			require.NoError(t, c.Restart(m.ID))
		}
		require.NoError(t, c.WaitReady(ctx))
		requireAllPresent(t, ctx, c, all)
	}
}

// writeUntilKilled runs concurrent writers of fresh symbols and, once at
// least minAcked writes are acknowledged, kills every node at once while
// the writers are still sending. It returns the acknowledged writes.
func writeUntilKilled(t *testing.T, ctx context.Context, c *cluster.Cluster, round,
	minAcked int) []ackedWrite {
	t.Helper()
	const writers = 16
	cl, err := client.New(client.Config{Addrs: c.HTTPAddrs(), Timeout: 2 * time.Second,
		MaxRetries: -1})
	require.NoError(t, err)

	var (
		mu      sync.Mutex
		acked   []ackedWrite
		count   atomic.Int64
		stop    = make(chan struct{})
		enough  = make(chan struct{})
		once    sync.Once
		writing sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		writing.Add(1)
		go func() {
			defer writing.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				symbol := fmt.Sprintf("D%d%02d-%d", round, w, seq)
				price := fmt.Sprintf("%d.%d", seq+1, w+1)
				q, err := cl.PutStock(ctx, symbol, price, time.Time{})
				if err != nil {
					continue // not acknowledged: it may or may not survive
				}
				mu.Lock()
				canonical, _ := stocks.CanonicalPrice(price)
				acked = append(acked, ackedWrite{symbol, canonical, q.Index})
				mu.Unlock()
				if count.Add(1) >= int64(minAcked) {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}

	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal("the writers did not get enough writes acknowledged")
	}
	// SIGKILL everyone at the same moment, writers still going.
	var killing sync.WaitGroup
	for _, m := range c.Members() {
		killing.Add(1)
		go func() {
			defer killing.Done()
			require.NoError(t, c.Kill(m.ID))
		}()
	}
	killing.Wait()
	close(stop)
	writing.Wait()

	mu.Lock()
	defer mu.Unlock()
	return append([]ackedWrite(nil), acked...)
}

// requireAllPresent checks that every node holds every acknowledged write.
func requireAllPresent(t *testing.T, ctx context.Context, c *cluster.Cluster,
	acked []ackedWrite) {
	t.Helper()
	var last uint64
	for _, w := range acked {
		last = max(last, w.index)
	}
	cl := newClient(t, c.HTTPAddrs()...)
	for _, m := range c.Members() {
		list, err := cl.ListStocks(ctx, client.ReadOptions{Node: m.HTTP, MinIndex: last})
		require.NoError(t, err, m.ID)
		have := map[string]string{}
		for _, q := range list.Stocks {
			have[q.Symbol] = q.Price
		}
		var lost []string
		for _, w := range acked {
			if have[w.symbol] != w.price {
				lost = append(lost, fmt.Sprintf("%s=%s (index %d, found %q)", w.symbol,
					w.price, w.index, have[w.symbol]))
			}
		}
		require.Empty(t, lost, "%s lost %d of %d acknowledged writes", m.ID, len(lost),
			len(acked))
	}
	requireConverged(t, ctx, c, last)
}
