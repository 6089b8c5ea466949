// Package client is the Go client of shoal's HTTP API.
//
// A Client talks to every node of one cluster. Any node accepts writes (a
// follower forwards them to the leader) and answers reads from its own
// applied state, so the client needs no leader discovery: it spreads
// requests over the nodes it was given and fails over to the next one when
// a node is down.
//
// # Retries and idempotency
//
// Every write (any method other than GET, HEAD and OPTIONS) carries an
// Idempotency-Key header. The key is generated once per logical write, when
// the method is called, and every retry of that write sends the same key.
// The server remembers recent keys and answers a duplicate with the result
// of the first apply, so a write whose reply was lost (the node died, the
// connection broke, the attempt timed out) can be sent again without being
// applied twice. This is what makes it safe to retry writes at all.
//
// A request is retried, up to Config.MaxRetries times, when:
//
//   - it never got an HTTP reply (connection refused or reset, timeout of
//     one attempt): the next attempt goes to the next node at once, and the
//     client backs off only after every node has failed in a row;
//   - the reply is 503 (no leader, election in progress, a min_index wait
//     that ran out), 502, 504 or 429: the client waits for the reply's
//     Retry-After (capped by Config.MaxRetryAfter), or else an exponential
//     backoff with jitter, then tries the next node.
//
// Any other reply, in particular every 4xx, is final and is returned as an
// *APIError without a retry: a rejected request changes nothing, so sending
// it again would only be rejected again. A request pinned to one node (see
// RequestOptions.Node) is retried on that node only. The caller's context
// bounds all attempts and waits together.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults used for the zero fields of a Config.
const (
	// DefaultTimeout bounds one attempt of one request.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxRetries is the number of retries after the first attempt.
	DefaultMaxRetries = 8
	// DefaultRetryBackoff is the first backoff between retries; it doubles
	// after each backoff up to DefaultMaxBackoff.
	DefaultRetryBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the exponential backoff.
	DefaultMaxBackoff = time.Second
	// DefaultMaxRetryAfter caps how long a server's Retry-After is honored.
	DefaultMaxRetryAfter = 5 * time.Second
)

// Header names of the shoal HTTP API.
const (
	// HeaderIdempotencyKey carries the key of one logical write.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderNode names the node that answered.
	HeaderNode = "X-Shoal-Node"
	// HeaderIndex is the applied Raft index the answer reflects.
	HeaderIndex = "X-Shoal-Index"
)

// ErrNoAddrs is returned by New when the Config lists no node address.
var ErrNoAddrs = errors.New("client: no node addresses")

// Selection chooses the node that the first attempt of a request goes to.
type Selection int

const (
	// SelectRoundRobin starts each request at the next node in turn, which
	// spreads load evenly over the cluster. It is the default.
	SelectRoundRobin Selection = iota
	// SelectPinned sends every request to one node (initially the first
	// address) and moves on to the next only when that node fails; the
	// client then stays with the node that answered.
	SelectPinned
)

// Config configures a Client. Only Addrs is required; every zero field
// takes the default named next to it.
type Config struct {
	// Addrs lists the HTTP addresses of the nodes, as host:port or as a
	// URL such as http://host:port.
	Addrs []string
	// HTTPClient sends the requests. Nil means a client with keep-alive
	// connection pools sized for many concurrent requests per node.
	HTTPClient *http.Client
	// Timeout bounds one attempt; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxRetries is the number of retries after the first attempt: zero
	// means DefaultMaxRetries and a negative value disables retries.
	MaxRetries int
	// RetryBackoff is the first backoff; zero means DefaultRetryBackoff.
	RetryBackoff time.Duration
	// MaxBackoff caps the backoff; zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxRetryAfter caps a server's Retry-After; zero means
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Selection picks the node of each first attempt.
	Selection Selection
	// ClientID prefixes the generated idempotency keys. Empty means a
	// random id drawn when the Client is created.
	ClientID string
	// Logger receives a Debug line per retry. Nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether the Config can make a Client.
func (cfg Config) Validate() error {
	if len(cfg.Addrs) == 0 {
		return ErrNoAddrs
	}
	for _, addr := range cfg.Addrs {
		if _, err := NormalizeAddr(addr); err != nil {
			return err
		}
	}
	if cfg.Timeout < 0 || cfg.RetryBackoff < 0 || cfg.MaxBackoff < 0 || cfg.MaxRetryAfter < 0 {
		return errors.New("client: negative duration in config")
	}
	if cfg.Selection != SelectRoundRobin && cfg.Selection != SelectPinned {
		return fmt.Errorf("client: unknown selection %d", cfg.Selection)
	}
	return nil
}

// Client sends requests to the nodes of one shoal cluster. It is safe for
// concurrent use by many goroutines; share one per process.
type Client struct {
	addrs         []string // base URLs without a trailing slash
	http          *http.Client
	timeout       time.Duration
	maxRetries    int
	retryBackoff  time.Duration
	maxBackoff    time.Duration
	maxRetryAfter time.Duration
	selection     Selection
	clientID      string
	logger        *slog.Logger

	cursor  atomic.Uint64 // round-robin position
	pinned  atomic.Uint64 // index into addrs of the pinned node
	counter atomic.Uint64 // sequence of generated idempotency keys
}

// New returns a Client for the nodes in cfg.Addrs.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	c := &Client{
		http:          cfg.HTTPClient,
		timeout:       cfg.Timeout,
		maxRetries:    cfg.MaxRetries,
		retryBackoff:  cfg.RetryBackoff,
		maxBackoff:    cfg.MaxBackoff,
		maxRetryAfter: cfg.MaxRetryAfter,
		selection:     cfg.Selection,
		clientID:      cfg.ClientID,
		logger:        cfg.Logger,
	}
	for _, addr := range cfg.Addrs {
		base, _ := NormalizeAddr(addr) // checked by Validate
		c.addrs = append(c.addrs, base)
	}

	// Fill in the defaults of the zero fields.
	if c.http == nil {
		c.http = &http.Client{Transport: newTransport()}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.retryBackoff == 0 {
		c.retryBackoff = DefaultRetryBackoff
	}
	if c.maxBackoff == 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	if c.maxRetryAfter == 0 {
		c.maxRetryAfter = DefaultMaxRetryAfter
	}
	if c.clientID == "" {
		c.clientID = randomID()
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	c.logger = c.logger.With("component", "client")
	return c, nil
}

// newTransport returns a transport that keeps enough idle connections per
// node for a benchmark's worth of concurrent requests; the default of two
// per host would open and close a connection for most requests.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	return t
}

// randomID returns 16 random hex digits.
func randomID() string {
	var b [8]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// NormalizeAddr turns host:port or an http(s) URL into the base URL the
// client sends requests to, such as "http://127.0.0.1:8081".
func NormalizeAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("client: empty node address")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}

	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("client: bad node address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("client: bad node address %q: scheme must be http or https", addr)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("client: bad node address %q: want host:port", addr)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Addrs returns the base URLs of the nodes, in the order they were given.
func (c *Client) Addrs() []string {
	return append([]string(nil), c.addrs...)
}

// NewIdempotencyKey returns a key no other write of this process uses:
// the client id and a counter. Callers that retry a logical write above
// the client (for example across process restarts) can pass their own key
// in RequestOptions.IdempotencyKey instead.
func (c *Client) NewIdempotencyKey() string {
	return c.clientID + "-" + strconv.FormatUint(c.counter.Add(1), 10)
}

// RequestOptions adjusts one call of Do.
type RequestOptions struct {
	// Query is added to the URL.
	Query url.Values
	// Header is added to the request.
	Header http.Header
	// Node pins the request to one node, given as host:port or URL: every
	// attempt goes there and there is no failover. Empty means the
	// client's Selection with failover.
	Node string
	// IdempotencyKey is sent with a write instead of a generated key.
	IdempotencyKey string
}

// ResponseInfo describes the reply that ended a call of Do.
type ResponseInfo struct {
	// Status is the HTTP status code of the final reply.
	Status int
	// Addr is the base URL of the node that sent it.
	Addr string
	// Node is the node id from the X-Shoal-Node header.
	Node string
	// Index is the applied Raft index from the X-Shoal-Index header.
	Index uint64
	// Attempts is how many attempts the call took, at least one.
	Attempts int
}

// Do sends one logical request and decodes a 2xx JSON reply into out (when
// out is non-nil). A non-nil body is encoded as JSON. path is the path of
// the API, such as "/v1/stocks/AAPL"; the query goes in opts.Query.
//
// Writes get an idempotency key and both reads and writes are retried as
// the package documentation describes. A non-2xx reply is returned as an
// *APIError; a request that never got a reply returns the transport error
// of its last attempt. The ResponseInfo is filled in whenever a reply
// arrived, also together with an *APIError.
func (c *Client) Do(
	ctx context.Context, method, path string, body, out any, opts RequestOptions,
) (ResponseInfo, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return ResponseInfo{}, fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
	}

	// One key for every attempt of this logical write.
	header := opts.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if isWrite(method) && header.Get(HeaderIdempotencyKey) == "" {
		key := opts.IdempotencyKey
		if key == "" {
			key = c.NewIdempotencyKey()
		}
		header.Set(HeaderIdempotencyKey, key)
	}

	// The node of each attempt: a pinned node or a rotation from a start.
	pinned := ""
	if opts.Node != "" {
		var err error
		if pinned, err = NormalizeAddr(opts.Node); err != nil {
			return ResponseInfo{}, err
		}
	}
	start := c.firstNode()

	var (
		info      ResponseInfo
		lastErr   error
		backoffs  int // backoffs so far, the exponent of the next one
		failedRun int // nodes that failed in a row without a wait
	)
	for attempt := 0; ; attempt++ {
		idx := (start + attempt) % len(c.addrs)
		addr := c.addrs[idx]
		if pinned != "" {
			addr = pinned
		}

		info, lastErr = c.attempt(ctx, method, addr, path, payload, header, out, opts)
		info.Attempts = attempt + 1
		if lastErr == nil {
			if pinned == "" && c.selection == SelectPinned {
				c.pinned.Store(uint64(idx))
			}
			return info, nil
		}

		// Decide whether and how long to wait before the next attempt.
		if ctx.Err() != nil || attempt >= c.maxRetries || !retryable(lastErr) {
			break
		}
		var wait time.Duration
		var apiErr *APIError
		switch {
		case errors.As(lastErr, &apiErr) && apiErr.RetryAfter > 0:
			wait = min(apiErr.RetryAfter, c.maxRetryAfter)
			failedRun = 0
		case apiErr == nil && pinned == "" && failedRun+1 < len(c.addrs):
			// No reply at all: fail over to the next node right away.
			failedRun++
		default:
			wait = c.backoff(backoffs)
			backoffs++
			failedRun = 0
		}
		c.logger.Debug("retrying request", "method", method, "path", path,
			"addr", addr, "attempt", attempt+1, "wait", wait, "err", lastErr)
		if err := sleep(ctx, wait); err != nil {
			break
		}
	}

	switch {
	case ctx.Err() != nil && !errors.Is(lastErr, ctx.Err()):
		return info, fmt.Errorf("client: %s %s: %w after %d attempts: %w",
			method, path, ctx.Err(), info.Attempts, lastErr)
	case info.Attempts > 1:
		return info, fmt.Errorf("client: %s %s: giving up after %d attempts: %w",
			method, path, info.Attempts, lastErr)
	}
	return info, lastErr
}

// firstNode returns the index of the node for the first attempt.
func (c *Client) firstNode() int {
	if c.selection == SelectPinned {
		return int(c.pinned.Load() % uint64(len(c.addrs)))
	}
	return int((c.cursor.Add(1) - 1) % uint64(len(c.addrs)))
}

// attempt sends one HTTP request to one node.
func (c *Client) attempt(
	ctx context.Context, method, addr, path string, payload []byte,
	header http.Header, out any, opts RequestOptions,
) (ResponseInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	target := addr + path
	if len(opts.Query) > 0 {
		target += "?" + opts.Query.Encode()
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return ResponseInfo{}, fmt.Errorf("client: build request: %w", err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return ResponseInfo{Addr: addr}, &TransportError{Addr: addr, Err: err}
	}
	defer func() {
		// Drain what is left so the connection goes back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()

	info := ResponseInfo{
		Status: resp.StatusCode,
		Addr:   addr,
		Node:   resp.Header.Get(HeaderNode),
	}
	info.Index, _ = strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return info, decodeAPIError(resp, addr)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			// The reply arrived but broke off or is not the expected JSON;
			// a broken connection is worth a retry, a bad shape is not.
			if errors.Is(err, io.ErrUnexpectedEOF) || ctx.Err() != nil {
				return info, &TransportError{Addr: addr, Err: err}
			}
			return info, fmt.Errorf("client: decode reply of %s %s from %s: %w",
				method, path, addr, err)
		}
	}
	return info, nil
}

// backoff returns the wait before a retry: exponential with full jitter
// over its upper half, so that many clients do not retry in lockstep.
func (c *Client) backoff(n int) time.Duration {
	d := c.retryBackoff
	for i := 0; i < n && d < c.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// isWrite reports whether a method changes state and so needs a key.
func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// retryable reports whether a failed attempt may be sent again.
func retryable(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Temporary()
	}
	var transportErr *TransportError
	return errors.As(err, &transportErr)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
