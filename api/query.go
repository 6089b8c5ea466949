package api

// Query parameters.
//
// Every route takes a fixed set of query parameters, named next to the
// route in routes. A request with any other parameter, with one given more
// than once, or with a malformed query string is answered 400
// invalid_argument before its handler runs, and the message names the
// parameter and lists the ones the route takes. A misspelt parameter
// (?consistancy=strong) is an error, not a silently stale read. Handlers
// read the parameters with r.URL.Query() and need not check names again.

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// readParams are the query parameters every read takes: the read barrier's
// (see readBarrier).
var readParams = []string{"consistency", "min_index"}

// Query parameters of the routes that take more than readParams.
var (
	// listParams are those of a comment listing.
	listParams = withReads("sort", "limit", "cursor", "replies", "depth")

	// docOpsParams are those of GET /v1/docs/{id}/ops.
	docOpsParams = withReads("from", "limit")

	// docEventsParams are those of GET /v1/docs/{id}/events.
	docEventsParams = withReads("from")

	// deleteCommentParams are those of DELETE /v1/comments/{id}.
	deleteCommentParams = []string{"author"}
)

// withReads returns names followed by readParams.
func withReads(names ...string) []string {
	return append(names, readParams...)
}

// query wraps h so that it runs only for requests whose query parameters
// are among allowed, each given at most once; others are answered 400.
// With no allowed names the route takes no query parameters at all.
func query(h http.HandlerFunc, allowed ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := strictQuery(r, allowed...); err != nil {
			writeError(w, err)
			return
		}
		h(w, r)
	}
}

// strictQuery parses the request's query and rejects a malformed query
// string, parameters outside allowed and parameters given twice.
func strictQuery(r *http.Request, allowed ...string) (url.Values, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("malformed query string: %v", err)
	}

	// Sorted, so that the reply names the same parameter every time.
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name) && len(allowed) == 0:
			return nil, badRequest("unknown query parameter %q; %s takes no query parameters",
				truncate(name, 64), routeName(r))
		case !slices.Contains(allowed, name):
			return nil, badRequest("unknown query parameter %q; %s takes %s",
				truncate(name, 64), routeName(r), strings.Join(allowed, ", "))
		case len(params[name]) > 1:
			return nil, badRequest("query parameter %q is given %d times; give it once",
				name, len(params[name]))
		}
	}
	return params, nil
}

// routeName names the route r matched, such as "GET /v1/stocks/{symbol}",
// for messages.
func routeName(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return "this endpoint"
}

// truncate cuts s to n bytes for a message, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
