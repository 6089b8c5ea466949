// Package transport carries traffic between shoal nodes: the Raft stream
// layer over TCP, and the forwarding of writes and read-index requests
// from a follower to the leader over the leader's HTTP port.
package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/internal/logging"
)

// Errors a forwarding call can return; callers branch on them.
var (
	// ErrNotLeader means the node asked is no longer the leader.
	ErrNotLeader = errors.New("transport: not the leader")

	// ErrNoLeader means the node asked knows of no leader right now.
	ErrNoLeader = errors.New("transport: no leader")

	// ErrRefused means the peer refused the request as malformed or from a
	// node that is not a member.
	ErrRefused = errors.New("transport: refused by peer")
)

// Paths of the node-to-node HTTP endpoints.
const (
	PathPropose   = "/internal/v1/propose"
	PathReadIndex = "/internal/v1/read-index"
	PathStatus    = "/internal/v1/status"
)

// HeaderFrom names the node that sends a node-to-node request.
const HeaderFrom = "X-Shoal-From"

// maxCommandBytes bounds a forwarded command.
const maxCommandBytes = 8 << 20

// NewRaft starts Raft's TCP stream layer listening on bind and telling
// peers to reach it at advertise (bind if empty).
func NewRaft(bind, advertise string, logger *slog.Logger) (*raft.NetworkTransport, error) {
	if advertise == "" {
		advertise = bind
	}
	addr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("transport: resolve raft address %q: %w", advertise, err)
	}
	config := &raft.NetworkTransportConfig{
		MaxPool: 4,
		Timeout: 2 * time.Second,
		Logger:  logging.Hclog(logger.With("component", "raft-transport")),
	}
	rewrites, err := dialRewrites()
	if err != nil {
		return nil, err
	}
	if len(rewrites) > 0 {
		logger.Warn("node-to-node connections are rerouted by "+DialMapEnv,
			"component", "raft-transport", "rewrites", len(rewrites))
		listener, err := net.Listen("tcp", bind)
		if err != nil {
			return nil, fmt.Errorf("transport: listen for raft on %q: %w", bind, err)
		}
		config.Stream = &rewritingStream{Listener: listener, advertise: addr, rewrites: rewrites}
		return raft.NewNetworkTransportWithConfig(config), nil
	}
	trans, err := raft.NewTCPTransportWithConfig(bind, addr, config)
	if err != nil {
		return nil, fmt.Errorf("transport: listen for raft on %q: %w", bind, err)
	}
	return trans, nil
}

// DialMapEnv names an environment variable that reroutes this node's
// outgoing node-to-node connections, for fault injection in tests: a
// comma-separated list of from=to host:port pairs. A Raft connection or a
// forwarded request meant for from goes to to instead. The chaos harness
// in package cluster routes every directed link between two nodes through
// a proxy of its own this way, so that it can cut the link. Production
// nodes leave it unset.
const DialMapEnv = "SHOAL_DIAL_MAP"

// dialRewrites parses DialMapEnv.
func dialRewrites() (map[string]string, error) {
	spec := strings.TrimSpace(os.Getenv(DialMapEnv))
	if spec == "" {
		return nil, nil
	}
	rewrites := map[string]string{}
	for _, pair := range strings.Split(spec, ",") {
		from, to, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("transport: %s: %q is not from=to", DialMapEnv, pair)
		}
		rewrites[from] = to
	}
	return rewrites, nil
}

// rewritingStream is Raft's TCP stream layer with DialMapEnv applied to
// every dial.
type rewritingStream struct {
	net.Listener
	advertise net.Addr
	rewrites  map[string]string
}

// Dial implements raft.StreamLayer.
func (s *rewritingStream) Dial(address raft.ServerAddress,
	timeout time.Duration) (net.Conn, error) {
	target := string(address)
	if to, ok := s.rewrites[target]; ok {
		target = to
	}
	return net.DialTimeout("tcp", target, timeout)
}

// Addr implements net.Listener: peers are told the advertised address.
func (s *rewritingStream) Addr() net.Addr { return s.advertise }

// Leader is what a node offers to its peers. The methods are called
// concurrently from HTTP handlers.
type Leader interface {
	// ProposeAsLeader stamps and proposes an encoded command; it returns
	// ErrNotLeader when this node is not the leader.
	ProposeAsLeader(ctx context.Context, cmd []byte) (*fsm.Result, error)

	// ReadIndexAsLeader confirms leadership with a quorum and returns the
	// commit index a linearizable read must wait for.
	ReadIndexAsLeader(ctx context.Context) (uint64, error)

	// PeerStatus reports this node's own view for GET /v1/cluster.
	PeerStatus() PeerStatus

	// IsMember reports whether id is in the Raft configuration.
	IsMember(id string) bool
}

// PeerStatus is one node's report of itself.
type PeerStatus struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	Leader       string `json:"leader"`
}

// Handler serves the node-to-node endpoints for target. Requests from an
// id that is not a member are refused with 403.
func Handler(target Leader) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathPropose, func(w http.ResponseWriter, r *http.Request) {
		cmd, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCommandBytes))
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			http.Error(w, "command too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, "read command: "+err.Error(), http.StatusBadRequest)
			return
		}
		var decoded fsm.Command
		if err := decoded.UnmarshalBinary(cmd); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		result, err := target.ProposeAsLeader(r.Context(), cmd)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, result)
	})
	mux.HandleFunc("GET "+PathReadIndex, func(w http.ResponseWriter, r *http.Request) {
		index, err := target.ReadIndexAsLeader(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, map[string]uint64{"index": index})
	})
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, target.PeerStatus())
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Status is harmless and lets an operator's tools see a node that
		// has not joined yet; everything else needs a member.
		if r.URL.Path != PathStatus && !target.IsMember(r.Header.Get(HeaderFrom)) {
			http.Error(w, "not a member of this cluster", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotLeader):
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)
	case errors.Is(err, ErrNoLeader):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		http.Error(w, err.Error(), http.StatusGatewayTimeout)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// Client sends node-to-node requests on behalf of one node.
type Client struct {
	self string
	http *http.Client
}

// NewClient returns a Client that identifies itself as node self. Its
// connections follow DialMapEnv when that is set.
func NewClient(self string) *Client {
	dialer := &net.Dialer{Timeout: time.Second}
	dial := dialer.DialContext
	if rewrites, _ := dialRewrites(); len(rewrites) > 0 {
		dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			if to, ok := rewrites[address]; ok {
				address = to
			}
			return dialer.DialContext(ctx, network, address)
		}
	}
	return &Client{
		self: self,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DialContext:         dial,
		}},
	}
}

// Propose forwards an encoded command to the leader at leaderHTTP.
func (c *Client) Propose(ctx context.Context, leaderHTTP string, cmd []byte) (*fsm.Result, error) {
	var result fsm.Result
	err := c.call(ctx, http.MethodPost, leaderHTTP, PathPropose, cmd, &result)
	if err != nil {
		return nil, err
	}
	return &result, nil
}

// ReadIndex asks the leader at leaderHTTP for the index a linearizable read
// must wait for.
func (c *Client) ReadIndex(ctx context.Context, leaderHTTP string) (uint64, error) {
	var reply struct {
		Index uint64 `json:"index"`
	}
	if err := c.call(ctx, http.MethodGet, leaderHTTP, PathReadIndex, nil, &reply); err != nil {
		return 0, err
	}
	return reply.Index, nil
}

// Status asks the node at httpAddr for its own view of itself.
func (c *Client) Status(ctx context.Context, httpAddr string) (PeerStatus, error) {
	var status PeerStatus
	err := c.call(ctx, http.MethodGet, httpAddr, PathStatus, nil, &status)
	return status, err
}

func (c *Client) call(ctx context.Context, method, addr, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(HeaderFrom, c.self)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("transport: %s %s: %w", method, addr, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		text := strconv.Quote(string(bytes.TrimSpace(msg)))
		switch resp.StatusCode {
		case http.StatusMisdirectedRequest:
			return fmt.Errorf("%w: %s", ErrNotLeader, addr)
		case http.StatusServiceUnavailable:
			return fmt.Errorf("%w: %s", ErrNoLeader, addr)
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%w: %s %s", ErrRefused, resp.Status, text)
		case http.StatusGatewayTimeout:
			return fmt.Errorf("transport: %s timed out: %w", addr, context.DeadlineExceeded)
		}
		return fmt.Errorf("transport: %s %s: %s %s", method, addr, resp.Status, text)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
