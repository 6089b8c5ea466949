package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/api"
	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/comments"
	"github.com/shoal-db/shoal/node"
)

// startCommentsServer runs a one-node cluster with the comments domain in
// the test process, behind a real HTTP server, and returns its address.
func startCommentsServer(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	raftListener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	raftAddr := raftListener.Addr().String()
	require.NoError(t, raftListener.Close())

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := node.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.RaftAddr = "n1", listener.Addr().String(), raftAddr
	cfg.DataDir, cfg.Bootstrap, cfg.Logger = t.TempDir(), true, quiet
	cfg.Domains = map[fsm.DomainID]fsm.Domain{fsm.DomainComments: comments.New()}
	n, err := node.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })

	apiCfg := api.DefaultConfig()
	apiCfg.Logger = quiet
	server := httptest.NewUnstartedServer(api.New(n, apiCfg).Handler())
	server.Listener.Close()
	server.Listener = listener
	server.Start()
	t.Cleanup(server.Close)
	require.Eventually(t, func() bool {
		_, err := fsm.LookupMember(n.State(), "n1")
		return n.IsLeader() && err == nil
	}, time.Minute, 10*time.Millisecond)
	return listener.Addr().String()
}

// TestCommentWorkloads runs the votes and listing workloads, on small
// threads, against a real node: both prepare their thread and measure
// their operations without errors.
func TestCommentWorkloads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	addr := startCommentsServer(t)
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
