package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/text"
	"github.com/shoal-db/shoal/node"
)

// docNode is a one-node cluster with the text domain, in the test
// process, served over real HTTP so that event streams stream.
type docNode struct {
	node   *node.Node
	server *Server
	http   *httptest.Server
}

func startDocNode(t *testing.T) *docNode {
	t.Helper()
	return startDocNodeWith(t, text.Config{})
}

// startDocNodeWith starts a one-node cluster whose text domain has cfg.
func startDocNodeWith(t *testing.T, textCfg text.Config) *docNode {
	t.Helper()
	freeAddr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return l.Addr().String()
	}
	quiet := slog.New(slog.DiscardHandler)
	cfg := node.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.RaftAddr = "n1", freeAddr(), freeAddr()
	cfg.DataDir, cfg.Bootstrap, cfg.Logger = t.TempDir(), true, quiet
	cfg.Domains = map[fsm.DomainID]fsm.Domain{fsm.DomainText: text.NewDomain(textCfg)}
	n, err := node.Open(cfg)
	require.NoError(t, err)

	apiCfg := DefaultConfig()
	apiCfg.Logger = quiet
	dn := &docNode{node: n, server: New(n, apiCfg)}
	dn.http = httptest.NewUnstartedServer(dn.server.Handler())
	dn.http.Config.RegisterOnShutdown(dn.server.CloseStreams)
	dn.http.Start()
	t.Cleanup(func() {
		dn.server.CloseStreams()
		dn.http.Close()
		_ = n.Close()
	})

	deadline := time.Now().Add(time.Minute)
	for {
		_, err := fsm.LookupMember(n.State(), "n1")
		if n.IsLeader() && err == nil {
			return dn
		}
		require.True(t, time.Now().Before(deadline), "the one-node cluster did not elect itself")
		time.Sleep(10 * time.Millisecond)
	}
}

// do sends a request and returns the status and body.
func (dn *docNode) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, dn.http.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// submit posts an op that must be accepted and returns the reply.
func (dn *docNode) submit(t *testing.T, doc string, rev uint64, client string, seq uint64,
	op string) submitDocReply {
	t.Helper()
	status, raw := dn.do(t, http.MethodPost, "/v1/docs/"+doc+"/ops",
		fmt.Sprintf(`{"rev": %d, "client": %q, "seq": %d, "op": %s}`, rev, client, seq, op))
	require.Equal(t, http.StatusOK, status, string(raw))
	var reply submitDocReply
	require.NoError(t, json.Unmarshal(raw, &reply))
	return reply
}

type docReply struct {
	ID    string `json:"id"`
	Text  string `json:"text"`
	Rev   uint64 `json:"rev"`
	Index uint64 `json:"index"`
}

func (dn *docNode) get(t *testing.T, doc string) docReply {
	t.Helper()
	status, raw := dn.do(t, http.MethodGet, "/v1/docs/"+doc, "")
	require.Equal(t, http.StatusOK, status, string(raw))
	var reply docReply
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&reply))
	return reply
}

// opsJSON returns a document's whole op log as the API lists it.
func (dn *docNode) opsJSON(t *testing.T, doc string) string {
	t.Helper()
	status, raw := dn.do(t, http.MethodGet, "/v1/docs/"+doc+"/ops", "")
	require.Equal(t, http.StatusOK, status, string(raw))
	return string(raw)
}

func (dn *docNode) digest(t *testing.T) string {
	t.Helper()
	status, raw := dn.do(t, http.MethodGet, "/v1/debug/digest", "")
	require.Equal(t, http.StatusOK, status)
	var body struct {
		Digest string `json:"digest"`
	}
	require.NoError(t, json.Unmarshal(raw, &body))
	return body.Digest
}

func TestDocSubmitAndRead(t *testing.T) {
	dn := startDocNode(t)

	status, raw := dn.do(t, http.MethodGet, "/v1/docs/notes", "")
	require.Equal(t, http.StatusNotFound, status, string(raw))
	require.Contains(t, string(raw), `"not_found"`)
	status, _ = dn.do(t, http.MethodGet, "/v1/docs/notes/ops", "")
	require.Equal(t, http.StatusNotFound, status)

	first := dn.submit(t, "notes", 0, "c1", 1, `["héllo"]`)
	require.Equal(t, uint64(1), first.Rev)
	require.JSONEq(t, `["héllo"]`, string(first.Op))
	require.NotZero(t, first.Index)

	// A concurrent edit against revision 0 is transformed; a splice
	// against revision 1 too.
	second := dn.submit(t, "notes", 0, "c2", 1, `["¡"]`)
	require.Equal(t, uint64(2), second.Rev)
	require.JSONEq(t, `["¡", 5]`, string(second.Op))
	third := dn.submit(t, "notes", 1, "c1", 2, `{"splice": [5, 0, " 👋"]}`)
	require.JSONEq(t, `[6, " 👋"]`, string(third.Op))

	// A resend gets the first answer.
	again := dn.submit(t, "notes", 1, "c1", 2, `{"splice": [5, 0, " 👋"]}`)
	require.Equal(t, third.Rev, again.Rev)
	require.JSONEq(t, string(third.Op), string(again.Op))

	doc := dn.get(t, "notes")
	require.Equal(t, docReply{ID: "notes", Text: "¡héllo 👋", Rev: 3, Index: doc.Index}, doc)
	require.GreaterOrEqual(t, doc.Index, third.Index)

	status, raw = dn.do(t, http.MethodGet, fmt.Sprintf(
		"/v1/docs/notes?consistency=strong&min_index=%d", third.Index), "")
	require.Equal(t, http.StatusOK, status, string(raw))

	// The log, paged.
	var page struct {
		Ops []struct {
			Rev    uint64          `json:"rev"`
			Op     json.RawMessage `json:"op"`
			Client string          `json:"client"`
			Seq    uint64          `json:"seq"`
			Time   time.Time       `json:"time"`
		} `json:"ops"`
		Rev uint64 `json:"rev"`
	}
	readPage := func(query string) {
		t.Helper()
		status, raw := dn.do(t, http.MethodGet, "/v1/docs/notes/ops"+query, "")
		require.Equal(t, http.StatusOK, status, string(raw))
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		page.Ops = nil
		require.NoError(t, dec.Decode(&page))
	}
	readPage("")
	require.Len(t, page.Ops, 3)
	require.Equal(t, uint64(3), page.Rev)
	require.Equal(t, "c2", page.Ops[1].Client)
	require.Equal(t, uint64(1), page.Ops[1].Seq)
	require.WithinDuration(t, time.Now(), page.Ops[1].Time, time.Hour)
	readPage("?from=1&limit=1")
	require.Len(t, page.Ops, 1)
	require.Equal(t, uint64(2), page.Ops[0].Rev)
	readPage("?from=3")
	require.Empty(t, page.Ops)
	require.Equal(t, uint64(3), page.Rev)
	readPage("?from=99&limit=10000")
	require.Empty(t, page.Ops)
}

// TestDocBadInputChangesNothing sends the document endpoints malformed
// JSON, wrong types, unknown fields, negative numbers, bad ids and ops
// that do not fit: each is a 4xx in the JSON error shape and the state
// digest does not move.
func TestDocBadInputChangesNothing(t *testing.T) {
	dn := startDocNode(t)
	dn.submit(t, "d", 0, "c", 1, `["hello"]`)
	body := func(rev, client, seq, op string) string {
		return fmt.Sprintf(`{"rev": %s, "client": %s, "seq": %s, "op": %s}`, rev, client, seq,
			op)
	}
	ok := body("1", `"c"`, "2", `[5, "!"]`)
	longID := strings.Repeat("x", 257)

	for i, tc := range []struct {
		method, path, body string
		want               int
		message            string
	}{
		{"POST", "/v1/docs/d/ops", `{"rev": 1`, 400, "bad JSON"},
		{"POST", "/v1/docs/d/ops", ``, 400, "empty"},
		{"POST", "/v1/docs/d/ops", `[]`, 400, ""},
		{"POST", "/v1/docs/d/ops", ok + ` {}`, 400, "after the object"},
		{"POST", "/v1/docs/d/ops", "{\"rev\": 1, \"client\": \"c\xff\", \"seq\": 2, " +
			"\"op\": [5]}", 400, "UTF-8"},
		{"POST", "/v1/docs/d/ops", "{\"rev\": 1, \"client\": \"c\", \"seq\": 2, " +
			"\"op\": [5, \"\xc3\"]}", 400, "UTF-8"},
		{"POST", "/v1/docs/d/ops", body(`"1"`, `"c"`, "2", `[5]`), 400, "rev"},
		{"POST", "/v1/docs/d/ops", body("-1", `"c"`, "2", `[5]`), 400, "rev"},
		{"POST", "/v1/docs/d/ops", body("1.5", `"c"`, "2", `[5]`), 400, "rev"},
		{"POST", "/v1/docs/d/ops", body("1", `7`, "2", `[5]`), 400, "client"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "-2", `[5]`), 400, "seq"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "0", `[5]`), 400, "seq"},
		{"POST", "/v1/docs/d/ops", body("1", `""`, "2", `[5]`), 400, "client id is empty"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `null`), 400, "required"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `"hi"`), 400, "an edit must be"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `[5, "\udc00"]`), 400, "surrogate"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `[5, 0]`), 400, "length"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `{"splice": [1, 1]}`), 400, "splice"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `{"splice": [1, 1, "x"], "y": 1}`),
			400, "splice"},
		{"POST", "/v1/docs/d/ops", `{"rev": 1, "client": "c", "seq": 2}`, 400, "op"},
		{"POST", "/v1/docs/d/ops", `{"client": "c", "seq": 2, "op": [5]}`, 400, "rev"},
		{"POST", "/v1/docs/d/ops", `{"rev": 1, "seq": 2, "op": [5]}`, 400, "client"},
		{"POST", "/v1/docs/d/ops", `{"rev": 1, "client": "c", "op": [5]}`, 400, "seq"},
		{"POST", "/v1/docs/d/ops", `{"rev": 1, "client": "c", "seq": 2, "op": [5], "x": 1}`,
			400, "unknown field"},
		// Ops that do not fit the document at their revision.
		// Ops that do not fit the document at their revision: the state
		// machine rejects them (applied index aside, nothing changes).
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `[4, "!"]`), 400,
			"expects a document of 4 code points"},
		{"POST", "/v1/docs/d/ops", body("1", `"c"`, "2", `{"splice": [9, 0, "!"]}`), 400,
			"has 5 code points"},
		{"POST", "/v1/docs/d/ops", body("2", `"c"`, "2", `[5, "!"]`), 409, "ahead"},
		{"POST", "/v1/docs/new/ops", body("1", `"c"`, "1", `["x"]`), 409, "ahead"},
		// Bad ids.
		{"POST", "/v1/docs/" + longID + "/ops", ok, 400, "at most 256"},
		{"POST", "/v1/docs/a%2Fb/ops", ok, 400, "'/'"},
		{"POST", "/v1/docs/a%00b/ops", ok, 400, "control"},
		{"POST", "/v1/docs/a%FFb/ops", ok, 400, "UTF-8"},
		{"GET", "/v1/docs/a%2Fb", ``, 400, "'/'"},
		{"GET", "/v1/docs/" + longID + "/ops", ``, 400, "at most 256"},
		{"GET", "/v1/docs/a%0Ab/events", ``, 400, "control"},
		// Bad read parameters.
		{"GET", "/v1/docs/d?consistency=bogus", ``, 400, "consistency"},
		{"GET", "/v1/docs/d?min_index=-1", ``, 400, "min_index"},
		{"GET", "/v1/docs/d/ops?from=-1", ``, 400, "from"},
		{"GET", "/v1/docs/d/ops?from=x", ``, 400, "from"},
		{"GET", "/v1/docs/d/ops?limit=0", ``, 400, "limit"},
		{"GET", "/v1/docs/d/ops?limit=-5", ``, 400, "limit"},
		{"GET", "/v1/docs/d/ops?limit=ten", ``, 400, "limit"},
		{"GET", "/v1/docs/d/events?from=-1", ``, 400, "from"},
		{"GET", "/v1/docs/nothing", ``, 404, "no ops"},
		{"PUT", "/v1/docs/d", `{}`, 405, ""},
		{"DELETE", "/v1/docs/d/ops", ``, 405, ""},
	} {
		name := fmt.Sprintf("#%d %s %s %.80q", i, tc.method, tc.path, tc.body)
		before, beforeOps := dn.digest(t), dn.opsJSON(t, "d")
		status, raw := dn.do(t, tc.method, tc.path, tc.body)
		require.Equal(t, tc.want, status, "%s: %s", name, raw)
		var reply struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(raw, &reply), "%s: %s", name, raw)
		require.NotEmpty(t, reply.Error.Code, name)
		require.Contains(t, reply.Error.Message, tc.message, name)
		require.Equal(t, beforeOps, dn.opsJSON(t, "d"), "%s changed the document", name)
		if !strings.Contains(reply.Error.Message, "code points") &&
			!strings.Contains(reply.Error.Message, "ahead") {
			require.Equal(t, before, dn.digest(t), "%s changed the state", name)
		}
	}
	_, err := text.Head(dn.node.State(), "new")
	require.Error(t, err, "a rejected first op created a document")

	// A bad Last-Event-ID is rejected too.
	req, _ := http.NewRequest(http.MethodGet, dn.http.URL+"/v1/docs/d/events", nil)
	req.Header.Set("Last-Event-ID", "seven")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "hello", dn.get(t, "d").Text)
}

// sseClient reads one event stream.
type sseClient struct {
	resp   *http.Response
	reader *bufio.Reader
	cancel context.CancelFunc
}

type sseEvent struct {
	id       uint64
	rev      uint64
	op       text.Op
	client   string
	comments []string
}

func openStream(t *testing.T, url string, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &sseClient{resp: resp, reader: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sseClient) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next op event, with the comments before it.
func (s *sseClient) next() (sseEvent, error) {
	var ev sseEvent
	var data string
	for {
		line, err := s.reader.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != "":
			var body struct {
				Rev    uint64  `json:"rev"`
				Op     text.Op `json:"op"`
				Client string  `json:"client"`
			}
			if err := json.Unmarshal([]byte(data), &body); err != nil {
				return ev, err
			}
			ev.rev, ev.op, ev.client = body.Rev, body.Op, body.Client
			return ev, nil
		case strings.HasPrefix(line, ": "):
			ev.comments = append(ev.comments, line[2:])
		case strings.HasPrefix(line, "id: "):
			ev.id, err = strconv.ParseUint(line[4:], 10, 64)
			if err != nil {
				return ev, err
			}
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

func TestDocEvents(t *testing.T) {
	heartbeat := sseHeartbeat
	sseHeartbeat = 50 * time.Millisecond
	t.Cleanup(func() { sseHeartbeat = heartbeat })

	dn := startDocNode(t)
	dn.submit(t, "d", 0, "c1", 1, `["ab"]`)
	dn.submit(t, "d", 1, "c1", 2, `[2, "c"]`)

	// From revision 0: the log, then live ops, of this document only.
	from0 := openStream(t, dn.http.URL+"/v1/docs/d/events?from=0", "")
	// Without a revision: live ops only. Last-Event-ID wins over from.
	live := openStream(t, dn.http.URL+"/v1/docs/d/events", "")
	resumed := openStream(t, dn.http.URL+"/v1/docs/d/events?from=0", "1")
	// A document that does not exist yet streams from its first op.
	future := openStream(t, dn.http.URL+"/v1/docs/later/events", "")

	dn.submit(t, "other", 0, "c9", 1, `["zzz"]`)
	dn.submit(t, "d", 1, "c2", 1, `["X", 2]`)
	dn.submit(t, "later", 0, "c3", 1, `["first"]`)

	rebuild := func(s *sseClient, base string, n int) (string, []uint64) {
		t.Helper()
		var revs []uint64
		for range n {
			ev, err := s.next()
			require.NoError(t, err)
			require.Equal(t, ev.id, ev.rev)
			revs = append(revs, ev.rev)
			base, err = text.Apply(base, ev.op)
			require.NoError(t, err)
		}
		return base, revs
	}
	got, revs := rebuild(from0, "", 3)
	require.Equal(t, "Xabc", got)
	require.Equal(t, []uint64{1, 2, 3}, revs)
	got, revs = rebuild(resumed, "ab", 2)
	require.Equal(t, "Xabc", got)
	require.Equal(t, []uint64{2, 3}, revs)
	got, revs = rebuild(live, "abc", 1)
	require.Equal(t, "Xabc", got)
	require.Equal(t, []uint64{3}, revs)
	got, _ = rebuild(future, "", 1)
	require.Equal(t, "first", got)

	// Idle streams get heartbeats.
	go func() {
		time.Sleep(300 * time.Millisecond)
		dn.submit(t, "d", 3, "c1", 3, `[4, "!"]`)
	}()
	ev, err := live.next()
	require.NoError(t, err)
	require.Equal(t, uint64(4), ev.rev)
	require.Contains(t, ev.comments, "heartbeat")

	// Shutting down ends the streams cleanly, after what they had.
	dn.server.CloseStreams()
	ev, err = from0.next()
	require.NoError(t, err)
	require.Equal(t, uint64(4), ev.rev)
	_, err = from0.next()
	require.ErrorIs(t, err, io.EOF)
	status, _ := dn.do(t, http.MethodGet, "/v1/docs/d/events", "")
	require.Equal(t, http.StatusServiceUnavailable, status)
}

// TestDocEventsCatchUpAfterDrop makes the node drop a stream's
// subscription over and over (a buffer of one event while many commit in
// a batch) and checks that the stream still carries every op exactly
// once, in order.
func TestDocEventsCatchUpAfterDrop(t *testing.T) {
	buffer := sseBuffer
	sseBuffer = 1
	t.Cleanup(func() { sseBuffer = buffer })

	dn := startDocNode(t)
	dn.submit(t, "d", 0, "w0", 1, `["."]`)
	stream := openStream(t, dn.http.URL+"/v1/docs/d/events?from=0", "")

	// Writers type concurrently, each against the last revision it knows,
	// so commits come in batches and edits get transformed.
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			client := fmt.Sprintf("w%d", w+1)
			rev := uint64(1)
			length := 1
			for seq := uint64(1); seq <= each; seq++ {
				status, raw := dn.do(t, http.MethodPost, "/v1/docs/d/ops", fmt.Sprintf(
					`{"rev": %d, "client": %q, "seq": %d, "op": {"splice": [%d, 0, "x"]}}`,
					rev, client, seq, length))
				if status != http.StatusOK {
					t.Errorf("%s: %d %s", client, status, raw)
					return
				}
				var reply submitDocReply
				_ = json.Unmarshal(raw, &reply)
				rev = reply.Rev
				length = int(rev) // every op inserts one code point
			}
		})
	}
	wg.Wait()

	want := dn.get(t, "d")
	got := ""
	for rev := uint64(1); rev <= want.Rev; rev++ {
		ev, err := stream.next()
		require.NoError(t, err)
		require.Equal(t, rev, ev.rev, "events out of order or repeated")
		got, err = text.Apply(got, ev.op)
		require.NoError(t, err)
	}
	require.Equal(t, want.Text, got)
	require.Equal(t, uint64(writers*each+1), want.Rev)
}

// pruneDoc submits edits of document doc until its op log no longer holds
// the ops after revision 1, and returns the revision the log starts
// after, as the 410 reply names it, and the document's revision.
func pruneDoc(t *testing.T, dn *docNode, doc string) (floor, rev uint64) {
	t.Helper()
	dn.submit(t, doc, 0, "w", 1, `["start"]`)
	rev = 1
	// Long inserts, so that snapshots come every few ops.
	line := strings.Repeat("0123456789", 30)
	for text.CheckFrom(dn.node.State(), doc, 1) == nil {
		require.Less(t, rev, uint64(2000), "the log was never pruned")
		reply := dn.submit(t, doc, rev, "w", rev+1,
			fmt.Sprintf(`{"splice": [0, %d, %q]}`, min(rev, 300), line))
		rev = reply.Rev
	}

	status, raw := dn.do(t, http.MethodGet, "/v1/docs/"+doc+"/ops?from=0", "")
	require.Equal(t, http.StatusGone, status, string(raw))
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(raw, &body))
	require.Equal(t, text.CodeHistoryTruncated, body.Error.Code)
	_, err := fmt.Sscanf(body.Error.Message[strings.Index(body.Error.Message, "starts after"):],
		"starts after revision %d", &floor)
	require.NoError(t, err, body.Error.Message)
	require.Greater(t, floor, uint64(1))
	return floor, rev
}

// TestDocReadsBelowThePrunedFloor checks every reader of old revisions
// once the log is pruned: GET .../ops and event streams below the floor
// get 410 history_truncated, at and above it they work, and the text is
// whole.
func TestDocReadsBelowThePrunedFloor(t *testing.T) {
	dn := startDocNodeWith(t, text.Config{MaxBehind: 5})
	floor, rev := pruneDoc(t, dn, "d")
	require.Less(t, floor, rev)

	// The ops from the floor on are all there.
	status, raw := dn.do(t, http.MethodGet,
		fmt.Sprintf("/v1/docs/d/ops?from=%d&limit=10000", floor), "")
	require.Equal(t, http.StatusOK, status, string(raw))
	var list struct {
		Ops []struct {
			Rev uint64 `json:"rev"`
		} `json:"ops"`
		Rev uint64 `json:"rev"`
	}
	require.NoError(t, json.Unmarshal(raw, &list))
	require.Equal(t, rev, list.Rev)
	require.Len(t, list.Ops, int(rev-floor))
	require.Equal(t, floor+1, list.Ops[0].Rev)
	status, raw = dn.do(t, http.MethodGet, fmt.Sprintf("/v1/docs/d/ops?from=%d", floor-1), "")
	require.Equal(t, http.StatusGone, status, string(raw))
	require.Contains(t, string(raw), `"code":"history_truncated"`)

	// A stream that resumes below the floor is refused the same way,
	// with Last-Event-ID or from.
	for _, header := range []string{"Last-Event-ID", ""} {
		req, err := http.NewRequest(http.MethodGet,
			fmt.Sprintf("%s/v1/docs/d/events?from=%d", dn.http.URL, floor-1), nil)
		require.NoError(t, err)
		if header != "" {
			req.URL.RawQuery = ""
			req.Header.Set(header, strconv.FormatUint(floor-1, 10))
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusGone, resp.StatusCode, string(raw))
		require.Contains(t, string(raw), `"code":"history_truncated"`)
	}

	// One from the floor streams the rest, and the text is exact.
	stream := openStream(t, fmt.Sprintf("%s/v1/docs/d/events?from=%d", dn.http.URL, floor), "")
	ev, err := stream.next()
	require.NoError(t, err)
	require.Equal(t, floor+1, ev.rev)
	doc := dn.get(t, "d")
	require.Equal(t, rev, doc.Rev)
	require.True(t, strings.HasPrefix(doc.Text, strings.Repeat("0123456789", 30)))
}

// TestDocStreamThatFallsBelowTheFloorSaysSo runs the catch-up step of a
// stream whose last revision sent the log no longer holds, as for a
// stream that fell that far behind: it sends an error event the client
// can act on and ends.
func TestDocStreamThatFallsBelowTheFloorSaysSo(t *testing.T) {
	dn := startDocNodeWith(t, text.Config{MaxBehind: 5})
	floor, _ := pruneDoc(t, dn, "d")

	rec := httptest.NewRecorder()
	stream := &eventStream{w: rec, rc: http.NewResponseController(rec), sent: floor - 1}
	err := dn.server.sendLogged(stream, "d")
	var fe *fsm.Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, text.CodeHistoryTruncated, fe.Code)

	body := rec.Body.String()
	require.True(t, strings.HasPrefix(body, "event: error\ndata: "), body)
	require.True(t, strings.HasSuffix(body, "\n\n"), body)
	var data struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(
		strings.TrimPrefix(body, "event: error\ndata: "))), &data))
	require.Equal(t, text.CodeHistoryTruncated, data.Error.Code)
	require.Contains(t, data.Error.Message, fmt.Sprintf("starts after revision %d", floor))
	require.Equal(t, uint64(floor-1), stream.sent, "nothing was sent past the gap")
}
