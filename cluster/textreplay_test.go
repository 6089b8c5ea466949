package cluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/internal/replay"
)

// The real editing traces, beside the project.
const (
	sephBlogTrace       = "../../shared/data/seph-blog1.json.gz"
	automergePaperTrace = "../../shared/data/automerge-paper.json.gz"
)

// These tests replay the traces through `shoal replay text` of the binary
// under test, not in the test process: decoding and typing hundreds of
// thousands of edits under the race detector would take minutes. The
// replay command itself checks every node's and every client's text
// against the trace's end content and exits non-zero otherwise; the tests
// check the nodes again and follow the document with a client of their
// own, which runs in the test process under the race detector.
//
// The whole traces, with one and with three clients, are replayed in
// TestTextReplayRealTracesOnEveryNode. The tests that disturb a replay
// use a prefix of seph-blog1 (--limit) typed in small blocks, which gives
// a long stream of ops in a few seconds; for those the replay checks the
// prefix's end content and the tests compare the nodes and their own
// client with each other.

// textEnd returns the end content of the trace at path, skipping the test
// if the file is missing.
func textEnd(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("trace not available: %v", err)
	}
	end, err := replay.LoadTextEnd(path)
	require.NoError(t, err)
	return end
}

// textReplay is a run of `shoal replay text` in the background.
type textReplay struct {
	done   chan struct{}
	output []byte
	err    error
}

// startTextReplay starts `shoal replay text FILE` against every node of c.
func startTextReplay(
	t *testing.T, ctx context.Context, c *cluster.Cluster, file string, args ...string,
) *textReplay {
	t.Helper()
	bin, err := cluster.Binary()
	require.NoError(t, err)
	args = append([]string{"replay", "text", file, "--no-progress",
		"--addr", strings.Join(c.HTTPAddrs(), ",")}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	r := &textReplay{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.output, r.err = cmd.CombinedOutput()
	}()
	return r
}

// wait waits for the replay and fails the test unless it succeeded.
func (r *textReplay) wait(t *testing.T) string {
	t.Helper()
	<-r.done
	require.NoError(t, r.err, "shoal replay text:\n%s", r.output)
	return string(r.output)
}

// running reports whether the replay is still going.
func (r *textReplay) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// textWait polls cond until it holds; the test fails if ctx ends first.
func textWait(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting until %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// requireDocOnEveryNode reads doc from every node of c, each after it has
// applied the index of a linearizable read, and requires want on each
// (with want empty, the text of the linearizable read). It returns the
// revision and the text.
func requireDocOnEveryNode(
	t *testing.T, ctx context.Context, c *cluster.Cluster, doc, want string,
) (uint64, string) {
	t.Helper()
	cl := newClient(t, c.HTTPAddrs()...)
	head, err := cl.GetDoc(ctx, doc, client.ReadOptions{Consistency: client.ConsistencyStrong})
	require.NoError(t, err)
	if want == "" {
		want = head.Text
	}
	for _, addr := range c.HTTPAddrs() {
		got, err := cl.GetDoc(ctx, doc, client.ReadOptions{MinIndex: head.Index, Node: addr})
		require.NoError(t, err, addr)
		require.Equal(t, head.Rev, got.Rev, addr)
		require.True(t, got.Text == want, "%s (%s) holds %d bytes, want %d",
			addr, got.Node, len(got.Text), len(want))
	}
	return head.Rev, want
}

// requireClientsOK requires the replay's report to list n clients whose
// text is the end content.
func requireClientsOK(t *testing.T, output string, n int) {
	t.Helper()
	ok := 0
	for _, line := range strings.Split(output, "\n") {
		if strings.HasPrefix(line, "client ") && strings.HasSuffix(line, " ok") {
			ok++
		}
	}
	require.Equal(t, n, ok, "clients with the end content:\n%s", output)
}

// logSummary logs the replay's throughput and latency lines.
func logSummary(t *testing.T, output string) {
	for _, line := range strings.Split(output, "\n") {
		if strings.HasPrefix(line, "replayed") || strings.Contains(line, "latency") {
			t.Log(line)
		}
	}
}

func TestTextReplayRealTracesOnEveryNode(t *testing.T) {
	seph := textEnd(t, sephBlogTrace)
	automerge := textEnd(t, automergePaperTrace)
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 8*time.Minute)

	for _, tc := range []struct {
		file    string
		end     string
		clients int
	}{
		{sephBlogTrace, seph, 1},
		{sephBlogTrace, seph, 3},
		{automergePaperTrace, automerge, 1},
		{automergePaperTrace, automerge, 3},
	} {
		name := fmt.Sprintf("%s/clients=%d", filepath.Base(tc.file), tc.clients)
		t.Run(name, func(t *testing.T) {
			doc := fmt.Sprintf("trace-%d-%d", len(tc.end), tc.clients)
			output := startTextReplay(t, ctx, c, tc.file, "--doc", doc,
				"--clients", strconv.Itoa(tc.clients)).wait(t)
			logSummary(t, output)

			requireClientsOK(t, output, tc.clients)
			_, _ = requireDocOnEveryNode(t, ctx, c, doc, tc.end)
		})
	}
}

func TestTextReplaySubscriberMovesToAnotherNodeMidStream(t *testing.T) {
	textEnd(t, sephBlogTrace)
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 3*time.Minute)
	addrs := c.HTTPAddrs()

	// A subscriber rebuilds the text from the event stream alone, from
	// revision 0, while three clients type the trace in small blocks.
	cl := newClient(t, addrs...)
	sub, err := cl.OpenDoc(ctx, "blog", client.DocConfig{
		ClientID: "subscriber", Node: addrs[0], FromStart: true,
	})
	require.NoError(t, err)
	defer sub.Close()
	run := startTextReplay(t, ctx, c, sephBlogTrace, "--doc", "blog", "--clients", "3",
		"--block", "128", "--limit", "30000")

	// Drop its stream twice mid-way, resuming on another node each time.
	for i, addr := range []string{addrs[1], addrs[2]} {
		at := uint64(60 * (i + 1))
		textWait(t, ctx, fmt.Sprintf("the subscriber reaches revision %d", at), func() bool {
			require.True(t, run.running(), "the replay ended before the subscriber moved")
			return sub.Rev() >= at
		})
		require.NoError(t, sub.Reconnect(addr))
	}
	output := run.wait(t)
	logSummary(t, output)
	requireClientsOK(t, output, 3)

	rev, end := requireDocOnEveryNode(t, ctx, c, "blog", "")
	got, err := sub.WaitSynced(ctx, rev)
	require.NoError(t, err)
	assert.Equal(t, rev, got)
	assert.True(t, sub.Text() == end, "the subscriber rebuilt the exact text")
	assert.Equal(t, "http://"+addrs[2], sub.StreamNode())
	assert.GreaterOrEqual(t, sub.Stats().Reconnects, 2)
	assert.Equal(t, int(rev), sub.Stats().Remote, "every revision applied exactly once")
}

func TestTextReplayNodeKilledDuringReplayRejoins(t *testing.T) {
	textEnd(t, sephBlogTrace)
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 3*time.Minute)
	addrs := c.HTTPAddrs()

	// Kill the leader: submits fail over to another node, streams on it
	// break, and an op in flight may have to be resent.
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	victim, ok := c.Member(leader)
	require.True(t, ok)

	cl := newClient(t, addrs...)
	sub, err := cl.OpenDoc(ctx, "killed", client.DocConfig{
		ClientID: "subscriber", Node: victim.HTTP, FromStart: true,
	})
	require.NoError(t, err)
	defer sub.Close()
	run := startTextReplay(t, ctx, c, sephBlogTrace, "--doc", "killed", "--clients", "3",
		"--block", "128", "--limit", "30000")

	textWait(t, ctx, "the replay is under way", func() bool {
		require.True(t, run.running(), "the replay ended before the node was killed")
		return sub.Rev() >= 60
	})
	require.NoError(t, c.Kill(victim.ID))
	at := sub.Rev()
	textWait(t, ctx, "the replay goes on without the node", func() bool {
		return sub.Rev() >= at+30 || !run.running()
	})
	require.NoError(t, c.Restart(victim.ID))
	require.NoError(t, c.WaitReady(ctx))

	output := run.wait(t)
	logSummary(t, output)
	requireClientsOK(t, output, 3)

	// The restarted node holds the same text as the others.
	rev, end := requireDocOnEveryNode(t, ctx, c, "killed", "")
	_, err = sub.WaitSynced(ctx, rev)
	require.NoError(t, err)
	assert.True(t, sub.Text() == end, "the subscriber on the killed node moved on")
	assert.NotEqual(t, "http://"+victim.HTTP, sub.StreamNode())
}
