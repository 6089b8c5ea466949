package cluster_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/internal/replay"
)

// redditFile is the real comment thread, beside the project.
const redditFile = "../../shared/data/reddit_thread.jsonl"

func requireRedditFile(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(redditFile); err != nil {
		t.Skipf("real data not found: %v", err)
	}
}

// requireCommentsReplayed checks a finished replay of the real thread:
// every write acknowledged, and every listing in every order and every
// count as the file implies on every node, whose states are identical.
func requireCommentsReplayed(t *testing.T, ctx context.Context, c *cluster.Cluster,
	cl *client.Client, report replay.CommentsReport) {
	t.Helper()
	require.Zero(t, report.Errors, "first error: %v", report.FirstError)
	require.Equal(t, 200, report.Created)
	require.Equal(t, 5958+958, report.Ups+report.Downs)
	require.Equal(t, report.Ups+report.Downs, report.Voted)

	verified, err := replay.VerifyComments(ctx, cl, report, c.HTTPAddrs(), 0)
	require.NoError(t, err)
	require.NoError(t, verified.Err(), "%v", verified.Examples)
	require.Equal(t, 3*(1+200)*len(replay.VerifiedSorts), verified.Listings)
	requireConverged(t, ctx, c, report.MinIndex)
}

// TestReplayCommentThreadOnEveryNode replays the real thread (200
// comments, 6,916 votes) through a three-node cluster and checks every
// listing and count on every node.
func TestReplayCommentThreadOnEveryNode(t *testing.T) {
	requireRedditFile(t)
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 5*time.Minute)
	cl := newClient(t, c.HTTPAddrs()...)

	start := time.Now()
	report, err := replay.Comments(ctx, cl, redditFile, replay.CommentsOptions{})
	require.NoError(t, err)
	t.Logf("%s (%v in all)", report, time.Since(start).Round(time.Millisecond))
	requireCommentsReplayed(t, ctx, c, cl, report)
}

// TestReplayCommentThreadWithNodeKilled kills the leader while the real
// thread's votes are being cast and brings it back a moment later: the
// replay completes with every write applied once, and the rejoined node
// lists everything exactly as the others do.
func TestReplayCommentThreadWithNodeKilled(t *testing.T) {
	requireRedditFile(t)
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 5*time.Minute)
	cl := newClient(t, c.HTTPAddrs()...)
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	status, err := cluster.QueryStatus(ctx, c.HTTPAddrs()[0])
	require.NoError(t, err)
	var startIndex uint64
	for _, n := range status.Nodes {
		startIndex = max(startIndex, n.AppliedIndex)
	}

	type outcome struct {
		report replay.CommentsReport
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		report, err := replay.Comments(ctx, cl, redditFile, replay.CommentsOptions{Seed: 2})
		done <- outcome{report, err}
	}()

	// Kill the leader once a good share of the votes is in: 200 creates,
	// then 6,916 votes.
	survivor := follower(t, c, leader)
	require.Eventually(t, func() bool {
		s, err := cluster.QueryStatus(ctx, survivor.HTTP)
		if err != nil {
			return false
		}
		for _, n := range s.Nodes {
			if n.ID == survivor.ID {
				return n.AppliedIndex > startIndex+200+1500
			}
		}
		return false
	}, 2*time.Minute, 20*time.Millisecond, "the replay did not get going")
	require.NoError(t, c.Kill(leader))
	t.Logf("killed leader %s mid-replay", leader)
	time.Sleep(time.Second)
	require.NoError(t, c.Restart(leader))

	result := <-done
	require.NoError(t, result.err)
	t.Log(result.report)
	require.NoError(t, c.WaitReady(ctx))
	requireCommentsReplayed(t, ctx, c, cl, result.report)
}

// TestCommentCursorsStableUnderConcurrentVotes pages through a thread's
// top and best listings, page after page from different nodes, while
// another goroutine votes on some of its comments. Every comment that
// received no vote meanwhile keeps its position, so it must be listed
// exactly once and in its order; the voted ones may be seen twice or not
// at all.
func TestCommentCursorsStableUnderConcurrentVotes(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 3*time.Minute)
	cl := newClient(t, c.HTTPAddrs()...)
	const thread = "cursor stability"

	// 60 comments with distinct scores; every third one is a mover.
	var ids []string
	for i := range 60 {
		created, err := cl.CreateComment(ctx, thread, client.NewComment{
			Author: fmt.Sprintf("author-%d", i), Body: "a comment"})
		require.NoError(t, err)
		ids = append(ids, created.ID)
	}
	movers := map[string]bool{}
	var last atomic.Uint64
	var seeding errgroup.Group
	for i, id := range ids {
		if i%3 == 0 {
			movers[id] = true
		}
		seeding.Go(func() error {
			for v := range i % 7 {
				voted, err := cl.Vote(ctx, id, fmt.Sprintf("seed-%d", v), client.VoteUp)
				if err != nil {
					return err
				}
				for old := last.Load(); voted.Index > old; old = last.Load() {
					last.CompareAndSwap(old, voted.Index)
				}
			}
			return nil
		})
	}
	require.NoError(t, seeding.Wait())

	// Voters move the movers up and down until the reader is done.
	stop := make(chan struct{})
	var votes atomic.Int64
	var voters errgroup.Group
	moverIDs := make([]string, 0, len(movers))
	for id := range movers {
		moverIDs = append(moverIDs, id)
	}
	for voter := range 8 {
		voters.Go(func() error {
			for n := voter; ; n += 8 {
				select {
				case <-stop:
					return nil
				default:
				}
				value := []string{client.VoteUp, client.VoteDown, client.VoteNone}[n%3]
				user := "mover-" + strconv.Itoa(n/3%50)
				if _, err := cl.Vote(ctx, moverIDs[n%len(moverIDs)], user, value); err != nil {
					return err
				}
				votes.Add(1)
			}
		})
	}
	require.Eventually(t, func() bool { return votes.Load() >= 16 }, time.Minute,
		10*time.Millisecond, "the voters did not start")

	// Page through each listing several times, each page from the next
	// node, and check the comments that did not move.
	nodes := c.HTTPAddrs()
	pages := 0
	for pass := range 6 {
		sort := []string{client.SortTop, client.SortBest}[pass%2]
		var listed []client.Comment
		opts := client.ListOptions{Sort: sort, Limit: 4}
		for {
			opts.ReadOptions = client.ReadOptions{Node: nodes[pages%len(nodes)], MinIndex: last.Load()}
			page, err := cl.ListComments(ctx, thread, opts)
			require.NoError(t, err)
			pages++
			listed = append(listed, page.Comments...)
			if page.NextCursor == "" {
				break
			}
			opts.Cursor = page.NextCursor
		}

		seen := map[string]int{}
		var still []client.Comment
		for _, comment := range listed {
			seen[comment.ID]++
			if !movers[comment.ID] {
				still = append(still, comment)
			}
		}
		for _, id := range ids {
			if !movers[id] {
				require.Equal(t, 1, seen[id], "pass %d (%s): comment %s listed %d times",
					pass, sort, id, seen[id])
			}
		}
		for i := 1; i < len(still); i++ {
			a, b := still[i-1], still[i]
			aID, _ := strconv.Atoi(a.ID)
			bID, _ := strconv.Atoi(b.ID)
			switch sort {
			case client.SortTop:
				require.True(t, a.Score > b.Score || (a.Score == b.Score && aID < bID),
					"pass %d: %s (score %d) before %s (score %d)", pass, a.ID, a.Score, b.ID,
					b.Score)
			case client.SortBest:
				require.True(t, a.Best > b.Best || (a.Best == b.Best && aID < bID),
					"pass %d: %s (best %v) before %s (best %v)", pass, a.ID, a.Best, b.ID,
					b.Best)
			}
		}
	}
	close(stop)
	require.NoError(t, voters.Wait())
	require.Positive(t, votes.Load(), "no vote was cast while paging")
	t.Logf("%d pages read from %d nodes while %d votes moved %d comments", pages, len(nodes),
		votes.Load(), len(movers))
}
