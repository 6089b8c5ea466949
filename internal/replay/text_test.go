package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/client/clienttest"
	"github.com/shoal-db/shoal/fsm/text"
)

// Real editing traces, outside the repository.
const (
	sephBlogFile       = "../../../shared/data/seph-blog1.json.gz"
	automergePaperFile = "../../../shared/data/automerge-paper.json.gz"
)

// loadedTraces caches the real traces: decoding one takes seconds under
// the race detector, and two tests read them.
var loadedTraces sync.Map // path -> *TextTrace

func loadTrace(t *testing.T, path string) *TextTrace {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("trace not available: %v", err)
	}
	if trace, ok := loadedTraces.Load(path); ok {
		return trace.(*TextTrace)
	}
	trace, err := LoadTextTrace(path)
	require.NoError(t, err)
	loadedTraces.Store(path, trace)
	return trace
}

func newTextFake(t *testing.T, nodes int) (*clienttest.DocCluster, *client.Client) {
	t.Helper()
	fake := clienttest.NewDocCluster(nodes)
	t.Cleanup(fake.Close)
	c, err := client.New(client.Config{Addrs: fake.Addrs(), Timeout: 5 * time.Second,
		RetryBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	return fake, c
}

func replayText(t *testing.T, c *client.Client, trace *TextTrace, opts TextOptions) TextReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report, err := Text(ctx, c, trace, opts)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, report.Print(&out))
	require.NoError(t, report.Err(), out.String())
	return report
}

func TestReadTextTraceRealFiles(t *testing.T) {
	for _, tc := range []struct {
		path          string
		txns, patches int
		length        int
	}{
		{sephBlogFile, 137154, 137993, 56769},
		{automergePaperFile, 259778, 259778, 104852},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			trace := loadTrace(t, tc.path)
			assert.False(t, trace.Concurrent())
			assert.Len(t, trace.Txns, tc.txns)
			assert.Equal(t, tc.patches, trace.Patches())
			assert.Equal(t, tc.length, len([]rune(trace.EndContent)))
			end, err := trace.Apply()
			require.NoError(t, err)
			assert.True(t, end == trace.EndContent, "the patches produce endContent")
		})
	}
}

func TestReadTextTraceAcceptsPlainAndGzippedJSON(t *testing.T) {
	raw := `{"startContent":"","endContent":"hé!","txns":[` +
		`{"time":"2021-01-01T00:00:00Z","patches":[[0,0,"hx"],[1,1,"é"]]},` +
		`{"patches":[[2,0,"!"]]}]}`
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(raw))
	require.NoError(t, w.Close())

	for name, input := range map[string][]byte{"plain": []byte(raw), "gzip": gz.Bytes()} {
		trace, err := ReadTextTrace(bytes.NewReader(input))
		require.NoError(t, err, name)
		assert.Equal(t, 3, trace.Patches(), name)
		end, err := trace.Apply()
		require.NoError(t, err, name)
		assert.Equal(t, "hé!", end, name)
	}
}

func TestReadTextTraceRejectsBadTraces(t *testing.T) {
	for name, raw := range map[string]string{
		"kind":        `{"kind":"weird","txns":[]}`,
		"patch":       `{"txns":[{"patches":[[0,"x"]]}]}`,
		"agent":       `{"kind":"concurrent","numAgents":1,"txns":[{"agent":1,"patches":[]}]}`,
		"parent":      `{"kind":"concurrent","numAgents":1,"txns":[{"parents":[0],"patches":[]}]}`,
		"no agents":   `{"kind":"concurrent","numAgents":0,"txns":[]}`,
		"start":       `{"kind":"concurrent","numAgents":1,"startContent":"x","txns":[]}`,
		"not json":    `{"txns":`,
		"not a trace": `[1,2]`,
	} {
		_, err := ReadTextTrace(strings.NewReader(raw))
		assert.Error(t, err, name)
	}

	// An agent's transactions must form a chain.
	trace, err := ReadTextTrace(strings.NewReader(`{"kind":"concurrent","numAgents":1,` +
		`"txns":[{"parents":[],"patches":[[0,0,"a"]]},{"parents":[],"patches":[[0,0,"b"]]}]}`))
	require.NoError(t, err)
	_, err = newTraceCausality(trace)
	assert.ErrorContains(t, err, "does not follow")
}

// randomTrace returns a sequential trace of n random edits: runs of typing
// with the odd deletion and jump elsewhere, with non-ASCII text.
func randomTrace(t *testing.T, seed uint64, n int) *TextTrace {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	words := []string{"shoal ", "raft ", "pebble ", "é", "日本 ", "🙂", "\n", "ok "}
	trace := &TextTrace{}
	length, cursor := 0, 0
	for range n {
		var patches []TextPatch
		for range 1 + rng.IntN(2) {
			if rng.IntN(10) == 0 {
				cursor = rng.IntN(length + 1)
			}
			p := TextPatch{Pos: cursor}
			if cursor > 0 && rng.IntN(5) == 0 {
				p.Deleted = 1 + rng.IntN(min(3, cursor))
				p.Pos -= p.Deleted
			} else {
				p.Inserted = words[rng.IntN(len(words))]
			}
			patches = append(patches, p)
			length += len([]rune(p.Inserted)) - p.Deleted
			cursor = p.Pos + len([]rune(p.Inserted))
		}
		trace.Txns = append(trace.Txns, TextTxn{Patches: patches})
	}
	end, err := trace.Apply()
	require.NoError(t, err)
	trace.EndContent = end
	return trace
}

func TestTextReplaysASequentialTraceWithOneClient(t *testing.T) {
	fake, c := newTextFake(t, 3)
	trace := randomTrace(t, 1, 2000)

	report := replayText(t, c, trace, TextOptions{Doc: "one"})
	got, rev := fake.Text("one")
	assert.Equal(t, trace.EndContent, got)
	assert.Equal(t, rev, report.Rev)
	assert.Equal(t, 2000, report.Txns)
	assert.Equal(t, int64(report.Edits), report.Commit.TotalCount(), "a latency per edit")
	assert.Less(t, report.Ops, 2000, "edits compose behind the op in flight")
	assert.Len(t, report.Checks, 4, "three nodes and one client")
}

func TestTextDealsBlocksToSeveralClients(t *testing.T) {
	fake, c := newTextFake(t, 3)
	trace := randomTrace(t, 2, 600)

	report := replayText(t, c, trace, TextOptions{Doc: "three", Clients: 3, Block: 25})
	got, _ := fake.Text("three")
	assert.Equal(t, trace.EndContent, got)
	assert.Equal(t, 3, report.Clients)
	assert.Len(t, report.Checks, 6, "three nodes and three clients")
	assert.GreaterOrEqual(t, report.Ops, 24, "at least one op per block")
}

func TestTextRejectsADocumentThatHasOps(t *testing.T) {
	_, c := newTextFake(t, 1)
	trace := randomTrace(t, 3, 10)
	replayText(t, c, trace, TextOptions{Doc: "used"})

	_, err := Text(context.Background(), c, trace, TextOptions{Doc: "used"})
	assert.ErrorContains(t, err, "already has")
}

func TestTextReplaysThroughLostRepliesAndBrokenStreams(t *testing.T) {
	fake, c := newTextFake(t, 3)
	trace := randomTrace(t, 4, 1500)

	// Break things while the replay runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			switch i % 4 {
			case 0:
				fake.DropReplies(1)
			case 1:
				fake.CutStreams(i % 3)
			case 2:
				fake.HideFromStreams(2)
			case 3:
				fake.RefuseSubmits(2)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	report := replayText(t, c, trace, TextOptions{Doc: "chaos", Clients: 3, Block: 50})
	cancel()
	got, _ := fake.Text("chaos")
	assert.Equal(t, trace.EndContent, got)
	applied, _ := fake.Submits()
	assert.Equal(t, report.Ops, applied, "every acknowledged op applied once")
}

func TestTextReplaysAPrefixOfARealTrace(t *testing.T) {
	trace := loadTrace(t, sephBlogFile)
	prefix, err := trace.Prefix(3000)
	require.NoError(t, err)
	fake, c := newTextFake(t, 3)

	replayText(t, c, prefix, TextOptions{Doc: "seph", Clients: 3})
	got, _ := fake.Text("seph")
	assert.Equal(t, prefix.EndContent, got)
}

func TestTextReplaysConcurrentFixtures(t *testing.T) {
	paths, err := filepath.Glob("testdata/text/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			trace, err := LoadTextTrace(path)
			require.NoError(t, err)
			require.True(t, trace.Concurrent())

			// Timing decides what each client has seen when it sends; run
			// a few times to meet more of the orders.
			for i := range 5 {
				fake, c := newTextFake(t, 3)
				report := replayText(t, c, trace, TextOptions{Doc: fmt.Sprint("d", i)})
				got, _ := fake.Text(fmt.Sprint("d", i))
				require.Equal(t, trace.EndContent, got)
				assert.Equal(t, trace.NumAgents, report.Clients)
			}
		})
	}
}

// randomConcurrentTrace returns a concurrent trace where each agent edits
// its own line, with random parents: each transaction has its agent's
// previous one and, now and then, the latest one of some other agents. No
// two agents ever edit the same place, so the end content does not depend
// on the order of commits, but the documents after the parents are
// anything but prefixes of any one client's history.
func randomConcurrentTrace(seed uint64, agents, n int) *TextTrace {
	rng := rand.New(rand.NewPCG(seed, 13))
	trace := &TextTrace{Kind: KindConcurrent, NumAgents: agents}

	// lines[a][k] is agent a's line after its first k transactions; the
	// first transaction (agent 0's) lays out the empty lines.
	lines := make([][]string, agents)
	for a := range lines {
		lines[a] = []string{""}
	}
	lines[0] = []string{"", ""}
	trace.Txns = append(trace.Txns, TextTxn{Parents: []int{},
		Patches: []TextPatch{{Inserted: strings.Repeat("\n", agents)}}})
	latest := make([]int, agents) // each agent's last transaction, -1 none
	for a := range latest {
		latest[a] = -1
	}
	latest[0] = 0
	versions := [][]int{make([]int, agents)} // per transaction, as newTraceCausality
	versions[0][0] = 0

	words := []string{"a", "bc", "é", "🙂", "日本", "x\u0301"}
	for len(trace.Txns) < n {
		a := rng.IntN(agents)
		parents := []int{0}
		if latest[a] >= 0 {
			parents = []int{latest[a]}
		}
		for b := range agents {
			if b != a && latest[b] >= 0 && rng.IntN(3) == 0 {
				parents = append(parents, latest[b])
			}
		}

		// The version after the parents.
		v := make([]int, agents)
		for _, p := range parents {
			pv := versions[p]
			for b := range v {
				v[b] = max(v[b], pv[b])
			}
			v[trace.Txns[p].Agent] = max(v[trace.Txns[p].Agent], len(ownTxns(trace, p))+1)
		}

		// Edit own line: offset is the lengths of the lines above.
		offset := 0
		for b := range a {
			offset += len([]rune(lines[b][v[b]])) + 1
		}
		line := []rune(lines[a][len(lines[a])-1])
		pos := rng.IntN(len(line) + 1)
		p := TextPatch{Pos: offset + pos}
		if pos < len(line) && rng.IntN(3) == 0 {
			p.Deleted = 1 + rng.IntN(min(3, len(line)-pos))
		} else {
			p.Inserted = words[rng.IntN(len(words))]
		}
		next := string(line[:pos]) + p.Inserted + string(line[pos+p.Deleted:])
		lines[a] = append(lines[a], next)

		latest[a] = len(trace.Txns)
		versions = append(versions, v)
		trace.Txns = append(trace.Txns, TextTxn{Parents: parents, Agent: a,
			Patches: []TextPatch{p}})
	}

	var end strings.Builder
	for a := range agents {
		end.WriteString(lines[a][len(lines[a])-1] + "\n")
	}
	trace.EndContent = end.String()
	return trace
}

// ownTxns returns the transactions of t's agent up to t, excluding it.
func ownTxns(trace *TextTrace, t int) []int {
	var own []int
	for i := range t {
		if trace.Txns[i].Agent == trace.Txns[t].Agent {
			own = append(own, i)
		}
	}
	return own
}

func TestTextReplaysRandomConcurrentTraces(t *testing.T) {
	for seed := range uint64(4) {
		trace := randomConcurrentTrace(seed, 2+int(seed%3), 200)
		_, err := newTraceCausality(trace)
		require.NoError(t, err)

		fake, c := newTextFake(t, 3)
		report := replayText(t, c, trace, TextOptions{Doc: "random"})
		got, _ := fake.Text("random")
		require.Equal(t, trace.EndContent, got, "seed %d", seed)
		assert.Equal(t, 0, report.Misplaced, "seed %d: no two agents share a place", seed)
	}
}

func TestCausalDocFollowsTheServerOnTies(t *testing.T) {
	// Both agents insert after "a" at once. Agent 0's own insert is still
	// pending when agent 1's arrives, so the server puts agent 0's later,
	// to the left: the index moves agent 1's insert to match.
	trace := &TextTrace{Kind: KindConcurrent, NumAgents: 2, Txns: []TextTxn{
		{Parents: []int{}, Patches: []TextPatch{{Inserted: "ab"}}},
		{Parents: []int{0}, Agent: 0, Patches: []TextPatch{{Pos: 1, Inserted: "X"}}},
		{Parents: []int{0}, Agent: 1, Patches: []TextPatch{{Pos: 1, Inserted: "Y"}}},
	}}
	causality, err := newTraceCausality(trace)
	require.NoError(t, err)
	d := newCausalDoc(trace, causality)
	_, err = d.integrate(0, true)
	require.NoError(t, err)
	local, err := d.integrate(1, true)
	require.NoError(t, err)
	assert.Equal(t, `[1,"X",1]`, local.String())

	// What the client applies: Y transformed past the pending X.
	y, err := text.FromSplice(1, 0, "Y", 2)
	require.NoError(t, err)
	_, applied, err := text.Transform(local, y)
	require.NoError(t, err)
	require.NoError(t, d.integrateRemote(2, applied))
	assert.Equal(t, "aXYb", d.liveText())
	assert.Equal(t, 1, d.misplaced)

	// A remote op that inserts other text than the trace is an error.
	d2 := newCausalDoc(trace, causality)
	_, err = d2.integrate(0, true)
	require.NoError(t, err)
	wrong, err := text.FromSplice(1, 0, "Q", 2)
	require.NoError(t, err)
	require.ErrorIs(t, d2.integrateRemote(2, wrong), client.ErrDiverged)
	assert.Equal(t, "ab", d2.liveText(), "a failed integration changes nothing")
}

func TestTextPatchJSONRoundTrip(t *testing.T) {
	p := TextPatch{Pos: 3, Deleted: 1, Inserted: "日"}
	raw, err := json.Marshal(p)
	require.NoError(t, err)
	assert.Equal(t, `[3,1,"日"]`, string(raw))
	var back TextPatch
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, p, back)
}

func TestTraceScannerDecodesJSON(t *testing.T) {
	raw := `{"numChildren": [1, {"a": [true, null, -1.5e3]}], "kind": "concurrent",` +
		` "numAgents": 2, "endContent": "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude42",` +
		` "txns": [{"agent": 1, "parents": [], "time": "x", "patches": [[0, 0, "\u65e5"]]},` +
		` {"agent": 0, "parents": [0], "patches": []}]}`
	trace, err := decodeTrace([]byte(raw))
	require.NoError(t, err)
	assert.Equal(t, "a\"\\/\b\f\n\r\té🙂", trace.EndContent)
	assert.Equal(t, 2, trace.NumAgents)
	require.Len(t, trace.Txns, 2)
	assert.Equal(t, []int{}, trace.Txns[0].Parents)
	assert.Equal(t, 1, trace.Txns[0].Agent)
	assert.Equal(t, "日", trace.Txns[0].Patches[0].Inserted)
	assert.Equal(t, []int{0}, trace.Txns[1].Parents)

	// It agrees with encoding/json on a trace encoding/json writes.
	want := randomTrace(t, 9, 50)
	encoded, err := json.Marshal(want)
	require.NoError(t, err)
	got, err := decodeTrace(encoded)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	for _, bad := range []string{`{"txns": [{"patches": [[1.5, 0, ""]]}]}`,
		`{"endContent": "abc`, `{"txns": [}`, `{} x`, `{"a": tru}`,
		`{"txns": [{"patches": [[-1, 0, ""]]}]}`, "{\"endContent\": \"a\nb\"}"} {
		_, err := decodeTrace([]byte(bad))
		assert.Error(t, err, bad)
	}
}

func TestLoadTextEndReadsOnlyTheEndContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.json")
	require.NoError(t, os.WriteFile(path,
		[]byte(`{"startContent": "", "endContent": "the end", "txns": [[[`), 0o644))
	end, err := LoadTextEnd(path)
	require.NoError(t, err)
	assert.Equal(t, "the end", end, "the broken transactions are never read")

	if _, err := os.Stat(sephBlogFile); err == nil {
		end, err := LoadTextEnd(sephBlogFile)
		require.NoError(t, err)
		assert.Equal(t, 56769, len([]rune(end)))
	}
}
