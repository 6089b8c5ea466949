// Package nodetest runs a one-node shoal cluster inside a test process:
// a real node (Raft, FSM, Pebble) and its HTTP API, for tests of the API,
// the client and the tools that need the real rules without starting
// processes. Cluster behaviour belongs in the cluster package's tests.
package nodetest

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shoal-db/shoal/api"
	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/comments"
	"github.com/shoal-db/shoal/hottier"
	"github.com/shoal-db/shoal/node"
)

// Config describes the node. The zero value is a node with the comments
// domain and no hot tier.
type Config struct {
	// Domains are the state machine's domains; nil means the comments
	// domain alone.
	Domains map[fsm.DomainID]fsm.Domain
	// HotTier, if not nil, configures a hot tier for the node and its API,
	// with the comment pages registered.
	HotTier *hottier.Config
}

// Server is a running one-node cluster.
type Server struct {
	// Node is the node; it leads its cluster of one.
	Node *node.Node
	// Handler is the API's root handler, to call without a connection.
	Handler http.Handler
	// Addr is the host:port of a real HTTP server in front of Handler.
	Addr string
}

// Start bootstraps a one-node cluster in a temporary directory, serves its
// API on a local port, and waits until the node leads and has recorded
// its own member address, so that nothing but the test's requests changes
// its state afterwards. Everything stops when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := raftListener.Addr().String()
	_ = raftListener.Close()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nodeCfg := node.DefaultConfig()
	nodeCfg.ID, nodeCfg.HTTPAddr, nodeCfg.RaftAddr = "n1", listener.Addr().String(), raftAddr
	nodeCfg.DataDir, nodeCfg.Bootstrap, nodeCfg.Logger = t.TempDir(), true, quiet
	nodeCfg.Domains = cfg.Domains
	if nodeCfg.Domains == nil {
		nodeCfg.Domains = map[fsm.DomainID]fsm.Domain{fsm.DomainComments: comments.New()}
	}
	n, err := node.Open(nodeCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	apiCfg := api.DefaultConfig()
	apiCfg.Logger = quiet
	if cfg.HotTier != nil {
		hot := *cfg.HotTier
		hot.Logger = quiet
		tier, err := hottier.New(hot, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tier.Close() })
		tier.Register(fsm.DomainComments, api.CommentPageChange)
		n.SetApplyObserver(api.CommentPagesObserver(tier))
		apiCfg.HotTier = tier
	}
	handler := api.New(n, apiCfg).Handler()
	server := httptest.NewUnstartedServer(handler)
	_ = server.Listener.Close()
	server.Listener = listener
	server.Start()
	t.Cleanup(server.Close)

	deadline := time.Now().Add(time.Minute)
	for {
		_, err := fsm.LookupMember(n.State(), nodeCfg.ID)
		if n.IsLeader() && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nodetest: the one-node cluster did not elect itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &Server{Node: n, Handler: handler, Addr: listener.Addr().String()}
}
