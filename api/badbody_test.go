package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/api"
	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/comments"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/fsm/text"
	"github.com/shoal-db/shoal/internal/nodetest"
	"github.com/shoal-db/shoal/node"
)

// bodyTimeout is the API's BodyReadTimeout in these tests: short, so that a
// stalled body is answered soon; only the answer is checked, not when.
const bodyTimeout = 300 * time.Millisecond

// servedNode is an in-process member with every domain, its API behind a
// real HTTP server on the node's HTTP address.
type servedNode struct {
	*inputNode
	addr string
}

// startServedNode opens a member with id, bootstrapping a cluster when join
// is empty and joining the member at join otherwise, and serves its API
// with cfg. Everything stops when the test ends.
func startServedNode(t *testing.T, id, join string, cfg api.Config) *servedNode {
	t.Helper()
	httpListener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	raftListener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	raftAddr := raftListener.Addr().String()
	require.NoError(t, raftListener.Close())

	nodeCfg := node.DefaultConfig()
	nodeCfg.ID, nodeCfg.HTTPAddr, nodeCfg.RaftAddr = id, httpListener.Addr().String(), raftAddr
	nodeCfg.DataDir, nodeCfg.Logger = t.TempDir(), quietLogger
	nodeCfg.Bootstrap, nodeCfg.Join = join == "", join
	nodeCfg.Domains = map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks:   stocks.Domain{},
		fsm.DomainText:     text.NewDomain(text.Config{}),
		fsm.DomainComments: comments.New(),
	}
	n, err := node.Open(nodeCfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })

	cfg.Logger = quietLogger
	handler := api.New(n, cfg).Handler()
	server := httptest.NewUnstartedServer(handler)
	_ = server.Listener.Close()
	server.Listener = httpListener
	server.Start()
	t.Cleanup(server.Close)
	return &servedNode{inputNode: &inputNode{node: n, handler: handler},
		addr: httpListener.Addr().String()}
}

// waitFor polls cond until it holds; only a bug keeps it false for a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawReply is what a server answered to a request sent over a raw
// connection, and whether it closed the connection afterwards.
type rawReply struct {
	status int
	header http.Header
	body   []byte
	closed bool
}

// sendRaw writes head and body to a new connection to addr, half-closes it
// if closeWrite is set, and reads the reply; the connection stays open
// otherwise, so that a body shorter than its Content-Length stalls.
func sendRaw(t *testing.T, addr, head, body string, closeWrite bool) rawReply {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	// A bound on the whole exchange that only a hang reaches.
	require.NoError(t, conn.SetDeadline(time.Now().Add(time.Minute)))
	_, err = io.WriteString(conn, head+"\r\n"+body)
	require.NoError(t, err)
	if closeWrite {
		require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	}

	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "no reply to %q", head)
	reply := rawReply{status: resp.StatusCode, header: resp.Header}
	reply.body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	_, err = br.ReadByte()
	reply.closed = err == io.EOF
	return reply
}

// brokenBodies are request bodies the server cannot read: a chunked body
// with a bad chunk length, and one shorter than its Content-Length or cut
// off inside its chunks, whose sender then half-closes the connection.
var brokenBodies = []struct {
	name         string
	header, body string
	closeWrite   bool
}{
	{"bad chunk", "Transfer-Encoding: chunked\r\n", "zz\r\n", false},
	{"short body", "Content-Length: 100\r\n", `{"price":`, true},
	{"cut chunked body", "Transfer-Encoding: chunked\r\n", "9\r\n{\"price\":", true},
}

// requireRawRejected checks that reply is status in the API's JSON error
// shape with code and a message about the request body, and that the
// server closed the connection.
func requireRawRejected(t *testing.T, reply rawReply, status int, code, what string) {
	t.Helper()
	require.Equal(t, status, reply.status, "%s: %s", what, reply.body)
	var body struct {
		Error struct{ Code, Message string }
	}
	require.NoError(t, json.Unmarshal(reply.body, &body), "%s: %s", what, reply.body)
	require.Equal(t, code, body.Error.Code, "%s: %s", what, reply.body)
	require.Contains(t, body.Error.Message, "request body", what)
	require.Empty(t, reply.header.Get("Retry-After"), what)
	require.True(t, reply.closed, "%s: the connection stayed open", what)
}

// TestBrokenBodiesAreClientErrors sends every route that reads a body a
// badly chunked body and a body cut short, over a raw connection to a
// real server: each is a 400 invalid_argument (not a 500), the connection
// is closed, and the node's applied index and state are unchanged.
func TestBrokenBodiesAreClientErrors(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{Domains: map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks:   stocks.Domain{},
		fsm.DomainText:     text.NewDomain(text.Config{}),
		fsm.DomainComments: comments.New(),
	}})
	in := &inputNode{node: server.Node, handler: server.Handler}
	rec := in.do("POST", "/v1/threads/t/comments", []byte(`{"author": "ann", "body": "b"}`),
		nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var comment struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &comment))

	for _, route := range []string{
		"PUT /v1/stocks/AAPL",
		"POST /v1/docs/d/ops",
		"POST /v1/threads/t/comments",
		"PATCH /v1/comments/" + comment.ID,
		"DELETE /v1/comments/" + comment.ID + "?author=ann",
		"POST /v1/comments/" + comment.ID + "/votes",
		"POST /v1/comments/" + comment.ID + "/likes",
		"POST /v1/cluster/nodes",
		"POST /v1/cluster/leader",
	} {
		for _, broken := range brokenBodies {
			what := route + " with a " + broken.name
			index, digest := in.state(t)
			head := route + " HTTP/1.1\r\nHost: shoal\r\n" + broken.header
			reply := sendRaw(t, server.Addr, head, broken.body, broken.closeWrite)
			requireRawRejected(t, reply, http.StatusBadRequest, fsm.CodeInvalid, what)
			afterIndex, afterDigest := in.state(t)
			require.Equal(t, index, afterIndex, "%s changed the applied index", what)
			require.Equal(t, digest, afterDigest, "%s changed the state", what)
		}
	}
}

// TestBrokenBodiesToAFollowerAreClientErrors sends the leader-only routes
// of a follower, which relays them to the leader, broken and stalled
// bodies: a 400 or a 408 from the follower, not a 503 no_leader as if the
// leader were gone, and nothing changes. A good request through the same
// follower still reaches the leader.
func TestBrokenBodiesToAFollowerAreClientErrors(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.BodyReadTimeout = bodyTimeout
	leader := startServedNode(t, "n1", "", cfg)
	waitFor(t, "n1 leads", func() bool {
		_, err := fsm.LookupMember(leader.node.State(), "n1")
		return leader.node.IsLeader() && err == nil
	})
	follower := startServedNode(t, "n2", leader.addr, cfg)
	// Settled: n2 is a member, knows where n1 serves, and has caught up.
	waitFor(t, "n2 follows n1", func() bool {
		_, addr, err := follower.node.LeaderHTTP()
		_, memberErr := fsm.LookupMember(leader.node.State(), "n2")
		return err == nil && addr == leader.addr && memberErr == nil &&
			follower.node.AppliedIndex() == leader.node.AppliedIndex()
	})

	for _, route := range []string{"POST /v1/cluster/nodes", "POST /v1/cluster/leader"} {
		head := route + " HTTP/1.1\r\nHost: shoal\r\n"
		for _, broken := range brokenBodies {
			what := route + " to the follower with a " + broken.name
			index, digest := leader.state(t)
			reply := sendRaw(t, follower.addr, head+broken.header, broken.body,
				broken.closeWrite)
			requireRawRejected(t, reply, http.StatusBadRequest, fsm.CodeInvalid, what)
			require.Equal(t, "n2", reply.header.Get(api.HeaderNode), what)
			afterIndex, afterDigest := leader.state(t)
			require.Equal(t, index, afterIndex, "%s changed the applied index", what)
			require.Equal(t, digest, afterDigest, "%s changed the state", what)
		}

		what := route + " to the follower with a stalled body"
		index, digest := leader.state(t)
		reply := sendRaw(t, follower.addr, head+"Content-Length: 100\r\n", `{"id": "n`, false)
		requireRawRejected(t, reply, http.StatusRequestTimeout, "request_timeout", what)
		afterIndex, afterDigest := leader.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", what)
		require.Equal(t, digest, afterDigest, "%s changed the state", what)
	}

	// The follower relays a readable body to the leader, which answers.
	resp, err := http.Post("http://"+follower.addr+"/v1/cluster/leader", "application/json",
		strings.NewReader(`{"id": "n1"}`))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), `"leader":"n1"`)
}

// TestStalledBodyTimesOut sends bodies that stop arriving, 9 of 100 bytes
// with the connection left open: each is answered 408 request_timeout and
// the connection is closed, and nothing changes. An event stream opened
// before them outlives the body timeout and still delivers.
func TestStalledBodyTimesOut(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.BodyReadTimeout = bodyTimeout
	n := startServedNode(t, "n1", "", cfg)
	waitFor(t, "n1 leads", func() bool {
		_, err := fsm.LookupMember(n.node.State(), "n1")
		return n.node.IsLeader() && err == nil
	})
	rec := n.do("POST", "/v1/docs/d/ops", []byte(`{"rev": 0, "client": "c", "seq": 1, `+
		`"op": ["a"]}`), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	stream, err := http.Get("http://" + n.addr + "/v1/docs/d/events?from=1")
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, http.StatusOK, stream.StatusCode)
	events := bufio.NewReader(stream.Body)

	for _, route := range []string{"PUT /v1/stocks/AAPL", "POST /v1/docs/d/ops",
		"POST /v1/threads/t/comments"} {
		what := route + " with a stalled body"
		index, digest := n.state(t)
		head := route + " HTTP/1.1\r\nHost: shoal\r\nContent-Length: 100\r\n"
		reply := sendRaw(t, n.addr, head, `{"price":`, false)
		requireRawRejected(t, reply, http.StatusRequestTimeout, "request_timeout", what)
		afterIndex, afterDigest := n.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", what)
		require.Equal(t, digest, afterDigest, "%s changed the state", what)
	}

	rec = n.do("POST", "/v1/docs/d/ops", []byte(`{"rev": 1, "client": "c", "seq": 2, `+
		`"op": [1, "b"]}`), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	for {
		line, err := events.ReadString('\n')
		require.NoError(t, err, "the event stream ended")
		if line == "id: 2\n" {
			break
		}
	}
}

// TestIdentifiersAndBodiesAreCheckedConsistently covers what the checks of
// names, bodies and headers must agree on: control characters in thread
// names, authors, users and member ids, an empty parent, a doc ops limit
// out of range, a body that is not an object, a compressed body and a
// repeated X-Shoal-User. Each is a 4xx that says what is wrong and changes
// nothing; the same requests without the fault succeed.
func TestIdentifiersAndBodiesAreCheckedConsistently(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{Domains: map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks:   stocks.Domain{},
		fsm.DomainText:     text.NewDomain(text.Config{}),
		fsm.DomainComments: comments.New(),
	}})
	in := &inputNode{node: server.Node, handler: server.Handler}
	rec := in.do("POST", "/v1/docs/d/ops", []byte(`{"rev": 0, "client": "c", "seq": 1, `+
		`"op": ["a"]}`), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = in.do("POST", "/v1/threads/t/comments", []byte(`{"author": "ann", "body": "b"}`),
		nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var comment struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &comment))
	commentPath := "/v1/comments/" + comment.ID
	gzip := http.Header{"Content-Encoding": {"gzip"}}
	twoUsers := http.Header{api.HeaderUser: {"ann", "bob"}}
	twoKeys := http.Header{api.HeaderIdempotencyKey: {"k2", "k3"}}
	// What net/http makes of a header sent as "Name: ".
	emptyKey := http.Header{api.HeaderIdempotencyKey: {""}}
	emptyUser := http.Header{api.HeaderUser: {""}}

	for i, tc := range []struct {
		method, path, body string
		header             http.Header
		want               int
		says               string // in the message
	}{
		{"POST", "/v1/threads/%00/comments", `{"author": "ann", "body": "b"}`, nil, 400,
			"control character"},
		{"POST", "/v1/threads/t%0Ax/comments", `{"author": "ann", "body": "b"}`, nil, 400,
			"control character"},
		{"POST", "/v1/threads/t/comments", `{"author": "ann\u0000", "body": "b"}`, nil, 400,
			"control character"},
		{"POST", "/v1/threads/t/comments", `{"author": "ann\u0085", "body": "b"}`, nil, 400,
			"control character"},
		{"PATCH", commentPath, `{"author": "ann\u001b", "body": "b"}`, nil, 400,
			"control character"},
		{"DELETE", commentPath, `{"author": "ann\u007f"}`, nil, 400, "control character"},
		{"POST", commentPath + "/votes", `{"user": "u\u0007", "vote": "up"}`, nil, 400,
			"control character"},
		{"POST", commentPath + "/likes", `{"user": "u\t", "like": true}`, nil, 400,
			"control character"},
		{"POST", "/v1/cluster/nodes", `{"id": "n\u00002", "http": "127.0.0.1:1", ` +
			`"raft": "127.0.0.1:2"}`, nil, 400, "control characters"},
		{"POST", "/v1/docs/%00/ops", `{"rev": 1, "client": "c", "seq": 2, "op": [1]}`, nil,
			400, "control character"},

		{"POST", "/v1/threads/t/comments", `{"parent": "", "author": "ann", "body": "b"}`,
			nil, 400, "leave it out"},

		{"GET", "/v1/docs/d/ops?limit=1000000", ``, nil, 400, "from 1 to 10000"},
		{"GET", "/v1/docs/d/ops?limit=10001", ``, nil, 400, "from 1 to 10000"},
		{"GET", "/v1/docs/d/ops?limit=0", ``, nil, 400, "from 1 to 10000"},

		{"PUT", "/v1/stocks/AAPL", `[]`, nil, 400, "request body must be a JSON object"},
		{"PUT", "/v1/stocks/AAPL", `null`, nil, 400, "request body must be a JSON object"},
		{"POST", "/v1/docs/d/ops", `"op"`, nil, 400, "request body must be a JSON object"},
		{"POST", "/v1/threads/t/comments", `[{"author": "ann", "body": "b"}]`, nil, 400,
			"request body must be a JSON object"},
		{"POST", "/v1/cluster/nodes", `7`, nil, 400, "request body must be a JSON object"},
		{"POST", "/v1/cluster/leader", `[]`, nil, 400, "request body must be a JSON object"},

		{"PUT", "/v1/stocks/AAPL", `{"price": "1"}`, gzip, 415, "Content-Encoding"},
		{"POST", "/v1/threads/t/comments", `{"author": "ann", "body": "b"}`,
			http.Header{"Content-Encoding": {"br"}}, 415, "Content-Encoding"},
		{"POST", "/v1/cluster/leader", `{"id": "n1"}`, gzip, 415, "Content-Encoding"},

		{"POST", "/v1/threads/t/comments", `{"body": "b"}`, twoUsers, 400, "given 2 times"},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"}`, twoUsers, 400, "given 2 times"},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"}`, twoKeys, 400,
			"Idempotency-Key is given 2 times"},
		{"POST", "/v1/docs/d/ops", `{"rev": 1, "client": "c", "seq": 2, "op": [1, "b"]}`,
			twoKeys, 400, "Idempotency-Key is given 2 times"},
		{"POST", "/v1/threads/t/comments", `{"author": "ann", "body": "b"}`, twoKeys, 400,
			"Idempotency-Key is given 2 times"},
		{"GET", "/v1/docs/d/events", ``, http.Header{"Last-Event-Id": {"0", "1"}}, 400,
			"Last-Event-ID is given 2 times"},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"}`, emptyKey, 400,
			"Idempotency-Key must not be empty; leave the header out"},
		{"POST", commentPath + "/likes", `{"user": "bob", "like": true}`, emptyKey, 400,
			"Idempotency-Key must not be empty"},
		{"POST", "/v1/threads/t/comments", `{"author": "ann", "body": "b"}`, emptyUser, 400,
			"X-Shoal-User must not be empty; leave the header out"},
		{"PATCH", commentPath, `{"author": "ann", "body": "c"}`, emptyUser, 400,
			"X-Shoal-User must not be empty"},

		{"POST", "/v1/cluster/leader", `{"id": ""}`, nil, 400,
			"leave id out to let the cluster choose"},
	} {
		name := fmt.Sprintf("#%d %s %s %.60q", i, tc.method, tc.path, tc.body)
		index, digest := in.state(t)
		rec := in.do(tc.method, tc.path, []byte(tc.body), tc.header)
		requireRejected(t, rec, tc.want, name)
		require.Contains(t, rec.Body.String(), tc.says, name)
		require.NotContains(t, rec.Body.String(), "api.", name)
		afterIndex, afterDigest := in.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", name)
		require.Equal(t, digest, afterDigest, "%s changed the state", name)
	}

	// Without the faults, the same requests go through.
	for i, tc := range []struct {
		method, path, body string
		header             http.Header
		want               int
	}{
		{"POST", "/v1/threads/t%20x/comments", `{"author": "ann é", "body": "b"}`, nil, 201},
		{"POST", "/v1/threads/t/comments", `{"parent": "` + comment.ID +
			`", "author": "bob", "body": "b"}`, nil, 201},
		{"GET", "/v1/docs/d/ops?limit=10000", ``, nil, 200},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"}`,
			http.Header{"Content-Encoding": {"identity"}}, 200},
		{"POST", "/v1/threads/t/comments", `{"body": "b"}`,
			http.Header{api.HeaderUser: {"ann"}}, 201},
		// Content-Encoding is a list whose empty elements are ignored: an
		// empty one names no coding, like identity.
		{"PUT", "/v1/stocks/AAPL", `{"price": "2"}`,
			http.Header{"Content-Encoding": {""}}, 200},
		{"PUT", "/v1/stocks/AAPL", `{"price": "3"}`,
			http.Header{"Content-Encoding": {"identity, "}}, 200},
		{"PUT", "/v1/stocks/AAPL", `{"price": "4"}`,
			http.Header{api.HeaderIdempotencyKey: {"k2"}}, 200},
		{"GET", "/v1/docs/d/ops", ``, http.Header{"Last-Event-Id": {""}}, 200},
	} {
		rec := in.do(tc.method, tc.path, []byte(tc.body), tc.header)
		require.Equal(t, tc.want, rec.Code, "#%d %s %s: %s", i, tc.method, tc.path,
			rec.Body.String())
	}
}

// TestHeaderMistakesOverTheWire sends, over a raw connection to a real
// server, headers as a client writes them by hand: a header present with
// no value, one given twice, an empty Content-Encoding, and bodies whose
// declared Content-Length is over the limit, with and without Expect:
// 100-continue. Each mistake is a 4xx in the JSON error shape that says
// what is wrong and changes nothing; an oversize body is refused from its
// Content-Length, with no 100 Continue and without waiting for the body.
func TestHeaderMistakesOverTheWire(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{Domains: map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks:   stocks.Domain{},
		fsm.DomainText:     text.NewDomain(text.Config{}),
		fsm.DomainComments: comments.New(),
	}})
	in := &inputNode{node: server.Node, handler: server.Handler}
	rec := in.do("POST", "/v1/docs/d/ops", []byte(`{"rev": 0, "client": "c", "seq": 1, `+
		`"op": ["a"]}`), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	stock := `{"price": "1"}`
	withBody := func(body string) string {
		return fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}

	for i, tc := range []struct {
		route, header, body string
		status              int
		code, says          string
	}{
		{"PUT /v1/stocks/AAPL", "Idempotency-Key: \r\n", stock, 400, fsm.CodeInvalid,
			"Idempotency-Key must not be empty"},
		{"PUT /v1/stocks/AAPL", "Idempotency-Key:\r\n", stock, 400, fsm.CodeInvalid,
			"Idempotency-Key must not be empty"},
		{"PUT /v1/stocks/AAPL", "Idempotency-Key: k2\r\nIdempotency-Key: k3\r\n", stock, 400,
			fsm.CodeInvalid, "Idempotency-Key is given 2 times"},
		{"POST /v1/threads/t/comments", "X-Shoal-User: \r\n", `{"author": "ann", "body": "b"}`,
			400, fsm.CodeInvalid, "X-Shoal-User must not be empty"},
		{"GET /v1/docs/d/events", "Last-Event-ID: 0\r\nLast-Event-ID: 1\r\n", ``, 400,
			fsm.CodeInvalid, "Last-Event-ID is given 2 times"},
		{"POST /v1/cluster/leader", "", `{"id": ""}`, 400, fsm.CodeInvalid,
			"leave id out to let the cluster choose"},
	} {
		what := fmt.Sprintf("#%d %s %q", i, tc.route, tc.header)
		index, digest := in.state(t)
		head := tc.route + " HTTP/1.1\r\nHost: shoal\r\n" + tc.header + withBody(tc.body)
		reply := sendRaw(t, server.Addr, head, tc.body, true)
		require.Equal(t, tc.status, reply.status, "%s: %s", what, reply.body)
		var body struct {
			Error struct{ Code, Message string }
		}
		require.NoError(t, json.Unmarshal(reply.body, &body), "%s: %s", what, reply.body)
		require.Equal(t, tc.code, body.Error.Code, what)
		require.Contains(t, body.Error.Message, tc.says, what)
		afterIndex, afterDigest := in.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", what)
		require.Equal(t, digest, afterDigest, "%s changed the state", what)
	}

	// A body declared over the limit is refused before it is read: the
	// reply is the first thing the server sends, not 100 Continue, and it
	// comes although no byte of the body is sent and the connection stays
	// open (reading would wait for the body timeout instead).
	for _, route := range []string{
		"PUT /v1/stocks/AAPL",
		"POST /v1/docs/d/ops",
		"POST /v1/threads/t/comments",
		"POST /v1/cluster/nodes",
		"POST /v1/cluster/leader",
	} {
		for _, expect := range []string{"Expect: 100-continue\r\n", ""} {
			what := route + " declaring 2000000 bytes, " + expect
			index, digest := in.state(t)
			head := route + " HTTP/1.1\r\nHost: shoal\r\n" + expect +
				"Content-Length: 2000000\r\n"
			reply := sendRaw(t, server.Addr, head, "", false)
			requireRawRejected(t, reply, http.StatusRequestEntityTooLarge, fsm.CodeTooLarge,
				what)
			afterIndex, afterDigest := in.state(t)
			require.Equal(t, index, afterIndex, "%s changed the applied index", what)
			require.Equal(t, digest, afterDigest, "%s changed the state", what)
		}
	}

	// Without the faults, the same requests go through; an empty
	// Content-Encoding names no coding.
	for i, tc := range []struct{ route, header, body string }{
		{"PUT /v1/stocks/AAPL", "Idempotency-Key: k2\r\n", stock},
		{"PUT /v1/stocks/AAPL", "Content-Encoding: \r\n", `{"price": "2"}`},
		{"POST /v1/threads/t/comments", "X-Shoal-User: ann\r\n", `{"body": "b"}`},
	} {
		head := tc.route + " HTTP/1.1\r\nHost: shoal\r\n" + tc.header + withBody(tc.body)
		reply := sendRaw(t, server.Addr, head, tc.body, true)
		require.Less(t, reply.status, 300, "#%d %s %q: %s", i, tc.route, tc.header, reply.body)
	}
}

// TestRefusedBeforeBodyIsRead sends requests that are refused before their
// body is read (a bad query parameter, an unknown route, a wrong method, a
// compressed body) and holds the body back, as a client that sent
// Expect: 100-continue does. Each must be answered at once and the
// connection closed: net/http would otherwise read the rest of the body
// before replying, with no deadline, and never reply.
func TestRefusedBeforeBodyIsRead(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{Domains: map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks: stocks.Domain{},
	}})
	addr := server.Addr
	before := server.Node.AppliedIndex()

	for _, tc := range []struct {
		request, extra string
		status         int
	}{
		{"PUT /v1/stocks/X1?bogus=1", "", http.StatusBadRequest},
		{"POST /v1/nope", "", http.StatusNotFound},
		{"POST /v1/stocks/X2", "", http.StatusMethodNotAllowed},
		{"PUT /v1/stocks/X3", "Content-Encoding: gzip\r\n", http.StatusUnsupportedMediaType},
		{"PUT /v1/stocks/X4?bogus=1", "Expect: 100-continue\r\n", http.StatusBadRequest},
		{"PUT /v1/stocks/X5", "Expect: 100-continue\r\nContent-Encoding: br\r\n",
			http.StatusUnsupportedMediaType},
	} {
		head := tc.request + " HTTP/1.1\r\nHost: x\r\n" + tc.extra + "Content-Length: 13\r\n"
		reply := sendRaw(t, addr, head, "", false) // the body never comes
		require.Equal(t, tc.status, reply.status, "%s: %s", tc.request, reply.body)
		require.True(t, json.Valid(reply.body), "%s: %s", tc.request, reply.body)
		require.True(t, reply.closed, "%s: the connection stayed open", tc.request)
	}
	require.Equal(t, before, server.Node.AppliedIndex(), "a refused request changed the state")
}
