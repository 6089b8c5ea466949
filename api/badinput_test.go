package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/shoal-db/shoal/transport"
)

// inputNode is a one-node cluster running in the test process, whose HTTP
// handler is called directly. It serves the bad-input table test and the
// fuzz targets of this package.
type inputNode struct {
	node    *node.Node
	handler http.Handler
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// startInputNode bootstraps a one-node cluster in a temporary directory and
// waits until it leads and has recorded its own member address, so that
// nothing but the requests of the test changes its state afterwards.
func startInputNode(t testing.TB) *inputNode {
	t.Helper()
	freeAddr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return l.Addr().String()
	}
	cfg := node.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.RaftAddr = "n1", freeAddr(), freeAddr()
	cfg.DataDir, cfg.Bootstrap, cfg.Logger = t.TempDir(), true, quietLogger
	cfg.Domains = map[fsm.DomainID]fsm.Domain{fsm.DomainStocks: stocks.Domain{}}
	n, err := node.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })

	apiCfg := api.DefaultConfig()
	apiCfg.Logger = quietLogger
	in := &inputNode{node: n, handler: api.New(n, apiCfg).Handler()}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := fsm.LookupMember(n.State(), "n1")
		if n.IsLeader() && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster did not elect itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return in
}

// do sends one request to the node's handler.
func (in *inputNode) do(method, target string, body []byte,
	header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://shoal"+target, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	in.handler.ServeHTTP(rec, req)
	return rec
}

// serve sends req to the node's handler.
func (in *inputNode) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	in.handler.ServeHTTP(rec, req)
	return rec
}

// state returns the node's applied index and state digest.
func (in *inputNode) state(t testing.TB) (uint64, string) {
	t.Helper()
	rec := in.do(http.MethodGet, "/v1/debug/digest", nil, nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var body struct {
		Index  uint64 `json:"index"`
		Digest string `json:"digest"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	return body.Index, body.Digest
}

// requireRejected checks that a reply is a client error in the API's JSON
// error shape.
func requireRejected(t testing.TB, rec *httptest.ResponseRecorder, want int, msg string) {
	t.Helper()
	require.Equal(t, want, rec.Code, "%s: %s", msg, rec.Body.String())
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "%s: %s", msg, rec.Body)
	require.NotEmpty(t, body.Error.Code, msg)
	require.NotEmpty(t, body.Error.Message, msg)
}

// TestBadInputIsRejectedAndChangesNothing sends every public endpoint
// malformed JSON, wrong types, oversize bodies, invalid UTF-8, absurd
// numbers and unknown fields: each is a 4xx in the JSON error shape, and
// the node's applied index and state digest are the same afterwards.
func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	in := startInputNode(t)
	big := func(n int) string { return strings.Repeat("x", n) }
	oversize := `{"price": "1", "pad": "` + big(1<<20) + `"}`
	longKey := http.Header{api.HeaderIdempotencyKey: {big(129)}}

	for i, tc := range []struct {
		method, path, body string
		header             http.Header
		want               int
	}{
		// PUT /v1/stocks/{symbol}
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"} {}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", ``, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `   `, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `null`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `[]`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `"116.03"`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": null}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": true}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": {}}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": ["1"]}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1", "time": 5}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1", "time": "yesterday"}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1", "time": "0000-01-01T00:00:00Z"}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1", "time": "99999-01-01T00:00:00Z"}`, nil,
			400},
		{"PUT", "/v1/stocks/AAPL", `{"price": 1e400}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": 1E5}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": 123456789012345678901234567890}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "0.000000001"}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": -0}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": -1}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "NaN"}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "Infinity"}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "0x10"}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1", "volume": 5}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", `{"Price": "1", "extra": {}}`, nil, 400},
		{"PUT", "/v1/stocks/AAPL", "{\"price\": \"1\xff\"}", nil, 400},
		{"PUT", "/v1/stocks/AAPL", "{\"price\": \"1\", \"x\xfe\": 1}", nil, 400},
		{"PUT", "/v1/stocks/AAPL", "\xef\xbb\xbf{\"price\": \"1\"}", nil, 400},
		{"PUT", "/v1/stocks/AAPL", oversize, nil, 413},
		{"PUT", "/v1/stocks/AAPL", `{"price": "1"}`, longKey, 400},
		{"PUT", "/v1/stocks/aapl", `{"price": "1"}`, nil, 400},
		{"PUT", "/v1/stocks/TOOLONGSYMB", `{"price": "1"}`, nil, 400},
		{"PUT", "/v1/stocks/A%FFB", `{"price": "1"}`, nil, 400},
		{"PUT", "/v1/stocks/A%20B", `{"price": "1"}`, nil, 400},
		{"PATCH", "/v1/stocks/AAPL", `{"price": "1"}`, nil, 405},

		// Reads with bad parameters.
		{"GET", "/v1/stocks/AAPL?consistency=bogus", ``, nil, 400},
		{"GET", "/v1/stocks/AAPL?min_index=-1", ``, nil, 400},
		{"GET", "/v1/stocks/AAPL?min_index=1e3", ``, nil, 400},
		{"GET", "/v1/stocks/AAPL?min_index=99999999999999999999999", ``, nil, 400},
		{"GET", "/v1/stocks?consistency=%FF", ``, nil, 400},
		{"GET", "/v1/stocks/NOSUCH", ``, nil, 404},
		{"GET", "/v1/debug/digest?min_index=x", ``, nil, 400},

		// POST /v1/cluster/nodes
		{"POST", "/v1/cluster/nodes", `{"id": "n2"`, nil, 400},
		{"POST", "/v1/cluster/nodes", ``, nil, 400},
		{"POST", "/v1/cluster/nodes", `[]`, nil, 400},
		{"POST", "/v1/cluster/nodes", `{}`, nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": 2, "http": "127.0.0.1:1", "raft": "127.0.0.1:2"}`,
			nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "http": 8082, "raft": "127.0.0.1:2"}`, nil,
			400},
		{"POST", "/v1/cluster/nodes", `{"id": "n 2", "http": "127.0.0.1:1", "raft": "127.0.0.1:2"}`,
			nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "a/b", "http": "127.0.0.1:1", "raft": "127.0.0.1:2"}`,
			nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "` + big(65) + `", "http": "127.0.0.1:1", ` +
			`"raft": "127.0.0.1:2"}`, nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "http": "nowhere", "raft": "127.0.0.1:2"}`,
			nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "http": "127.0.0.1:1", "raft": "h:99999"}`,
			nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "http": "https://h:1", "raft": "h:2"}`, nil,
			400},
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "http": "h:1", "raft": "h:2", "port": 1}`,
			nil, 400},
		{"POST", "/v1/cluster/nodes", "{\"id\": \"n\xff\", \"http\": \"h:1\", \"raft\": \"h:2\"}",
			nil, 400},
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "pad": "` + big(1<<20) + `"}`, nil, 413},

		// POST /v1/cluster/leader and DELETE /v1/cluster/nodes/{id}
		{"POST", "/v1/cluster/leader", `{"id": "n2"`, nil, 400},
		{"POST", "/v1/cluster/leader", `{"id": 2}`, nil, 400},
		{"POST", "/v1/cluster/leader", `{"name": "n2"}`, nil, 400},
		{"POST", "/v1/cluster/leader", "{\"id\": \"\xff\"}", nil, 400},
		{"POST", "/v1/cluster/leader", `{"id": "n9"}`, nil, 404},
		{"POST", "/v1/cluster/leader", `{"id": "` + big(1<<20) + `"}`, nil, 413},
		{"DELETE", "/v1/cluster/nodes/n9", ``, nil, 404},
		// Requests a one-node cluster cannot carry out: a client's mistake,
		// not the server's.
		{"POST", "/v1/cluster/leader", ``, nil, 409},
		{"POST", "/v1/cluster/leader", `{}`, nil, 409},
		// An explicit empty id is not "any": leave id out for that.
		{"POST", "/v1/cluster/leader", `{"id": ""}`, nil, 400},
		{"DELETE", "/v1/cluster/nodes/n1", ``, nil, 409},

		{"GET", "/v1/nothing-here", ``, nil, 404},
	} {
		name := fmt.Sprintf("#%d %s %s %.60q", i, tc.method, tc.path, tc.body)
		index, digest := in.state(t)
		rec := in.do(tc.method, tc.path, []byte(tc.body), tc.header)
		requireRejected(t, rec, tc.want, name)
		afterIndex, afterDigest := in.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", name)
		require.Equal(t, digest, afterDigest, "%s changed the state", name)
	}

	// Handing leadership to the leader is done already.
	index, digest := in.state(t)
	rec := in.do("POST", "/v1/cluster/leader", []byte(`{"id": "n1"}`), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	afterIndex, afterDigest := in.state(t)
	require.Equal(t, index, afterIndex)
	require.Equal(t, digest, afterDigest)

	// The same node accepts a good write, so the rejections above were
	// about the input.
	rec = in.do("PUT", "/v1/stocks/AAPL", []byte(`{"price": "116.030"}`), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `"price":"116.03"`)
}

// TestNodeToNodeRequestsAreRefused sends the node-to-node endpoints
// requests from outside the cluster and malformed commands from a member:
// all are refused, and none changes the state.
func TestNodeToNodeRequestsAreRefused(t *testing.T) {
	in := startInputNode(t)
	cmd := stocks.PutCommand{Symbol: "AAPL", Price: "1"}.Command()
	good, err := cmd.MarshalBinary()
	require.NoError(t, err)
	from := func(id string) http.Header {
		if id == "" {
			return nil
		}
		return http.Header{transport.HeaderFrom: {id}}
	}

	for i, tc := range []struct {
		method, path string
		from         string
		body         []byte
		want         int
	}{
		{"POST", transport.PathPropose, "", good, 403},
		{"POST", transport.PathPropose, "n9", good, 403},
		{"POST", transport.PathPropose, "N1", good, 403},
		{"GET", transport.PathReadIndex, "", nil, 403},
		{"GET", transport.PathReadIndex, "stranger", nil, 403},
		{"POST", transport.PathPropose, "n1", nil, 400},
		{"POST", transport.PathPropose, "n1", []byte("not a command"), 400},
		{"POST", transport.PathPropose, "n1", good[:10], 400},
		{"POST", transport.PathPropose, "n1", append([]byte{fsm.CommandVersion + 1},
			good[1:]...), 400},
		{"POST", transport.PathPropose, "n1", append(append([]byte{}, good[:11]...), 0xff,
			0xff, 0xff), 400},
		{"POST", transport.PathPropose, "n1", bytes.Repeat([]byte{1}, 2<<20), 413},
		{"GET", transport.PathPropose, "n1", good, 405},
	} {
		name := fmt.Sprintf("#%d %s %s from %q", i, tc.method, tc.path, tc.from)
		index, digest := in.state(t)
		rec := in.do(tc.method, tc.path, tc.body, from(tc.from))
		require.Equal(t, tc.want, rec.Code, "%s: %s", name, rec.Body.String())
		afterIndex, afterDigest := in.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", name)
		require.Equal(t, digest, afterDigest, "%s changed the state", name)
	}

	// A member's well-formed request goes through.
	rec := in.do("POST", transport.PathPropose, good, from("n1"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = in.do("GET", transport.PathReadIndex, nil, from("n1"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

// TestUnknownQueryParametersAreRejectedAndChangeNothing sends every route
// a request it would accept, spoilt by a query parameter it does not take
// (a misspelt one, a read's parameter on a write), by a parameter given
// twice or by a malformed query string: each is a 400 invalid_argument
// that names the parameter and the ones the route takes, and changes
// nothing. The same requests with the parameters the route takes then
// succeed, so the rejections were about the query alone.
func TestUnknownQueryParametersAreRejectedAndChangeNothing(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{Domains: map[fsm.DomainID]fsm.Domain{
		fsm.DomainStocks:   stocks.Domain{},
		fsm.DomainText:     text.NewDomain(text.Config{}),
		fsm.DomainComments: comments.New(),
	}})
	in := &inputNode{node: server.Node, handler: server.Handler}
	mustDo := func(method, target, body string, want int) []byte {
		t.Helper()
		rec := in.do(method, target, []byte(body), nil)
		require.Equal(t, want, rec.Code, "%s %s: %s", method, target, rec.Body.String())
		return rec.Body.Bytes()
	}
	mustDo("PUT", "/v1/stocks/AAPL", `{"price": "1"}`, 200)
	mustDo("POST", "/v1/docs/d/ops", `{"rev": 0, "client": "c1", "seq": 1, "op": ["ab"]}`, 200)
	var comment struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(mustDo("POST", "/v1/threads/t/comments",
		`{"author": "alice", "body": "first"}`, 201), &comment))
	commentPath := "/v1/comments/" + comment.ID

	reads := []string{"consistency", "min_index"}
	lists := append([]string{"sort", "limit", "cursor", "replies", "depth"}, reads...)
	for i, tc := range []struct {
		method, path, body string
		takes              []string // the query parameters the route takes
		good               string   // a query of those that the route accepts
		want               int      // the status with the good query; 0: not sent
	}{
		{"GET", "/healthz", ``, nil, "", 200},
		{"GET", "/readyz", ``, nil, "", 200},
		{"GET", "/v1/cluster", ``, nil, "", 200},
		{"GET", "/v1/debug/digest", ``, reads, "consistency=strong&min_index=1", 200},
		{"GET", "/v1/stocks/AAPL", ``, reads, "consistency=strong&min_index=1", 200},
		{"GET", "/v1/stocks", ``, reads, "consistency=local", 200},
		{"GET", "/v1/docs/d", ``, reads, "consistency=strong", 200},
		{"GET", "/v1/docs/d/ops", ``, append([]string{"from", "limit"}, reads...),
			"from=0&limit=10&min_index=1", 200},
		// A stream that would be accepted never ends: only the rejection.
		{"GET", "/v1/docs/d/events", ``, append([]string{"from"}, reads...), "", 0},
		{"GET", "/v1/threads/t/comments", ``, lists,
			"sort=new&limit=5&replies=1&depth=1&consistency=strong", 200},
		{"GET", "/v1/threads/t", ``, reads, "min_index=1", 200},
		{"GET", commentPath, ``, reads, "consistency=strong", 200},
		{"GET", commentPath + "/replies", ``, lists, "sort=top&limit=2", 200},

		{"PUT", "/v1/stocks/AAPL", `{"price": "2"}`, nil, "", 200},
		{"POST", "/v1/docs/d/ops", `{"rev": 1, "client": "c1", "seq": 2, "op": [2, "c"]}`, nil,
			"", 200},
		{"POST", "/v1/threads/t/comments", `{"author": "bob", "body": "second"}`, nil, "", 201},
		{"PATCH", commentPath, `{"author": "alice", "body": "edited"}`, nil, "", 200},
		{"POST", commentPath + "/votes", `{"user": "bob", "vote": "up"}`, nil, "", 200},
		{"POST", commentPath + "/likes", `{"user": "bob", "like": true}`, nil, "", 200},
		{"DELETE", commentPath, ``, []string{"author"}, "author=alice", 200},
		// Joining a member that does not run would cost the quorum.
		{"POST", "/v1/cluster/nodes", `{"id": "n2", "http": "127.0.0.1:1", ` +
			`"raft": "127.0.0.1:2"}`, nil, "", 0},
		{"POST", "/v1/cluster/leader", `{"id": "n1"}`, nil, "", 200},
		{"DELETE", "/v1/cluster/nodes/n9", ``, nil, "", 404},
	} {
		name := fmt.Sprintf("#%d %s %s", i, tc.method, tc.path)
		spoilt := []struct{ query, named string }{
			// A misspelt parameter is named, with the ones the route takes.
			{"consistancy=strong", `"consistancy"`},
			{"min_index=1&min_index=2", `"min_index"`},
			{"x=%zz", "malformed"},
		}
		if tc.takes == nil {
			// A read's parameter on a route that does not read.
			spoilt = append(spoilt, struct{ query, named string }{
				"consistency=strong&min_index=1", `"consistency"`})
		}
		for _, sp := range spoilt {
			bad, named := sp.query, sp.named
			index, digest := in.state(t)
			target := tc.path + "?" + bad
			if tc.good != "" {
				target = tc.path + "?" + tc.good + "&" + bad
			}
			rec := in.do(tc.method, target, []byte(tc.body), nil)
			requireRejected(t, rec, http.StatusBadRequest, name+" ?"+bad)
			var reply struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &reply))
			require.Equal(t, fsm.CodeInvalid, reply.Error.Code, name)
			require.Contains(t, reply.Error.Message, named, name)
			if strings.HasPrefix(reply.Error.Message, "unknown") {
				if tc.takes == nil {
					require.Contains(t, reply.Error.Message, "takes no query parameters", name)
				}
				for _, param := range tc.takes {
					require.Contains(t, reply.Error.Message, param, name)
				}
			}
			afterIndex, afterDigest := in.state(t)
			require.Equal(t, index, afterIndex, "%s ?%s changed the applied index", name, bad)
			require.Equal(t, digest, afterDigest, "%s ?%s changed the state", name, bad)
		}
		if tc.want != 0 {
			target := tc.path
			if tc.good != "" {
				target += "?" + tc.good
			}
			mustDo(tc.method, target, tc.body, tc.want)
		}
	}
}
