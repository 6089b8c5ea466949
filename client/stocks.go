package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Read consistency levels for ReadOptions.Consistency.
const (
	// ConsistencyLocal reads the answering node's applied state as it is.
	// It is what the server does when no level is given.
	ConsistencyLocal = ""
	// ConsistencyStrong is a linearizable read: the node confirms the
	// leader with a quorum and waits until it has applied the commit index.
	ConsistencyStrong = "strong"
)

// ReadOptions chooses where a read goes and how fresh it must be.
type ReadOptions struct {
	// Consistency is ConsistencyLocal or ConsistencyStrong.
	Consistency string
	// MinIndex makes the node wait until it has applied this Raft index
	// (a write's Quote.Index reads that write back on any node). The node
	// answers 503 when the wait runs out, and the read is retried.
	MinIndex uint64
	// Node pins the read to one node, as host:port or URL, with retries on
	// that node only. Empty means the client's selection with failover.
	Node string
}

// requestOptions turns read options into the options of Do.
func (o ReadOptions) requestOptions() RequestOptions {
	query := url.Values{}
	if o.Consistency != "" {
		query.Set("consistency", o.Consistency)
	}
	if o.MinIndex > 0 {
		query.Set("min_index", strconv.FormatUint(o.MinIndex, 10))
	}
	return RequestOptions{Query: query, Node: o.Node}
}

// Quote is the latest price of one symbol.
type Quote struct {
	// Symbol is the ticker, such as "AAPL".
	Symbol string `json:"symbol"`
	// Price is the exact decimal in the server's canonical form ("574",
	// not "574.0"); it is never converted to a float.
	Price string `json:"price"`
	// Time is the quote time.
	Time time.Time `json:"time"`
	// Index is the Raft index of the write that produced this quote (for
	// a read: the index the answering node's state reflects).
	Index uint64 `json:"index"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// UnmarshalJSON accepts the price as a JSON string or a JSON number and
// keeps its exact text either way.
func (q *Quote) UnmarshalJSON(data []byte) error {
	var wire struct {
		Symbol string      `json:"symbol"`
		Price  json.Number `json:"price"`
		Time   time.Time   `json:"time"`
		Index  uint64      `json:"index"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return err
	}
	*q = Quote{
		Symbol: wire.Symbol,
		Price:  wire.Price.String(),
		Time:   wire.Time,
		Index:  wire.Index,
		Node:   q.Node,
	}
	return nil
}

// StockList is every symbol's latest quote as one node sees it.
type StockList struct {
	// Stocks holds one quote per symbol, in the server's order.
	Stocks []Quote `json:"stocks"`
	// Index is the applied Raft index the list reflects.
	Index uint64 `json:"index"`
	// Node is the id of the node that answered.
	Node string `json:"-"`
}

// putStockRequest is the body of PUT /v1/stocks/{symbol}.
type putStockRequest struct {
	Price string `json:"price"`
	Time  string `json:"time,omitempty"`
}

// PutStock writes a quote: price is an exact decimal such as "116.03",
// and a zero t lets the leader stamp its clock. The write goes to any node
// and is retried under one idempotency key (see the package
// documentation), so it is applied at most once. The reply is the
// symbol's current quote, which is an older write's quote when t is older
// than what the store holds; its Index is the index of this write.
func (c *Client) PutStock(ctx context.Context, symbol, price string, t time.Time) (Quote, error) {
	if symbol == "" {
		return Quote{}, errors.New("client: empty symbol")
	}

	body := putStockRequest{Price: price}
	if !t.IsZero() {
		body.Time = t.UTC().Format(time.RFC3339Nano)
	}
	var q Quote
	info, err := c.Do(ctx, http.MethodPut, stockPath(symbol), body, &q, RequestOptions{})
	if err != nil {
		return Quote{}, err
	}
	q.Node = info.Node
	return q, nil
}

// GetStock reads the latest quote of symbol. A symbol without a quote is
// an *APIError with status 404 (see IsNotFound).
func (c *Client) GetStock(ctx context.Context, symbol string, opts ReadOptions) (Quote, error) {
	if symbol == "" {
		return Quote{}, errors.New("client: empty symbol")
	}

	var q Quote
	info, err := c.Do(ctx, http.MethodGet, stockPath(symbol), nil, &q, opts.requestOptions())
	if err != nil {
		return Quote{}, err
	}
	q.Node = info.Node
	return q, nil
}

// ListStocks reads the latest quote of every symbol.
func (c *Client) ListStocks(ctx context.Context, opts ReadOptions) (StockList, error) {
	var list StockList
	info, err := c.Do(ctx, http.MethodGet, "/v1/stocks", nil, &list, opts.requestOptions())
	if err != nil {
		return StockList{}, err
	}
	list.Node = info.Node
	if list.Index == 0 {
		list.Index = info.Index
	}
	return list, nil
}

// stockPath returns the path of one symbol.
func stockPath(symbol string) string {
	return "/v1/stocks/" + url.PathEscape(symbol)
}
