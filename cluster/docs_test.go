package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/fanout"
	"github.com/shoal-db/shoal/fsm/text"
)

// The server side of collaborative documents across real node processes:
// concurrent edits through different nodes converge, event streams resume
// on another node without gap or duplicate, a killed node rejoins with the
// same text, and Redis gets each revision once.

// docHTTP is a plain HTTP client for the document API.
var docHTTP = &http.Client{Timeout: 10 * time.Second}

// docReply is GET /v1/docs/{id}.
type docReply struct {
	ID    string `json:"id"`
	Text  string `json:"text"`
	Rev   uint64 `json:"rev"`
	Index uint64 `json:"index"`
}

// docSubmitReply is POST /v1/docs/{id}/ops.
type docSubmitReply struct {
	Rev   uint64  `json:"rev"`
	Op    text.Op `json:"op"`
	Index uint64  `json:"index"`
}

// docCall sends one request and decodes a 200 reply into out; any other
// status is an error carrying it.
func docCall(ctx context.Context, method, url, body string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := docHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, json.Unmarshal(raw, out)
}

// getDoc reads a document from the node at addr once it has applied
// minIndex; a missing document is the empty one at revision 0.
func getDoc(ctx context.Context, addr, doc string, minIndex uint64) (docReply, error) {
	var reply docReply
	status, err := docCall(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/v1/docs/%s?min_index=%d", addr, doc, minIndex), "", &reply)
	if status == http.StatusNotFound {
		return docReply{ID: doc}, nil
	}
	return reply, err
}

// docWriter submits ops as one client, to the nodes at addrs in turn: on
// a network error or a 503 it resends the same (client, seq) to the next
// node, which is safe because the server answers a resend with the first
// result.
type docWriter struct {
	addrs  []string
	doc    string
	client string
	seq    uint64
	at     int // index in addrs of the node in use

	// rebased counts the ops the server transformed over ops the writer
	// had not seen.
	rebased atomic.Int64
}

func (w *docWriter) addr() string { return w.addrs[w.at%len(w.addrs)] }

// submit sends op made against rev until a node accepts or rejects it.
func (w *docWriter) submit(ctx context.Context, rev uint64, op string) (docSubmitReply, error) {
	w.seq++
	body := fmt.Sprintf(`{"rev": %d, "client": %q, "seq": %d, "op": %s}`, rev, w.client,
		w.seq, op)
	for {
		var reply docSubmitReply
		status, err := docCall(ctx, http.MethodPost,
			fmt.Sprintf("http://%s/v1/docs/%s/ops", w.addr(), w.doc), body, &reply)
		if err == nil {
			return reply, nil
		}
		if status != 0 && status != http.StatusServiceUnavailable {
			return reply, err
		}
		if ctx.Err() != nil {
			return reply, err
		}
		w.at++
		time.Sleep(20 * time.Millisecond)
	}
}

// typeRandomly makes n edits of w's document, each a random splice against
// the revision the writer's node has, read with a local read, and returns
// the highest Raft index of its writes.
func (w *docWriter) typeRandomly(ctx context.Context, rng *rand.Rand, n int) (uint64, error) {
	words := []string{"a", "bc", "é", "漢", "👍", " ", "\n"}
	var maxIndex uint64
	for range n {
		doc, err := getDoc(ctx, w.addr(), w.doc, 0)
		if err != nil {
			if ctx.Err() != nil {
				return 0, err
			}
			w.at++ // that node is down: use another
			time.Sleep(20 * time.Millisecond)
			doc, err = getDoc(ctx, w.addr(), w.doc, 0)
			if err != nil {
				continue
			}
		}
		length := utf8.RuneCountInString(doc.Text)
		pos := rng.IntN(length + 1)
		del := 0
		if length-pos > 0 && rng.IntN(4) == 0 {
			del = 1 + rng.IntN(min(length-pos, 3))
		}
		word, _ := json.Marshal(words[rng.IntN(len(words))])
		reply, err := w.submit(ctx, doc.Rev,
			fmt.Sprintf(`{"splice": [%d, %d, %s]}`, pos, del, word))
		if err != nil {
			return 0, err
		}
		if reply.Rev > doc.Rev+1 {
			w.rebased.Add(1)
		}
		maxIndex = max(maxIndex, reply.Index)
	}
	return maxIndex, nil
}

// requireSameText checks that every running node holds the same text and
// revision once it has applied index, that replaying the op log, a page
// at a time, gives that text, and returns it.
func requireSameText(t *testing.T, ctx context.Context, c *cluster.Cluster, doc string,
	index uint64) docReply {
	t.Helper()
	var first docReply
	for i, m := range c.Members() {
		if !c.Running(m.ID) {
			continue
		}
		got, err := getDoc(ctx, m.HTTP, doc, index)
		require.NoError(t, err, m.ID)
		if i == 0 || first.ID == "" {
			first = got
			continue
		}
		require.Equal(t, first.Rev, got.Rev, "%s has another revision", m.ID)
		require.Equal(t, first.Text, got.Text, "%s has another text", m.ID)
	}

	var reader string
	for _, m := range c.Members() {
		if c.Running(m.ID) {
			reader = m.HTTP
		}
	}
	replayed, rev := "", uint64(0)
	for rev < first.Rev {
		var page struct {
			Ops []struct {
				Rev uint64  `json:"rev"`
				Op  text.Op `json:"op"`
			} `json:"ops"`
			Rev uint64 `json:"rev"`
		}
		_, err := docCall(ctx, http.MethodGet, fmt.Sprintf(
			"http://%s/v1/docs/%s/ops?from=%d&limit=97&min_index=%d", reader, doc, rev,
			index), "", &page)
		require.NoError(t, err)
		require.NotEmpty(t, page.Ops)
		for _, e := range page.Ops {
			require.Equal(t, rev+1, e.Rev)
			replayed, err = text.Apply(replayed, e.Op)
			require.NoError(t, err)
			rev = e.Rev
		}
	}
	require.Equal(t, first.Text, replayed, "the op log does not rebuild the text")
	return first
}

func TestDocsConcurrentEditsConverge(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 3*time.Minute)

	const each = 60
	var wg sync.WaitGroup
	var maxIndex atomic.Uint64
	var writers []*docWriter
	for i, m := range c.Members() {
		w := &docWriter{addrs: []string{m.HTTP}, doc: "shared", client: "w" + m.ID}
		writers = append(writers, w)
		wg.Go(func() {
			index, err := w.typeRandomly(ctx, rand.New(rand.NewPCG(uint64(i), 9)), each)
			if err != nil {
				t.Errorf("writer on %s: %v", m.ID, err)
			}
			for old := maxIndex.Load(); index > old; old = maxIndex.Load() {
				if maxIndex.CompareAndSwap(old, index) {
					break
				}
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())

	rebased := int64(0)
	for _, w := range writers {
		rebased += w.rebased.Load()
	}
	t.Logf("%d of %d edits were transformed over edits their writer had not seen",
		rebased, 3*each)
	require.Positive(t, rebased, "the writers never edited concurrently")

	doc := requireSameText(t, ctx, c, "shared", maxIndex.Load())
	require.Equal(t, uint64(3*each), doc.Rev, "every edit is one revision")
	require.True(t, utf8.ValidString(doc.Text))
	requireConverged(t, ctx, c, maxIndex.Load())
}

// docStream reads the event stream of a document from one node.
type docStream struct {
	body   io.ReadCloser
	reader *bufio.Reader
}

func openDocStream(t *testing.T, ctx context.Context, addr, doc string,
	lastEventID uint64) *docStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/v1/docs/%s/events", addr, doc), nil)
	require.NoError(t, err)
	req.Header.Set("Last-Event-ID", strconv.FormatUint(lastEventID, 10))
	resp, err := http.DefaultClient.Do(req) // no timeout: it streams
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s := &docStream{body: resp.Body, reader: bufio.NewReader(resp.Body)}
	t.Cleanup(func() { s.body.Close() })
	return s
}

// docEvent is one event of a stream.
type docEvent struct {
	ID     uint64
	Rev    uint64  `json:"rev"`
	Op     text.Op `json:"op"`
	Client string  `json:"client"`
}

// next returns the next op event, skipping comments.
func (s *docStream) next() (docEvent, error) {
	var ev docEvent
	var data string
	for {
		line, err := s.reader.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != "":
			err := json.Unmarshal([]byte(data), &ev)
			return ev, err
		case strings.HasPrefix(line, "id: "):
			if ev.ID, err = strconv.ParseUint(line[4:], 10, 64); err != nil {
				return ev, err
			}
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

// TestDocsEventsResumeOnAnotherNode reads a document's events from one
// node, drops the connection mid-stream, and resumes on another node with
// Last-Event-ID while edits go on: every revision arrives exactly once and
// the text rebuilt from the events is the document's.
func TestDocsEventsResumeOnAnotherNode(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 3*time.Minute)
	members := c.Members()

	// Some history before anyone listens.
	w := &docWriter{addrs: []string{members[1].HTTP}, doc: "live", client: "typist"}
	_, err := w.typeRandomly(ctx, rand.New(rand.NewPCG(1, 1)), 20)
	require.NoError(t, err)

	const total = 300
	writing := make(chan error, 1)
	go func() {
		_, err := w.typeRandomly(ctx, rand.New(rand.NewPCG(2, 2)), total-20)
		writing <- err
	}()

	rebuilt := ""
	var last uint64
	read := func(s *docStream, until uint64) {
		t.Helper()
		for last < until {
			ev, err := s.next()
			require.NoError(t, err)
			require.Equal(t, ev.ID, ev.Rev)
			require.Equal(t, last+1, ev.Rev, "a revision was skipped or repeated")
			rebuilt, err = text.Apply(rebuilt, ev.Op)
			require.NoError(t, err)
			last = ev.Rev
		}
	}

	first := openDocStream(t, ctx, members[0].HTTP, "live", 0)
	read(first, 120)
	first.body.Close() // the subscriber goes away mid-stream

	// It comes back on another node, which may be behind or ahead of the
	// first one.
	second := openDocStream(t, ctx, members[2].HTTP, "live", last)
	read(second, total)
	require.NoError(t, <-writing)

	doc, err := getDoc(ctx, members[2].HTTP, "live", 0)
	require.NoError(t, err)
	require.Equal(t, uint64(total), doc.Rev)
	require.Equal(t, doc.Text, rebuilt)

	// A node that shuts down ends its streams cleanly: the client sees
	// the end of the response, not a connection cut mid-stream.
	require.NoError(t, c.Stop(members[2].ID))
	_, err = second.next()
	require.ErrorIs(t, err, io.EOF)
	require.NotErrorIs(t, err, io.ErrUnexpectedEOF)
}

// TestDocsNodeKilledDuringEditsRejoins kills the leader with kill -9 while
// three clients edit through every node, and restarts it later: it comes
// back with the same text as the others.
func TestDocsNodeKilledDuringEditsRejoins(t *testing.T) {
	c := cluster.StartTest(t, 3)
	ctx := testContext(t, 3*time.Minute)
	leader, err := c.Leader(ctx)
	require.NoError(t, err)

	const each = 80
	var wg sync.WaitGroup
	var maxIndex atomic.Uint64
	var progress atomic.Int64
	addrs := c.HTTPAddrs()
	for i := range 3 {
		// Each writer starts on another node and moves on when it fails.
		w := &docWriter{addrs: addrs, at: i, doc: "survivor", client: fmt.Sprintf("k%d", i)}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			for range each / 10 {
				index, err := w.typeRandomly(ctx, rng, 10)
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				for old := maxIndex.Load(); index > old; old = maxIndex.Load() {
					if maxIndex.CompareAndSwap(old, index) {
						break
					}
				}
				progress.Add(10)
			}
		})
	}

	require.Eventually(t, func() bool { return progress.Load() >= 40 }, time.Minute,
		10*time.Millisecond)
	require.NoError(t, c.Kill(leader))
	require.Eventually(t, func() bool { return progress.Load() >= 150 }, 2*time.Minute,
		10*time.Millisecond)
	require.NoError(t, c.Restart(leader))
	wg.Wait()
	require.False(t, t.Failed())
	require.NoError(t, c.WaitReady(ctx))

	doc := requireSameText(t, ctx, c, "survivor", maxIndex.Load())
	require.Equal(t, uint64(3*each), doc.Rev, "a resent edit was applied twice or lost")
	requireConverged(t, ctx, c, maxIndex.Load())
}

// TestDocsRedisPublishesOncePerRevision runs three nodes on one Redis:
// every committed op is published once, whichever node gets there first,
// also while a node is down; with Redis killed, editing goes on, and
// once it is back publishing resumes.
func TestDocsRedisPublishesOncePerRevision(t *testing.T) {
	r := cluster.StartRedisTest(t)
	c := cluster.StartTest(t, 3, "--redis", r.Addr())
	ctx := testContext(t, 3*time.Minute)

	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rdb.Close() })
	sub := rdb.Subscribe(ctx, fanout.ChannelPrefix+"pub")
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { sub.Close() })
	var mu sync.Mutex
	counts := map[uint64]int{}
	var highest uint64
	go func() {
		for msg := range sub.Channel() {
			var m struct {
				Rev    uint64  `json:"rev"`
				Op     text.Op `json:"op"`
				Client string  `json:"client"`
				Doc    string  `json:"doc"`
			}
			if err := json.Unmarshal([]byte(msg.Payload), &m); err != nil || m.Doc != "pub" ||
				m.Client == "" {
				t.Errorf("bad message %q: %v", msg.Payload, err)
				continue
			}
			mu.Lock()
			counts[m.Rev]++
			highest = max(highest, m.Rev)
			mu.Unlock()
		}
	}()
	published := func() (map[uint64]int, uint64) {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[uint64]int, len(counts))
		for k, v := range counts {
			out[k] = v
		}
		return out, highest
	}

	// Three writers on three nodes; a follower dies halfway.
	members := c.Members()
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	victim := follower(t, c, leader)
	var wg sync.WaitGroup
	for i, m := range members {
		w := &docWriter{addrs: []string{m.HTTP}, doc: "pub", client: "p" + m.ID}
		if m.ID == victim.ID {
			w.addrs = []string{m.HTTP, leaderAddr(t, c, leader)}
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 5))
			for round := range 4 {
				if _, err := w.typeRandomly(ctx, rng, 25); err != nil {
					t.Errorf("writer on %s: %v", m.ID, err)
					return
				}
				if round == 1 && m.ID == victim.ID {
					_ = c.Kill(victim.ID)
				}
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())

	const total = 300
	require.Eventually(t, func() bool {
		_, top := published()
		return top >= total
	}, time.Minute, 20*time.Millisecond, "not every revision was published")
	time.Sleep(300 * time.Millisecond) // let a late duplicate show itself
	got, _ := published()
	for rev := uint64(1); rev <= total; rev++ {
		require.Equal(t, 1, got[rev], "revision %d published %d times", rev, got[rev])
	}
	require.Len(t, got, total)

	// Redis gone: editing and the event streams carry on.
	r.Kill()
	alive := leaderAddr(t, c, leader)
	stream := openDocStream(t, ctx, alive, "pub", total)
	w := &docWriter{addrs: c.HTTPAddrs(), doc: "pub", client: "after"}
	for _, m := range members {
		if m.ID == victim.ID {
			continue
		}
		w.addrs = []string{m.HTTP}
		_, err := w.typeRandomly(ctx, rand.New(rand.NewPCG(7, 7)), 10)
		require.NoError(t, err, "editing through %s with Redis down", m.ID)
	}
	for rev := uint64(total + 1); rev <= total+20; rev++ {
		ev, err := stream.next()
		require.NoError(t, err)
		require.Equal(t, rev, ev.Rev)
	}

	// Redis back (empty: it keeps nothing on disk): new ops are published
	// again.
	require.NoError(t, r.Start(ctx))
	sub2 := redis.NewClient(&redis.Options{Addr: r.Addr()}).Subscribe(ctx,
		fanout.ChannelPrefix+"pub")
	_, err = sub2.Receive(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { sub2.Close() })
	ch := sub2.Channel()
	var lastRev uint64
	for lastRev < total+21 {
		if _, err := w.submit(ctx, total+20, `{"splice": [0, 0, "!"]}`); err != nil {
			require.NoError(t, err)
		}
		deadline := time.After(5 * time.Second)
	drain:
		for {
			select {
			case msg := <-ch:
				var m struct {
					Rev uint64 `json:"rev"`
				}
				require.NoError(t, json.Unmarshal([]byte(msg.Payload), &m))
				lastRev = max(lastRev, m.Rev)
				if lastRev >= total+21 {
					break drain
				}
			case <-deadline:
				break drain
			}
		}
	}
}

// leaderAddr returns the HTTP address of member id.
func leaderAddr(t *testing.T, c *cluster.Cluster, id string) string {
	t.Helper()
	m, ok := c.Member(id)
	require.True(t, ok)
	return m.HTTP
}
