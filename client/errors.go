package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// APIError is a non-2xx reply of a node. The server sends errors as
// {"error": {"code": "...", "message": "..."}}; a reply in another shape
// (say from a proxy) keeps its status, an empty Code and its text as the
// Message.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the machine-readable error code, such as "not_found".
	Code string
	// Message is the human-readable explanation.
	Message string
	// Node is the id of the node that answered, from X-Shoal-Node.
	Node string
	// Addr is the base URL the request went to.
	Addr string
	// RetryAfter is the reply's Retry-After, zero when it had none.
	RetryAfter time.Duration
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "shoal: %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	switch {
	case e.Node != "":
		fmt.Fprintf(&b, " (node %s)", e.Node)
	case e.Addr != "":
		fmt.Fprintf(&b, " (%s)", e.Addr)
	}
	return b.String()
}

// Temporary reports whether the same request may succeed later: the
// cluster has no leader, a node is overloaded or a read waited too long
// for its index. Every other status, 4xx in particular, is final.
func (e *APIError) Temporary() bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// IsNotFound reports whether err is (or wraps) a 404 reply.
func IsNotFound(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound
}

// TransportError is an attempt that got no HTTP reply: the node refused or
// dropped the connection, or the attempt timed out. A write that failed
// this way may or may not have been applied; retrying it with the same
// idempotency key settles which.
type TransportError struct {
	// Addr is the base URL the request went to.
	Addr string
	// Err is the cause from net/http.
	Err error
}

// Error implements error.
func (e *TransportError) Error() string {
	cause := e.Err
	var urlErr *url.Error
	if errors.As(cause, &urlErr) {
		cause = urlErr.Err // the URL is already in the message
	}
	return fmt.Sprintf("shoal: no reply from %s: %v", e.Addr, cause)
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error {
	return e.Err
}

// decodeAPIError reads a non-2xx reply into an *APIError.
func decodeAPIError(resp *http.Response, addr string) *APIError {
	apiErr := &APIError{
		Status:     resp.StatusCode,
		Node:       resp.Header.Get(HeaderNode),
		Addr:       addr,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}

	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var wire struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &wire); err == nil && wire.Error != nil {
		apiErr.Code = wire.Error.Code
		apiErr.Message = wire.Error.Message
		return apiErr
	}

	apiErr.Message = strings.TrimSpace(string(raw))
	if len(apiErr.Message) > 200 {
		apiErr.Message = apiErr.Message[:200] + "..."
	}
	if apiErr.Message == "" {
		apiErr.Message = http.StatusText(resp.StatusCode)
	}
	return apiErr
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date;
// it returns zero for an empty or malformed value.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs <= 0 || secs > 24*3600 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(value); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}
