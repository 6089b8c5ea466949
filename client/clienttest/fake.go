// Package clienttest runs an in-memory stand-in for a shoal cluster over
// real HTTP, for tests of code that uses the client (replay, bench) without
// starting real nodes. It speaks the stocks and cluster API with the same
// headers, error shape and idempotency behaviour as a node, but it has no
// Raft: all its "nodes" share one store, so every read is up to date.
package clienttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cluster is a set of fake nodes that share one store. Its methods are
// safe for concurrent use.
type Cluster struct {
	nodes []*httptest.Server

	mu       sync.Mutex
	index    uint64
	quotes   map[string]quote
	received map[string][]time.Time // quote times of writes, per symbol
	replies  map[string][]byte      // reply per idempotency key
	writes   int
	reads    []int // reads served, per node
	hook     func(node int, w http.ResponseWriter, r *http.Request) bool
}

type quote struct {
	Symbol string    `json:"symbol"`
	Price  string    `json:"price"`
	Time   time.Time `json:"time"`
	Index  uint64    `json:"index"`
}

// NewCluster starts n fake nodes with ids n1, n2, ... on local ports. Call
// Close when done.
func NewCluster(n int) *Cluster {
	c := &Cluster{
		quotes:   make(map[string]quote),
		received: make(map[string][]time.Time),
		replies:  make(map[string][]byte),
		reads:    make([]int, n),
	}
	for i := range n {
		c.nodes = append(c.nodes, httptest.NewServer(http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) { c.serve(i, w, r) })))
	}
	return c
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, node := range c.nodes {
		node.Close()
	}
}

// Addrs returns the nodes' base URLs.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, node := range c.nodes {
		addrs[i] = node.URL
	}
	return addrs
}

// SetHook installs fn in front of every request: when it returns true it
// has answered the request itself (to inject errors or delays).
func (c *Cluster) SetHook(fn func(node int, w http.ResponseWriter, r *http.Request) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = fn
}

// SetPrice overwrites a symbol's price behind the API's back.
func (c *Cluster) SetPrice(symbol, price string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.quotes[symbol]
	q.Symbol, q.Price = symbol, price
	c.quotes[symbol] = q
}

// Received returns the quote times of the writes of symbol in the order
// they arrived (duplicates by idempotency key excluded).
func (c *Cluster) Received(symbol string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.received[symbol])
}

// Writes returns the number of writes applied.
func (c *Cluster) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// Reads returns the number of reads each node served.
func (c *Cluster) Reads() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads)
}

func (c *Cluster) serve(node int, w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	hook := c.hook
	c.mu.Unlock()
	if hook != nil && hook(node, w, r) {
		return
	}

	w.Header().Set("X-Shoal-Node", fmt.Sprintf("n%d", node+1))
	w.Header().Set("Content-Type", "application/json")
	symbol, isSymbol := strings.CutPrefix(r.URL.Path, "/v1/stocks/")
	switch {
	case r.Method == http.MethodPut && isSymbol:
		c.put(w, r, symbol)
	case r.Method == http.MethodGet && isSymbol:
		c.get(node, w, symbol)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/stocks":
		c.list(node, w)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster":
		c.cluster(w)
	default:
		WriteError(w, http.StatusNotFound, "not_found", "no route "+r.URL.Path)
	}
}

func (c *Cluster) put(w http.ResponseWriter, r *http.Request, symbol string) {
	var body struct {
		Price json.Number `json:"price"`
		Time  time.Time   `json:"time"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Price == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "bad body")
		return
	}
	price := canonical(body.Price.String())
	if strings.HasPrefix(price, "-") || price == "0" {
		WriteError(w, http.StatusBadRequest, "bad_price", "price must be positive")
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	key := r.Header.Get("Idempotency-Key")
	if reply, ok := c.replies[key]; ok && key != "" {
		c.writeReply(w, reply)
		return
	}

	c.index++
	c.writes++
	when := body.Time
	if when.IsZero() {
		when = time.Now().UTC()
	}
	c.received[symbol] = append(c.received[symbol], when)
	current, ok := c.quotes[symbol]
	if !ok || !when.Before(current.Time) {
		current = quote{Symbol: symbol, Price: price, Time: when}
		c.quotes[symbol] = current
	}
	current.Index = c.index
	reply, _ := json.Marshal(current)
	if key != "" {
		c.replies[key] = reply
	}
	c.writeReply(w, reply)
}

func (c *Cluster) get(node int, w http.ResponseWriter, symbol string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads[node]++
	q, ok := c.quotes[symbol]
	if !ok {
		WriteError(w, http.StatusNotFound, "not_found", "no quote for "+symbol)
		return
	}
	q.Index = c.index
	reply, _ := json.Marshal(q)
	c.writeReply(w, reply)
}

func (c *Cluster) list(node int, w http.ResponseWriter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads[node]++
	list := struct {
		Stocks []quote `json:"stocks"`
		Index  uint64  `json:"index"`
	}{Stocks: []quote{}, Index: c.index}
	for _, q := range c.quotes {
		list.Stocks = append(list.Stocks, q)
	}
	slices.SortFunc(list.Stocks, func(a, b quote) int {
		return strings.Compare(a.Symbol, b.Symbol)
	})
	reply, _ := json.Marshal(list)
	c.writeReply(w, reply)
}

func (c *Cluster) cluster(w http.ResponseWriter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	type node struct {
		ID           string `json:"id"`
		HTTP         string `json:"http"`
		Raft         string `json:"raft"`
		State        string `json:"state"`
		Voter        bool   `json:"voter"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	status := struct {
		Leader string `json:"leader"`
		Term   uint64 `json:"term"`
		Nodes  []node `json:"nodes"`
	}{Leader: "n1", Term: 1}
	for i, srv := range c.nodes {
		state := "follower"
		if i == 0 {
			state = "leader"
		}
		status.Nodes = append(status.Nodes, node{
			ID: fmt.Sprintf("n%d", i+1), HTTP: srv.Listener.Addr().String(),
			State: state, Voter: true, AppliedIndex: c.index,
		})
	}
	reply, _ := json.Marshal(status)
	c.writeReply(w, reply)
}

// writeReply sends a 200 JSON reply; the caller holds c.mu.
func (c *Cluster) writeReply(w http.ResponseWriter, reply []byte) {
	w.Header().Set("X-Shoal-Index", strconv.FormatUint(c.index, 10))
	_, _ = w.Write(reply)
}

// WriteError sends an error reply in the shape of the shoal API.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]string{"code": code, "message": message},
	})
}

// canonical strips trailing fraction zeros and a trailing dot.
func canonical(price string) string {
	if strings.Contains(price, ".") {
		price = strings.TrimRight(strings.TrimRight(price, "0"), ".")
	}
	return price
}
