package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/node"
	"github.com/shoal-db/shoal/transport"
)

func TestConfigValidate(t *testing.T) {
	valid := node.DefaultConfig()
	valid.ID, valid.HTTPAddr, valid.RaftAddr, valid.DataDir = "n1", "127.0.0.1:1", "127.0.0.1:2", "d"
	require.NoError(t, valid.Validate())

	cases := map[string]func(*node.Config){
		"no id":              func(c *node.Config) { c.ID = "" },
		"slash in id":        func(c *node.Config) { c.ID = "a/b" },
		"space in id":        func(c *node.Config) { c.ID = "a b" },
		"long id":            func(c *node.Config) { c.ID = string(make([]byte, 65)) },
		"no http":            func(c *node.Config) { c.HTTPAddr = "" },
		"no raft":            func(c *node.Config) { c.RaftAddr = "" },
		"no data":            func(c *node.Config) { c.DataDir = "" },
		"bootstrap and join": func(c *node.Config) { c.Bootstrap, c.Join = true, "127.0.0.1:3" },
		"tiny heartbeat":     func(c *node.Config) { c.HeartbeatTimeout = time.Millisecond },
		"election < hb":      func(c *node.Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 },
		"lease > heartbeat":  func(c *node.Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout },
		"no logger":          func(c *node.Config) { c.Logger = nil },
	}
	for name, mutate := range cases {
		cfg := valid
		mutate(&cfg)
		require.Error(t, cfg.Validate(), name)
		_, err := node.Open(cfg)
		require.Error(t, err, name)
	}
}

func TestThreeNodesElectOneLeader(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()

	for _, tn := range c.nodes {
		require.Equal(t, "n1,n2,n3", joinIDs(voterIDs(t, tn)), "configuration seen by %s", tn.ID())
		require.Eventually(t, func() bool { ready, _ := tn.Ready(); return ready }, settle,
			10*time.Millisecond, "%s never became ready", tn.ID())
	}

	// Every node's view of the cluster, gathered from its peers over HTTP.
	for _, tn := range c.nodes {
		require.Eventually(t, func() bool {
			status, err := tn.Cluster(context.Background())
			if err != nil || status.Leader != leader.ID() || len(status.Nodes) != 3 {
				return false
			}
			leaders := 0
			for _, m := range status.Nodes {
				switch m.State {
				case "leader":
					leaders++
				case "follower":
				default:
					return false // unreachable or candidate
				}
				if m.HTTP != c.byID(m.ID).cfg.HTTPAddr || m.Raft != c.byID(m.ID).cfg.RaftAddr {
					return false
				}
			}
			return leaders == 1
		}, settle, 20*time.Millisecond, "%s's cluster status", tn.ID())
	}
}

func TestFollowerProposeIsForwarded(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	follower := c.followers(leader)[0]

	events, unsubscribe := follower.Subscribe(fsm.DomainStocks, 16)
	defer unsubscribe()

	before := c.forwardedTotal()
	cmd := putQuote("AAPL", "116.03", "forwarded-1")
	result := propose(t, follower, cmd)
	require.Greater(t, c.forwardedTotal(), before, "the follower did not forward over HTTP")

	// Forwarding returns once the follower has applied the write itself,
	// so its local state already reflects it.
	require.GreaterOrEqual(t, follower.AppliedIndex(), result.Index)
	q := quote(t, follower, "AAPL")
	require.Equal(t, "116.03", q.Price)
	require.Equal(t, result.Index, q.Index)
	raw, err := json.Marshal(q)
	require.NoError(t, err)
	require.JSONEq(t, string(raw), string(result.Value))

	// The leader, asked the same thing, answers the very same result.
	fromLeader := propose(t, leader, cmd)
	require.Equal(t, result, fromLeader)
	require.Equal(t, q, quote(t, leader, "AAPL"))

	select {
	case e := <-events:
		require.Equal(t, "AAPL", e.Key)
		require.Equal(t, result.Index, e.Index)
		require.JSONEq(t, string(result.Value), string(e.Data))
	case <-time.After(settle):
		t.Fatal("the follower published no event for the write")
	}

	// A rejected write comes back as a result, through forwarding too,
	// and changes nothing.
	rejected, err := follower.Propose(context.Background(), putQuote("AAPL", "-1", ""))
	require.NoError(t, err)
	require.NotNil(t, rejected.Err)
	require.Equal(t, fsm.CodeInvalid, rejected.Err.Code)
	require.Equal(t, q, quote(t, leader, "AAPL"))
}

func TestIdempotentRetryThroughForwarding(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	followers := c.followers(leader)

	cmd := putQuote("MSFT", "310.5", "retry-1")
	first := propose(t, followers[0], cmd)

	// Later writes move the index on; a retry must not apply again.
	propose(t, leader, putQuote("IBM", "140", ""))
	before := c.forwardedTotal()
	for _, tn := range followers {
		retry := propose(t, tn, cmd)
		require.Equal(t, first, retry, "retry through %s", tn.ID())
	}
	require.Equal(t, before+int32(len(followers)), c.forwardedTotal(),
		"each retry should have been forwarded once")
	for _, tn := range c.nodes {
		require.NoError(t, tn.WaitApplied(context.Background(), first.Index))
		require.Equal(t, first.Index, quote(t, tn, "MSFT").Index, "on %s", tn.ID())
	}

	// The same key on a different write is a conflict that changes nothing.
	reused, err := followers[1].Propose(context.Background(), putQuote("MSFT", "1", "retry-1"))
	require.NoError(t, err)
	require.NotNil(t, reused.Err)
	require.Equal(t, fsm.CodeConflict, reused.Err.Code)
	require.Equal(t, "310.5", quote(t, leader, "MSFT").Price)
}

func TestFollowerReadBarrier(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	followers := c.followers(leader)
	ctx := context.Background()

	var last *fsm.Result
	for i, price := range []string{"1", "2", "3", "4", "5"} {
		last = propose(t, leader, putQuote("NVDA", price, ""))
		follower := followers[i%len(followers)]

		index, err := follower.ReadBarrier(ctx, node.Strong, 0)
		require.NoError(t, err)
		require.GreaterOrEqual(t, index, last.Index)
		require.GreaterOrEqual(t, follower.AppliedIndex(), index)
		q := quote(t, follower, "NVDA")
		require.Equal(t, price, q.Price, "strong read on %s missed the write", follower.ID())
		require.Equal(t, last.Index, q.Index)
	}

	// The leader answers strong reads itself.
	index, err := leader.ReadBarrier(ctx, node.Strong, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, index, last.Index)

	// min_index waits for an index that arrives, and gives up on one that
	// never does.
	index, err = followers[0].ReadBarrier(ctx, node.Local, last.Index)
	require.NoError(t, err)
	require.GreaterOrEqual(t, index, last.Index)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = followers[0].ReadBarrier(short, node.Local, last.Index+1_000_000)
	require.ErrorIs(t, err, node.ErrTimeout)
}

// TestPeerEndpointsOnRealNode sends node-to-node requests to a real
// leader: a stranger is refused and changes nothing, a member is answered.
func TestPeerEndpointsOnRealNode(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	written := propose(t, leader, putQuote("TSLA", "200", ""))
	ctx := context.Background()

	encoded, err := func() ([]byte, error) {
		cmd := putQuote("TSLA", "1", "")
		return cmd.MarshalBinary()
	}()
	require.NoError(t, err)

	stranger := transport.NewClient("n9")
	_, err = stranger.Propose(ctx, leader.cfg.HTTPAddr, encoded)
	require.ErrorIs(t, err, transport.ErrRefused)
	_, err = stranger.ReadIndex(ctx, leader.cfg.HTTPAddr)
	require.ErrorIs(t, err, transport.ErrRefused)
	require.Equal(t, "200", quote(t, leader, "TSLA").Price, "a stranger's write was applied")

	member := transport.NewClient(c.followers(leader)[0].ID())
	index, err := member.ReadIndex(ctx, leader.cfg.HTTPAddr)
	require.NoError(t, err)
	require.GreaterOrEqual(t, index, written.Index)

	// A follower tells a member it is not the leader.
	follower := c.followers(leader)[0]
	_, err = transport.NewClient(leader.ID()).Propose(ctx, follower.cfg.HTTPAddr, encoded)
	require.ErrorIs(t, err, transport.ErrNotLeader)
	_, err = transport.NewClient(leader.ID()).ReadIndex(ctx, follower.cfg.HTTPAddr)
	require.ErrorIs(t, err, transport.ErrNotLeader)

	// Status answers anyone.
	status, err := stranger.Status(ctx, follower.cfg.HTTPAddr)
	require.NoError(t, err)
	require.Equal(t, follower.ID(), status.ID)
	require.Equal(t, leader.ID(), status.Leader)
}

func TestMembership(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	followers := c.followers(leader)
	ctx := context.Background()

	// Leader only.
	require.ErrorIs(t, followers[0].AddMember(ctx, followers[0].member()), node.ErrNotLeader)
	require.ErrorIs(t, followers[0].RemoveMember(ctx, followers[1].ID()), node.ErrNotLeader)

	// Joining twice, or re-adding any member as it is, changes nothing.
	applied := leader.AppliedIndex()
	for _, tn := range c.nodes {
		require.NoError(t, leader.AddMember(ctx, tn.member()))
		require.NoError(t, leader.AddMember(ctx, tn.member()))
	}
	require.Equal(t, applied, leader.AppliedIndex(), "re-adding members wrote to the log")
	require.Equal(t, "n1,n2,n3", joinIDs(voterIDs(t, leader)))

	// Another id may not take a member's addresses.
	taken := followers[0].member()
	requireConflict(t, leader.AddMember(ctx, fsm.Member{ID: "n9", HTTP: taken.HTTP, Raft: freeAddr(t)}))
	requireConflict(t, leader.AddMember(ctx, fsm.Member{ID: "n9", HTTP: "127.0.0.1:1", Raft: taken.Raft}))
	require.False(t, leader.IsMember("n9"))
	require.Equal(t, "n1,n2,n3", joinIDs(voterIDs(t, leader)))
	_, err := fsm.LookupMember(leader.State(), "n9")
	require.Error(t, err)

	// Removing an unknown id is an error; removing a member works.
	require.ErrorIs(t, leader.RemoveMember(ctx, "n9"), node.ErrUnknownMember)
	gone := followers[1]
	require.NoError(t, leader.RemoveMember(ctx, gone.ID()))
	require.False(t, leader.IsMember(gone.ID()))
	stays := followers[0]
	require.Eventually(t, func() bool {
		_, err := fsm.LookupMember(stays.State(), gone.ID())
		return !stays.IsMember(gone.ID()) && err != nil
	}, settle, 10*time.Millisecond, "%s still sees %s", stays.ID(), gone.ID())
	gone.stop(t)

	// The two left still form a quorum and accept writes.
	result := propose(t, stays, putQuote("AMZN", "3000", "after-removal"))
	require.NoError(t, leader.WaitApplied(ctx, result.Index))
	require.Equal(t, "3000", quote(t, leader, "AMZN").Price)
	require.Len(t, voterIDs(t, leader), 2)
}

func TestSingleNodeRefusesToLoseItsLastVoter(t *testing.T) {
	c := startCluster(t, 1)
	only := c.leader()
	ctx := context.Background()
	requireConflict(t, only.RemoveMember(ctx, only.ID()))
	requireConflict(t, only.TransferLeadership(ctx, ""))
	require.NoError(t, only.TransferLeadership(ctx, only.ID()), "it leads already")
	require.True(t, only.IsMember(only.ID()))
	propose(t, only, putQuote("ONE", "1", ""))
}

func TestLeaderTransfer(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	target := c.followers(leader)[1]
	ctx := context.Background()

	require.ErrorIs(t, target.TransferLeadership(ctx, leader.ID()), node.ErrNotLeader)
	require.ErrorIs(t, leader.TransferLeadership(ctx, "n9"), node.ErrUnknownMember)

	require.NoError(t, leader.TransferLeadership(ctx, target.ID()))
	require.Equal(t, target.ID(), c.leader().ID())

	// Writes keep working, forwarded by the old leader.
	result := propose(t, leader, putQuote("GOOG", "140", "after-transfer"))
	require.Equal(t, result.Index, quote(t, target, "GOOG").Index)

	// With no id, leadership goes to some other member.
	require.NoError(t, target.TransferLeadership(ctx, ""))
	require.Eventually(t, func() bool {
		now := c.leader()
		return now.ID() != target.ID()
	}, settle, 20*time.Millisecond)
}

func TestSurvivorAcceptsWritesAfterLeaderStops(t *testing.T) {
	c := startCluster(t, 3)
	old := c.leader()
	before := propose(t, old, putQuote("META", "300", ""))
	old.stop(t)

	survivors := c.running()
	require.Len(t, survivors, 2)
	// A key makes a write that meets the dying leader safe to retry,
	// which is what every shoal client does.
	result := propose(t, survivors[0], putQuote("META", "301", "after-failover"))
	require.Greater(t, result.Index, before.Index)

	leader := c.leader()
	require.NotEqual(t, old.ID(), leader.ID())
	for _, tn := range survivors {
		index, err := tn.ReadBarrier(context.Background(), node.Strong, 0)
		require.NoError(t, err)
		require.GreaterOrEqual(t, index, result.Index)
		require.Equal(t, "301", quote(t, tn, "META").Price, "on %s", tn.ID())
	}
	status, err := leader.Cluster(context.Background())
	require.NoError(t, err)
	for _, m := range status.Nodes {
		if m.ID == old.ID() {
			require.Equal(t, "unreachable", m.State)
		}
	}
}

func TestLeaderRemovesItself(t *testing.T) {
	c := startCluster(t, 3)
	old := c.leader()
	require.NoError(t, old.RemoveMember(context.Background(), old.ID()))
	old.stop(t)

	leader := c.leader()
	require.NotEqual(t, old.ID(), leader.ID())
	require.Equal(t, 2, len(voterIDs(t, leader)))
	_, err := fsm.LookupMember(leader.State(), old.ID())
	require.Error(t, err, "the removed leader's address is still recorded")
	for _, tn := range c.running() {
		require.False(t, tn.IsMember(old.ID()), "%s still counts %s", tn.ID(), old.ID())
	}
	propose(t, c.followers(leader)[0], putQuote("RM", "1", "after-self-removal"))
}

func TestRestartedFollowerCatchesUp(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	down := c.followers(leader)[0]
	propose(t, leader, putQuote("RST", "1", ""))
	require.Eventually(t, func() bool { return down.AppliedIndex() >= leader.AppliedIndex() },
		settle, 10*time.Millisecond)
	down.stop(t)

	// Writes it misses while down.
	var last *fsm.Result
	for _, price := range []string{"2", "3", "4"} {
		last = propose(t, leader, putQuote("RST", price, ""))
	}

	back := restart(t, down)
	require.True(t, back.IsMember(back.ID()), "a restarted node takes its place again")
	index, err := back.ReadBarrier(context.Background(), node.Strong, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, index, last.Index)
	require.Equal(t, "4", quote(t, back, "RST").Price)
	require.Equal(t, last.Index, quote(t, back, "RST").Index)

	// And it forwards writes again.
	if !back.IsLeader() {
		result := propose(t, back, putQuote("RST", "5", "after-restart"))
		require.Equal(t, "5", quote(t, back, "RST").Price)
		require.Equal(t, result.Index, quote(t, back, "RST").Index)
	}
}

// A caller whose deadline has passed is answered with ErrTimeout and
// nothing is proposed: raft would read the non-positive timeout as
// "wait for ever".
func TestProposeAfterDeadlineProposesNothing(t *testing.T) {
	c := startCluster(t, 1)
	only := c.leader()
	before := only.AppliedIndex()

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := only.Propose(ctx, putQuote("LATE", "1", ""))
	require.ErrorIs(t, err, node.ErrTimeout)

	// A later write lands right after the last one: nothing came between.
	result := propose(t, only, putQuote("ONTIME", "1", ""))
	require.Equal(t, before+1, result.Index)
	_, err = stocks.Get(only.State(), "LATE")
	require.Error(t, err)
}

func TestCloseTwiceReturnsTheFirstResult(t *testing.T) {
	c := startCluster(t, 1)
	only := c.leader()
	only.stop(t)
	require.NoError(t, only.Node.Close(), "a second Close")
}
