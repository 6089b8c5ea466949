// Package api is shoal's HTTP interface: JSON REST handlers for each
// domain, the cluster admin endpoints, health, readiness and Prometheus
// metrics. Handlers validate input and translate between HTTP and the node;
// the rules of each domain live in package fsm.
package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/hottier"
	"github.com/shoal-db/shoal/node"
	"github.com/shoal-db/shoal/transport"
)

// Reply headers every response carries.
const (
	HeaderNode  = "X-Shoal-Node"
	HeaderIndex = "X-Shoal-Index"

	// HeaderIdempotencyKey on a write makes a retry return the first
	// result instead of applying twice.
	HeaderIdempotencyKey = "Idempotency-Key"

	// HeaderUser names the caller until authentication lands; see
	// Identity.
	HeaderUser = "X-Shoal-User"

	headerForwarded = "X-Shoal-Forwarded"
)

// Config holds what a Server needs besides its node.
type Config struct {
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes int64

	// BodyReadTimeout bounds the reading of a request body, from when a
	// handler starts reading it; a body that has not fully arrived by then
	// gets 408 and the connection is closed. Headers are bounded by the
	// http.Server's ReadHeaderTimeout; responses are not bounded here, so
	// event streams stay open.
	BodyReadTimeout time.Duration

	// Logger receives request errors at Debug and failures at Error.
	Logger *slog.Logger

	// Registry receives HTTP metrics and is served at /metrics. Nil
	// means a private registry with only the HTTP and Go metrics.
	Registry *prometheus.Registry

	// HotTier, if set, answers hot reads (GET /v1/stocks/{symbol}) before
	// the state; nil means every read goes to the state.
	HotTier *hottier.Tier
}

// DefaultConfig returns a Config with a 1 MiB body limit and 30 seconds
// to read a body.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 1 << 20, BodyReadTimeout: 30 * time.Second,
		Logger: slog.Default()}
}

// Server serves one node's HTTP API. It is safe for concurrent use.
type Server struct {
	node    *node.Node
	cfg     Config
	logger  *slog.Logger
	mux     *http.ServeMux
	latency *prometheus.HistogramVec

	// streams ends server-sent event streams on shutdown (CloseStreams).
	streams streams
}

// New returns a Server for n.
func New(n *node.Node, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultConfig().MaxBodyBytes
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultConfig().BodyReadTimeout
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		node:   n,
		cfg:    cfg,
		logger: cfg.Logger.With("component", "api"),
		mux:    http.NewServeMux(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route", "method", "status"}),
	}
	_ = cfg.Registry.Register(s.latency)
	s.routes()
	return s
}

// routes registers every route with the query parameters it takes (see
// query); a route that names none takes none. /metrics is promhttp's and
// /internal/ the node-to-node transport's: each checks its own requests.
func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", query(s.healthz))
	m.HandleFunc("GET /readyz", query(s.readyz))
	m.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))

	m.HandleFunc("GET /v1/cluster", query(s.clusterStatus))
	m.HandleFunc("POST /v1/cluster/nodes", query(s.leaderOnly(s.joinNode)))
	m.HandleFunc("DELETE /v1/cluster/nodes/{id}", query(s.leaderOnly(s.removeNode)))
	m.HandleFunc("POST /v1/cluster/leader", query(s.leaderOnly(s.transferLeader)))
	m.HandleFunc("GET /v1/debug/digest", query(s.digest, readParams...))

	m.HandleFunc("PUT /v1/stocks/{symbol}", query(s.putStock))
	m.HandleFunc("GET /v1/stocks/{symbol}", query(s.getStock, readParams...))
	m.HandleFunc("GET /v1/stocks", query(s.listStocks, readParams...))

	m.HandleFunc("POST /v1/docs/{id}/ops", query(s.submitDocOp))
	m.HandleFunc("GET /v1/docs/{id}", query(s.getDoc, readParams...))
	m.HandleFunc("GET /v1/docs/{id}/ops", query(s.listDocOps, docOpsParams...))
	m.HandleFunc("GET /v1/docs/{id}/events", query(s.docEvents, docEventsParams...))

	m.HandleFunc("POST /v1/threads/{thread}/comments", query(s.createComment))
	m.HandleFunc("GET /v1/threads/{thread}/comments", query(s.listThread, listParams...))
	m.HandleFunc("GET /v1/threads/{thread}", query(s.getThread, readParams...))
	m.HandleFunc("GET /v1/comments/{id}", query(s.getComment, readParams...))
	m.HandleFunc("PATCH /v1/comments/{id}", query(s.editComment))
	m.HandleFunc("DELETE /v1/comments/{id}", query(s.deleteComment, deleteCommentParams...))
	m.HandleFunc("POST /v1/comments/{id}/votes", query(s.voteComment))
	m.HandleFunc("POST /v1/comments/{id}/likes", query(s.likeComment))
	m.HandleFunc("GET /v1/comments/{id}/replies", query(s.listReplies, listParams...))

	m.Handle("/internal/", transport.Handler(s.node))
	m.HandleFunc("/", s.noRoute)
}

// noRoute answers requests no route matched: 405 with Allow when the path
// exists for other methods, 404 otherwise.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodPost,
		http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := s.mux.Handler(probe); pattern != "/" {
			allowed = append(allowed, method)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed",
			"%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path,
			strings.Join(allowed, ", ")))
		return
	}
	writeError(w, errorf(http.StatusNotFound, fsm.CodeNotFound, "no route for %s %s",
		r.Method, r.URL.Path))
}

// Handler returns the server's root handler with its middleware.
func (s *Server) Handler() http.Handler {
	return s.withMiddleware(s.mux)
}

// withMiddleware wraps h with, outermost first: panic recovery, metrics,
// the node headers, the checks of the path and of the X-Shoal-User and
// Idempotency-Key headers (each at most once and not empty), the body limit
// and identity resolution.
func (s *Server) withMiddleware(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			rec.body = &eofTracker{ReadCloser: r.Body}
			r.Body = rec.body
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", p)
				if !rec.wrote {
					writeError(rec, errorf(http.StatusInternalServerError, "internal",
						"internal error"))
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			s.latency.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).
				Observe(time.Since(start).Seconds())
		}()

		rec.Header().Set(HeaderNode, s.node.ID())
		rec.Header().Set(HeaderIndex, strconv.FormatUint(s.node.AppliedIndex(), 10))
		if escaped := r.URL.EscapedPath(); !cleanPath(escaped) {
			// The router would answer with a redirect; say what is wrong.
			writeError(rec, badRequest("path %q has empty, '.' or '..' segments; "+
				"escape such names (%%2E for '.')", escaped))
			return
		}
		for _, name := range []string{HeaderUser, HeaderIdempotencyKey} {
			if _, err := singleHeader(r, name, false); err != nil {
				writeError(rec, err)
				return
			}
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(rec, r.Body, s.cfg.MaxBodyBytes)
		}
		r = r.WithContext(withIdentity(r.Context(), resolveIdentity(r)))
		h.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status a handler wrote, for metrics, and
// closes the connection after a reply to a request whose body was not read
// to its end (see closeIfBodyUnread).
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool

	// body tracks the request body, nil for a request without one.
	body *eofTracker
}

func (r *statusRecorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
		r.closeIfBodyUnread()
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(p)
}

// Flush lets server-sent events through the recorder.
func (r *statusRecorder) Flush() {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// closeIfBodyUnread closes the connection after this reply when the
// request came with a body the handler did not read to its end (a request
// refused before its body was read: a bad query, route, method or header).
// Otherwise net/http reads the rest of the body, before the reply or
// after it, with no deadline: a client that holds its body back, as one
// that sent Expect: 100-continue does, would get no reply or keep the
// connection for ever. The read deadline set in the past makes that read
// fail at once.
func (r *statusRecorder) closeIfBodyUnread() {
	if r.body != nil && !r.body.eof.Load() {
		r.Header().Set("Connection", "close")
		_ = http.NewResponseController(r.ResponseWriter).SetReadDeadline(time.Now())
	}
}

// eofTracker notes when a request body has been read to its end.
type eofTracker struct {
	io.ReadCloser
	eof atomic.Bool
}

func (t *eofTracker) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		t.eof.Store(true)
	}
	return n, err
}

// Unwrap gives http.ResponseController the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// leaderOnly runs h on the leader: a follower passes the request to the
// leader unchanged and relays its answer. The follower reads the body
// first, so that a body it cannot read is the client's error (see
// readBody) and not a leader that seems unreachable.
func (s *Server) leaderOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.node.IsLeader() {
			h(w, r)
			return
		}
		body, err := s.readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		r.TransferEncoding = nil
		_, leader, err := s.node.LeaderHTTP()
		if err != nil || r.Header.Get(headerForwarded) != "" {
			writeError(w, node.ErrNoLeader)
			return
		}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", leader
				pr.Out.Host = leader
				pr.Out.Header.Set(headerForwarded, s.node.ID())
			},
			ModifyResponse: func(resp *http.Response) error {
				// The reply is the leader's: say so.
				resp.Header.Del(HeaderNode)
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				writeError(w, node.ErrNoLeader)
			},
		}
		proxy.ServeHTTP(w, r)
	}
}

// Identity is who is making a request. Today it is whatever the caller
// names in the X-Shoal-User header (empty when absent; the middleware
// refuses the header given twice or empty); authentication
// replaces resolveIdentity and nothing else.
type Identity struct {
	User string
}

type identityKey struct{}

func resolveIdentity(r *http.Request) Identity {
	return Identity{User: r.Header.Get(HeaderUser)}
}

func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity the middleware resolved for ctx.
func IdentityFrom(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}

// cleanPath reports whether p, an escaped URL path, is already in the form
// the router wants: no empty, "." or ".." segments (a trailing slash is
// allowed).
func cleanPath(p string) bool {
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned == p
}
