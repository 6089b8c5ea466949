package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/internal/replay"
)

// stocksFile is the real stock price file, beside the project.
const stocksFile = "../../shared/data/stocks_daily.csv"

func newClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addrs: addrs, Timeout: 5 * time.Second})
	require.NoError(t, err)
	return c
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// follower returns the id of a running node other than the leader.
func follower(t *testing.T, c *cluster.Cluster, leader string) cluster.Member {
	t.Helper()
	for _, m := range c.Members() {
		if m.ID != leader && c.Running(m.ID) {
			return m
		}
	}
	t.Fatal("no running follower")
	return cluster.Member{}
}

// digest reads GET /v1/debug/digest from a node after it applied index.
func digest(ctx context.Context, addr string, index uint64) (string, uint64, error) {
	url := fmt.Sprintf("http://%s/v1/debug/digest?min_index=%d", addr, index)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Digest string `json:"digest"`
		Index  uint64 `json:"index"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("%s: %s", addr, resp.Status)
	}
	return body.Digest, body.Index, json.NewDecoder(resp.Body).Decode(&body)
}

// requireConverged waits until every running node reports the same
// applied index and state digest.
func requireConverged(t *testing.T, ctx context.Context, c *cluster.Cluster, atLeast uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		var first string
		var firstIndex uint64
		for i, m := range c.Members() {
			if !c.Running(m.ID) {
				continue
			}
			sum, index, err := digest(ctx, m.HTTP, atLeast)
			if err != nil {
				return false
			}
			if i == 0 || first == "" {
				first, firstIndex = sum, index
				continue
			}
			if sum != first || index != firstIndex {
				return false
			}
		}
		return first != ""
	}, 20*time.Second, 100*time.Millisecond, "nodes did not converge")
}

func TestWriteThroughFollowerIsReadOnEveryNode(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, time.Minute)
	leader, err := c.Leader(ctx)
	require.NoError(t, err)

	via := follower(t, c, leader)
	written, err := newClient(t, via.HTTP).PutStock(ctx, "AAPL", "116.030", time.Time{})
	require.NoError(t, err)
	require.Equal(t, "116.03", written.Price)
	require.Equal(t, via.ID, written.Node, "the follower answers a forwarded write itself")

	cl := newClient(t, c.HTTPAddrs()...)
	for _, m := range c.Members() {
		q, err := cl.GetStock(ctx, "AAPL", client.ReadOptions{Node: m.HTTP,
			MinIndex: written.Index})
		require.NoError(t, err, m.ID)
		require.Equal(t, "116.03", q.Price, m.ID)
		require.Equal(t, m.ID, q.Node)

		strong, err := cl.GetStock(ctx, "AAPL", client.ReadOptions{Node: m.HTTP,
			Consistency: client.ConsistencyStrong})
		require.NoError(t, err, m.ID)
		require.Equal(t, "116.03", strong.Price, m.ID)
	}
	requireConverged(t, ctx, c, written.Index)
}

func TestLeaderKilledWritesContinueAndNodeCatchesUp(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 2*time.Minute)
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	survivor := follower(t, c, leader)
	cl := newClient(t, survivor.HTTP)

	_, err = cl.PutStock(ctx, "MSFT", "200", time.Time{})
	require.NoError(t, err)

	require.NoError(t, c.Kill(leader))
	killed := time.Now()

	// A strong read right after the election, before any new write: the
	// new leader's commit index ends in entries that never reach the
	// state machine, and the read must not wait for them.
	q, err := newClient(t, survivor.HTTP).GetStock(ctx, "MSFT",
		client.ReadOptions{Consistency: client.ConsistencyStrong})
	require.NoError(t, err)
	require.Equal(t, "200", q.Price)

	written, err := cl.PutStock(ctx, "MSFT", "213.87", time.Time{})
	require.NoError(t, err, "a write through a survivor must succeed after the leader dies")
	t.Logf("leader %s killed; first write through %s acknowledged after %v",
		leader, survivor.ID, time.Since(killed))

	newLeader, err := c.Leader(ctx)
	require.NoError(t, err)
	require.NotEqual(t, leader, newLeader)

	// The killed node restarts from its data directory and catches up.
	require.NoError(t, c.Restart(leader))
	require.NoError(t, c.WaitReady(ctx))
	m, _ := c.Member(leader)
	q, err = newClient(t, m.HTTP).GetStock(ctx, "MSFT",
		client.ReadOptions{Node: m.HTTP, MinIndex: written.Index})
	require.NoError(t, err)
	require.Equal(t, "213.87", q.Price)
	requireConverged(t, ctx, c, written.Index)
}

func TestWholeClusterKilledAndRestartedLosesNothing(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 2*time.Minute)
	cl := newClient(t, c.HTTPAddrs()...)

	var last client.Quote
	for i := 1; i <= 50; i++ {
		q, err := cl.PutStock(ctx, fmt.Sprintf("S%d", i%5), fmt.Sprintf("%d.5", i), time.Time{})
		require.NoError(t, err)
		last = q
	}

	// kill -9 everyone at once: only what was synced survives, and every
	// acknowledged write was.
	for _, m := range c.Members() {
		require.NoError(t, c.Kill(m.ID))
	}
	for _, m := range c.Members() {
		require.NoError(t, c.Restart(m.ID))
	}
	require.NoError(t, c.WaitReady(ctx))

	for _, m := range c.Members() {
		list, err := cl.ListStocks(ctx, client.ReadOptions{Node: m.HTTP, MinIndex: last.Index})
		require.NoError(t, err, m.ID)
		require.Len(t, list.Stocks, 5, m.ID)
		got := map[string]string{}
		for _, q := range list.Stocks {
			got[q.Symbol] = q.Price
		}
		require.Equal(t, map[string]string{"S0": "50.5", "S1": "46.5", "S2": "47.5",
			"S3": "48.5", "S4": "49.5"}, got, m.ID)
	}
	requireConverged(t, ctx, c, last.Index)
}

func TestNewNodeJoinsFromSnapshot(t *testing.T) {
	c := cluster.StartTest(t, 3, "--snapshot-threshold", "50", "--snapshot-interval",
		"200ms", "--trailing-logs", "10")
	ctx := testContext(t, 2*time.Minute)
	cl := newClient(t, c.HTTPAddrs()...)

	var last client.Quote
	for i := 0; i < 300; i++ {
		q, err := cl.PutStock(ctx, fmt.Sprintf("SYM%d", i%20), fmt.Sprintf("%d", i+1),
			time.Time{})
		require.NoError(t, err)
		last = q
	}
	// Give the leader time to snapshot and compact its log.
	time.Sleep(time.Second)

	m, err := c.Grow(ctx)
	require.NoError(t, err)
	list, err := cl.ListStocks(ctx, client.ReadOptions{Node: m.HTTP, MinIndex: last.Index})
	require.NoError(t, err)
	require.Len(t, list.Stocks, 20)

	logText, err := os.ReadFile(m.Log)
	require.NoError(t, err)
	require.Contains(t, string(logText), "restored state from snapshot",
		"the new node should have been sent a snapshot, not the whole log")

	// The new node learns the configuration from the snapshot and the log
	// after it; give it a moment to report all four members.
	require.Eventually(t, func() bool {
		status, err := cluster.QueryStatus(ctx, m.HTTP)
		return err == nil && len(status.Nodes) == 4
	}, 20*time.Second, 50*time.Millisecond, "the new node should list 4 members")
	requireConverged(t, ctx, c, last.Index)
}

func TestReplayStockFileGivesLastCloseOnEveryNode(t *testing.T) {
	if _, err := os.Stat(stocksFile); err != nil {
		t.Skipf("real data not found: %v", err)
	}
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 5*time.Minute)
	cl := newClient(t, c.HTTPAddrs()...)

	report, err := replay.Stocks(ctx, cl, stocksFile, replay.StocksOptions{Concurrency: 9})
	require.NoError(t, err)
	require.Zero(t, report.Errors, "first error: %v", report.FirstError)
	require.Equal(t, 38268, report.Written)
	t.Log(report.String())

	verified, err := replay.Verify(ctx, cl, report.Expected, c.HTTPAddrs())
	require.NoError(t, err)
	require.NoError(t, verified.Err())
	for symbol, want := range map[string]string{"AAPL": "116.03", "MSFT": "213.87",
		"TSLA": "574", "GOOG": "1771.43"} {
		for _, m := range c.Members() {
			q, err := cl.GetStock(ctx, symbol, client.ReadOptions{Node: m.HTTP,
				MinIndex: report.Expected.MinIndex})
			require.NoError(t, err)
			require.Equal(t, want, q.Price, "%s on %s", symbol, m.ID)
			require.True(t, strings.HasPrefix(q.Time.Format(time.RFC3339), "2020-"), q.Time)
		}
	}
}
