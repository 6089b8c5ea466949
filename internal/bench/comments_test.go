package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/internal/nodetest"
)

// TestCommentWorkloads runs the votes and listing workloads, on small
// threads, against a real node: both prepare their thread and measure
// their operations without errors.
func TestCommentWorkloads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	addr := nodetest.Start(t, nodetest.Config{}).Addr
	registry["test-votes"] = func(Options) workload {
		return commentVotes{thread: "t/votes", comments: 40, ids: new([]string)}
	}
	registry["test-listing"] = func(Options) workload {
		return commentListing{thread: "t/listing", comments: 200, votes: 100}
	}
	t.Cleanup(func() {
		delete(registry, "test-votes")
		delete(registry, "test-listing")
	})

	for _, tc := range []struct {
		workload string
		ops      []string
	}{
		{"test-votes", []string{OpVote}},
		{"test-listing", []string{"list-best", "list-controversial", "list-new", "list-old",
			"list-replies", "list-top"}},
	} {
		c := newClient(t, []string{addr})
		report, err := Run(context.Background(), c, Options{
			Workload: tc.workload, Clients: 4, Duration: 300 * time.Millisecond,
		})
		require.NoError(t, err, tc.workload)
		var ops []string
		for _, s := range report.Ops {
			ops = append(ops, s.Op)
			require.Positive(t, s.Count, s.Op)
			require.Zero(t, s.Errors, s.Op)
		}
		require.ElementsMatch(t, tc.ops, ops, tc.workload)
	}
}
