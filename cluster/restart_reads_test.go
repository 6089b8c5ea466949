package cluster_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
)

// TestRestartedNodeNeverAnswersOlder kills a follower with SIGKILL and
// reads from it, local reads, from the moment it restarts. Its state
// database is written without fsync, so it can come back behind what it
// answered before; it must answer 503 until it is back, never an older
// index or a 404 for a quote it served before the kill.
func TestRestartedNodeNeverAnswersOlder(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 2*time.Minute)
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	victim := follower(t, c, leader)
	cl := newClient(t, victim.HTTP)

	var last uint64
	for i := 1; i <= 5; i++ {
		q, err := cl.PutStock(ctx, "RSTRT", strconv.Itoa(i), time.Time{})
		require.NoError(t, err)
		last = q.Index
	}
	require.Eventually(t, func() bool {
		index, _ := localQuote(t, victim.HTTP)
		return index >= last
	}, time.Minute, 10*time.Millisecond, "the follower never applied the writes")

	require.NoError(t, c.Kill(victim.ID))
	require.NoError(t, c.Restart(victim.ID))

	answered := 0
	deadline := time.Now().Add(time.Minute)
	for answered < 20 && time.Now().Before(deadline) {
		index, price := localQuote(t, victim.HTTP)
		if index == 0 {
			time.Sleep(2 * time.Millisecond)
			continue // not listening yet, or 503
		}
		require.GreaterOrEqual(t, index, last, "a restarted node answered older than before")
		require.Equal(t, "5", price)
		answered++
	}
	require.Equal(t, 20, answered, "the restarted node never answered")
}

// localQuote reads RSTRT from addr with a local read and returns the index
// and price of a 200, or zero for anything else but a 404 or an error
// answer that names a stale state (which fail the test).
func localQuote(t *testing.T, addr string) (uint64, string) {
	t.Helper()
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/v1/stocks/RSTRT")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		return 0, ""
	default:
		t.Fatalf("GET RSTRT from %s: status %d", addr, resp.StatusCode)
	}
	var q struct {
		Price string `json:"price"`
		Index uint64 `json:"index"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&q))
	return q.Index, q.Price
}
