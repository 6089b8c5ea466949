package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an httptest handler that remembers every request it saw.
type recorder struct {
	mu       sync.Mutex
	keys     []string
	queries  []string
	bodies   []string
	requests int
}

func (r *recorder) record(req *http.Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()

	var body strings.Builder
	if req.Body != nil {
		buf := make([]byte, 4096)
		n, _ := req.Body.Read(buf)
		body.Write(buf[:n])
	}
	r.keys = append(r.keys, req.Header.Get(HeaderIdempotencyKey))
	r.queries = append(r.queries, req.URL.RawQuery)
	r.bodies = append(r.bodies, body.String())
	r.requests++
	return r.requests
}

func (r *recorder) snapshot() (keys, queries, bodies []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...), append([]string(nil), r.queries...),
		append([]string(nil), r.bodies...)
}

func writeQuote(w http.ResponseWriter, node, body string) {
	w.Header().Set(HeaderNode, node)
	w.Header().Set(HeaderIndex, "42")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(body))
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]string{"code": code, "message": message},
	})
}

const aaplReply = `{"symbol":"AAPL","price":"116.03",` +
	`"time":"2020-11-25T00:00:00Z","index":42}`

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Millisecond
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

func TestPutStockRetries503HonoringRetryAfterWithSameKey(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.record(r) == 1 {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "no_leader", "election in progress")
			return
		}
		writeQuote(w, "n1", aaplReply)
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}})

	start := time.Now()
	when := time.Date(2020, 11, 25, 0, 0, 0, 0, time.UTC)
	q, err := c.PutStock(context.Background(), "AAPL", "116.03", when)
	elapsed := time.Since(start)

	require.NoError(t, err)
	assert.Equal(t, Quote{Symbol: "AAPL", Price: "116.03", Time: when, Index: 42, Node: "n1"}, q)
	assert.GreaterOrEqual(t, elapsed, time.Second, "Retry-After: 1 must be honored")
	keys, _, bodies := rec.snapshot()
	require.Len(t, keys, 2)
	assert.NotEmpty(t, keys[0])
	assert.Equal(t, keys[0], keys[1], "retries of one write share its idempotency key")
	assert.JSONEq(t, `{"price":"116.03","time":"2020-11-25T00:00:00Z"}`, bodies[0])
	assert.Equal(t, bodies[0], bodies[1])
}

func TestRetryAfterIsCappedByMaxRetryAfter(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.record(r) == 1 {
			w.Header().Set("Retry-After", "30")
			writeError(w, http.StatusServiceUnavailable, "no_leader", "no leader")
			return
		}
		writeQuote(w, "n1", aaplReply)
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}, MaxRetryAfter: 20 * time.Millisecond})

	start := time.Now()
	_, err := c.PutStock(context.Background(), "AAPL", "116.03", time.Time{})

	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestWritesOfDifferentCallsGetDifferentKeys(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		writeQuote(w, "n1", aaplReply)
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}})

	for range 3 {
		_, err := c.PutStock(context.Background(), "AAPL", "116.03", time.Time{})
		require.NoError(t, err)
	}
	_, err := c.GetStock(context.Background(), "AAPL", ReadOptions{})
	require.NoError(t, err)

	keys, _, bodies := rec.snapshot()
	require.Len(t, keys, 4)
	assert.NotEqual(t, keys[0], keys[1])
	assert.NotEqual(t, keys[1], keys[2])
	assert.Empty(t, keys[3], "reads carry no idempotency key")
	assert.JSONEq(t, `{"price":"116.03"}`, bodies[0], "a zero time is left to the server")
}

func TestFailoverToSecondAddressWhenFirstIsDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downAddr := down.Listener.Addr().String()
	down.Close()

	rec := &recorder{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		writeQuote(w, "n2", aaplReply)
	}))
	defer up.Close()

	// The first address is host:port, the second a URL; both are accepted.
	c := newTestClient(t, Config{
		Addrs:        []string{downAddr, up.URL},
		RetryBackoff: time.Second, // failover must not wait for a backoff
	})

	start := time.Now()
	q, err := c.PutStock(context.Background(), "AAPL", "116.03", time.Time{})
	require.NoError(t, err)
	assert.Equal(t, "n2", q.Node)
	assert.Less(t, time.Since(start), 500*time.Millisecond)

	// Reads fail over too, and round robin starts the next call elsewhere.
	for range 4 {
		q, err = c.GetStock(context.Background(), "AAPL", ReadOptions{})
		require.NoError(t, err)
		assert.Equal(t, "116.03", q.Price)
	}
	assert.Equal(t, 5, rec.requests)
}

func TestWriteRetriedWithSameKeyWhenReplyIsLost(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.record(r) == 1 {
			// The write "applied" but the connection breaks before the reply.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		writeQuote(w, "n1", aaplReply)
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}})

	_, err := c.PutStock(context.Background(), "AAPL", "116.03", time.Time{})
	require.NoError(t, err)

	keys, _, _ := rec.snapshot()
	require.GreaterOrEqual(t, len(keys), 2)
	for _, key := range keys[1:] {
		assert.Equal(t, keys[0], key)
	}
}

func TestAPIErrorDecodingAndNoRetryOn4xx(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		status  int
		code    string
		message string
	}{
		{"write rejected", http.MethodPut, http.StatusBadRequest, "bad_price", "must be > 0"},
		{"read not found", http.MethodGet, http.StatusNotFound, "not_found", "no quote for ZZZ"},
		{"too large", http.MethodPut, http.StatusRequestEntityTooLarge, "too_large", "1 MiB"},
		{"server bug", http.MethodPut, http.StatusInternalServerError, "internal", "boom"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int32
			handler := func(w http.ResponseWriter, _ *http.Request) {
				requests.Add(1)
				w.Header().Set(HeaderNode, "n3")
				writeError(w, tt.status, tt.code, tt.message)
			}
			srv := httptest.NewServer(http.HandlerFunc(handler))
			defer srv.Close()
			c := newTestClient(t, Config{Addrs: []string{srv.URL, srv.URL}})

			var err error
			if tt.method == http.MethodPut {
				_, err = c.PutStock(context.Background(), "ZZZ", "-1", time.Time{})
			} else {
				_, err = c.GetStock(context.Background(), "ZZZ", ReadOptions{})
			}

			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr, "#%d", i)
			assert.Equal(t, tt.status, apiErr.Status)
			assert.Equal(t, tt.code, apiErr.Code)
			assert.Equal(t, tt.message, apiErr.Message)
			assert.Equal(t, "n3", apiErr.Node)
			assert.False(t, apiErr.Temporary())
			assert.Equal(t, int32(1), requests.Load(), "a final reply is not retried")
			assert.Equal(t, tt.status == http.StatusNotFound, IsNotFound(err))
		})
	}
}

func TestAPIErrorFromNonJSONReply(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}})

	_, err := c.Cluster(context.Background())

	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.Status)
	assert.Empty(t, apiErr.Code)
	assert.Equal(t, "404 page not found", apiErr.Message)
	assert.Contains(t, apiErr.Error(), "404")
}

func TestRetriesAreBounded(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		writeError(w, http.StatusServiceUnavailable, "no_leader", "no leader")
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}, MaxRetries: 3})

	info, err := c.Do(context.Background(), http.MethodPut, "/v1/stocks/AAPL",
		map[string]string{"price": "1"}, nil, RequestOptions{})

	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusServiceUnavailable, apiErr.Status)
	assert.Equal(t, int32(4), requests.Load())
	assert.Equal(t, 4, info.Attempts)
}

func TestNegativeMaxRetriesDisablesRetries(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		writeError(w, http.StatusServiceUnavailable, "no_leader", "no leader")
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}, MaxRetries: -1})

	_, err := c.PutStock(context.Background(), "AAPL", "1", time.Time{})
	require.Error(t, err)
	assert.Equal(t, int32(1), requests.Load())
}

func TestContextEndsRetries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "no_leader", "no leader")
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err := c.PutStock(ctx, "AAPL", "1", time.Time{})

	require.ErrorIs(t, err, context.DeadlineExceeded)
	var apiErr *APIError
	assert.ErrorAs(t, err, &apiErr, "the last reply is kept in the error")
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestReadOptionsAndPinnedNode(t *testing.T) {
	recA, recB := &recorder{}, &recorder{}
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recA.record(r)
		writeQuote(w, "n1", aaplReply)
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recB.record(r)
		writeQuote(w, "n2", `{"symbol":"AAPL","price":116.03,"index":43}`)
	}))
	defer b.Close()
	c := newTestClient(t, Config{Addrs: []string{a.URL, b.URL}})

	for range 3 {
		q, err := c.GetStock(context.Background(), "AAPL", ReadOptions{
			Consistency: ConsistencyStrong,
			MinIndex:    40,
			Node:        strings.TrimPrefix(b.URL, "http://"),
		})
		require.NoError(t, err)
		assert.Equal(t, "n2", q.Node)
		assert.Equal(t, "116.03", q.Price, "a JSON number keeps its exact text")
		assert.Equal(t, uint64(43), q.Index)
	}

	_, queries, _ := recB.snapshot()
	require.Len(t, queries, 3)
	assert.Equal(t, "consistency=strong&min_index=40", queries[0])
	assert.Equal(t, 0, recA.requests)
}

func TestPinnedNodeIsNotFailedOver(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downAddr := down.Listener.Addr().String()
	down.Close()
	var requests atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		writeQuote(w, "n2", aaplReply)
	}))
	defer up.Close()
	c := newTestClient(t, Config{Addrs: []string{downAddr, up.URL}, MaxRetries: 2})

	_, err := c.GetStock(context.Background(), "AAPL", ReadOptions{Node: downAddr})

	var transportErr *TransportError
	require.ErrorAs(t, err, &transportErr)
	assert.Equal(t, int32(0), requests.Load())
}

func TestSelections(t *testing.T) {
	var hitsA, hitsB atomic.Int32
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hitsA.Add(1)
		writeQuote(w, "n1", aaplReply)
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hitsB.Add(1)
		writeQuote(w, "n2", aaplReply)
	}))
	defer b.Close()

	roundRobin := newTestClient(t, Config{Addrs: []string{a.URL, b.URL}})
	for range 10 {
		_, err := roundRobin.GetStock(context.Background(), "AAPL", ReadOptions{})
		require.NoError(t, err)
	}
	assert.Equal(t, int32(5), hitsA.Load())
	assert.Equal(t, int32(5), hitsB.Load())

	pinned := newTestClient(t, Config{Addrs: []string{b.URL, a.URL}, Selection: SelectPinned})
	for range 10 {
		_, err := pinned.GetStock(context.Background(), "AAPL", ReadOptions{})
		require.NoError(t, err)
	}
	assert.Equal(t, int32(15), hitsB.Load())
}

func TestPinnedSelectionStaysWithTheNodeThatAnswered(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downAddr := down.Listener.Addr().String()
	down.Close()
	var requests atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		writeQuote(w, "n2", aaplReply)
	}))
	defer up.Close()
	c := newTestClient(t, Config{Addrs: []string{downAddr, up.URL}, Selection: SelectPinned})

	for range 3 {
		info, err := c.Do(context.Background(), http.MethodGet, "/v1/stocks/AAPL", nil, nil,
			RequestOptions{})
		require.NoError(t, err)
		assert.Equal(t, "n2", info.Node)
		assert.Equal(t, uint64(42), info.Index)
	}
	assert.Equal(t, int32(3), requests.Load())
}

func TestListStocksAndCluster(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderNode, "n1")
		switch r.URL.Path {
		case "/v1/stocks":
			_, _ = w.Write([]byte(`{"stocks":[{"symbol":"AAPL","price":"116.03",` +
				`"time":"2020-11-25T00:00:00Z","index":7},{"symbol":"TSLA",` +
				`"price":"574","time":"2020-11-25T00:00:00Z","index":9}],"index":12}`))
		case "/v1/cluster":
			_, _ = w.Write([]byte(`{"leader":"n1","term":4,"nodes":[{"id":"n1",` +
				`"http":"127.0.0.1:8081","raft":"127.0.0.1:9081","state":"leader",` +
				`"voter":true,"applied_index":120}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, Config{Addrs: []string{srv.URL}})

	list, err := c.ListStocks(context.Background(), ReadOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint64(12), list.Index)
	assert.Equal(t, "n1", list.Node)
	require.Len(t, list.Stocks, 2)
	assert.Equal(t, "574", list.Stocks[1].Price)

	status, err := c.Cluster(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ClusterStatus{
		Leader: "n1",
		Term:   4,
		Node:   "n1",
		Nodes: []NodeStatus{{
			ID: "n1", HTTP: "127.0.0.1:8081", Raft: "127.0.0.1:9081",
			State: StateLeader, Voter: true, AppliedIndex: 120,
		}},
	}, status)
}

func TestNormalizeAddr(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "127.0.0.1:8081", want: "http://127.0.0.1:8081"},
		{in: "http://127.0.0.1:8081", want: "http://127.0.0.1:8081"},
		{in: "http://127.0.0.1:8081/", want: "http://127.0.0.1:8081"},
		{in: " https://shoal.example:443 ", want: "https://shoal.example:443"},
		{in: "localhost:8081", want: "http://localhost:8081"},
		{in: "", wantErr: true},
		{in: "ftp://host:21", wantErr: true},
		{in: "http://host:1/v1", wantErr: true},
	}
	for i, tt := range tests {
		got, err := NormalizeAddr(tt.in)
		if tt.wantErr {
			assert.Error(t, err, "#%d %q", i, tt.in)
			continue
		}
		require.NoError(t, err, "#%d %q", i, tt.in)
		assert.Equal(t, tt.want, got, "#%d", i)
	}

	_, err := New(Config{})
	assert.True(t, errors.Is(err, ErrNoAddrs))
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	assert.Equal(t, 2*time.Second, parseRetryAfter("2", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("soon", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("-1", now))
	later := now.Add(3 * time.Second).Format(http.TimeFormat)
	assert.Equal(t, 3*time.Second, parseRetryAfter(later, now))
}
