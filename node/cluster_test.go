package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/node"
	"github.com/shoal-db/shoal/transport"
)

// settle bounds every wait on the cluster: elections, replication and
// membership changes take well under a second, so only a bug misses it,
// even on a loaded machine under -race.
const settle = 30 * time.Second

// testNode is one in-process member: a real node (Raft over TCP on a
// local port, Pebble in a temporary directory) behind a real HTTP server
// that serves the node-to-node endpoints, as the api package mounts them,
// and the join endpoint the node's --join loop calls.
type testNode struct {
	*node.Node
	cfg    node.Config
	server *httptest.Server

	// forwarded counts the write requests this node received from peers.
	forwarded atomic.Int32

	stopOnce sync.Once
	stopped  atomic.Bool
}

// member returns the node's member record.
func (tn *testNode) member() fsm.Member {
	return fsm.Member{ID: tn.cfg.ID, HTTP: tn.cfg.HTTPAddr, Raft: tn.cfg.RaftAddr}
}

// stop shuts the node's HTTP server and the node down; it is idempotent.
func (tn *testNode) stop(t *testing.T) {
	tn.stopOnce.Do(func() {
		tn.stopped.Store(true)
		tn.server.Close()
		require.NoError(t, tn.Node.Close())
	})
}

// handedOut remembers the Raft ports given out in this process, so that
// two nodes never get the same one.
var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// freeAddr returns a local host:port that was free a moment ago and has
// not been handed out before.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		if !handedOut.ports[addr] {
			handedOut.ports[addr] = true
			return addr
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startNode opens a node with the given id; configure may set Bootstrap
// or Join. The node stops when the test ends.
func startNode(t *testing.T, id string, configure func(*node.Config)) *testNode {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	cfg := node.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.Logger = id, listener.Addr().String(), quietLogger()
	cfg.Domains = map[fsm.DomainID]fsm.Domain{fsm.DomainStocks: stocks.Domain{}}
	if configure != nil {
		configure(&cfg)
	}
	var n *node.Node
	for attempt := 1; ; attempt++ {
		// The probed Raft port can be taken before Raft listens on it.
		cfg.RaftAddr, cfg.DataDir = freeAddr(t), t.TempDir()
		if n, err = node.Open(cfg); err == nil || attempt == 5 {
			break
		}
	}
	require.NoError(t, err)
	return serveNode(t, n, cfg, listener)
}

// restart opens a stopped node again on its data directory and addresses,
// as a restarted process would.
func restart(t *testing.T, old *testNode) *testNode {
	t.Helper()
	require.True(t, old.stopped.Load(), "restart of a running node")
	listener, err := net.Listen("tcp", old.cfg.HTTPAddr)
	require.NoError(t, err)
	cfg := old.cfg
	cfg.Bootstrap, cfg.Join = false, ""
	n, err := node.Open(cfg)
	if err != nil {
		_ = listener.Close()
	}
	require.NoError(t, err)
	return serveNode(t, n, cfg, listener)
}

// serveNode serves n's HTTP endpoints on listener until the test ends.
func serveNode(t *testing.T, n *node.Node, cfg node.Config, listener net.Listener) *testNode {
	t.Helper()
	tn := &testNode{Node: n, cfg: cfg}
	peer := transport.Handler(n)
	mux := http.NewServeMux()
	mux.Handle("/internal/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == transport.PathPropose {
			tn.forwarded.Add(1)
		}
		peer.ServeHTTP(w, r)
	}))
	// What `shoal node --join` asks of a member; the api package serves
	// the same route with more validation.
	mux.HandleFunc("POST /v1/cluster/nodes", func(w http.ResponseWriter, r *http.Request) {
		var m fsm.Member
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := n.AddMember(r.Context(), m); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	tn.server = httptest.NewUnstartedServer(mux)
	_ = tn.server.Listener.Close()
	tn.server.Listener = listener
	tn.server.Start()
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

// testCluster is a set of in-process nodes.
type testCluster struct {
	t     *testing.T
	nodes []*testNode
}

// startCluster bootstraps n1, lets n2 … nN join through it as `shoal node
// --join` does, and waits until every node is a voter that knows the
// leader and every member's address.
func startCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	return startClusterWith(t, size, func(*node.Config) {})
}

// startClusterWith is startCluster with every node's configuration first
// changed by configure.
func startClusterWith(t *testing.T, size int, configure func(*node.Config)) *testCluster {
	t.Helper()
	ids := []string{"n1", "n2", "n3", "n4", "n5"}[:size]
	first := startNode(t, ids[0], func(c *node.Config) {
		configure(c)
		c.Bootstrap = true
	})
	c := &testCluster{t: t, nodes: []*testNode{first}}
	for _, id := range ids[1:] {
		c.nodes = append(c.nodes, startNode(t, id, func(cfg *node.Config) {
			configure(cfg)
			cfg.Join = first.cfg.HTTPAddr
		}))
	}
	c.waitConverged()
	return c
}

// running returns the nodes not stopped.
func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if !tn.stopped.Load() {
			out = append(out, tn)
		}
	}
	return out
}

// waitConverged waits until every running node is a member, agrees on one
// leader and has the member record of every running node.
func (c *testCluster) waitConverged() {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		leader := ""
		for _, tn := range c.running() {
			if !tn.IsMember(tn.ID()) {
				return false
			}
			id, _, err := tn.LeaderHTTP()
			if err != nil || (leader != "" && id != leader) {
				return false
			}
			leader = id
			for _, other := range c.running() {
				m, err := fsm.LookupMember(tn.State(), other.ID())
				if err != nil || m != other.member() {
					return false
				}
			}
		}
		return true
	}, settle, 10*time.Millisecond, "the cluster did not converge")
}

// leader waits until the running nodes agree on a leader and returns it.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var found *testNode
	require.Eventually(c.t, func() bool {
		found = nil
		for _, tn := range c.running() {
			if tn.IsLeader() {
				if found != nil {
					return false
				}
				found = tn
			}
		}
		if found == nil {
			return false
		}
		for _, tn := range c.running() {
			if id, _, err := tn.LeaderHTTP(); err != nil || id != found.ID() {
				return false
			}
		}
		return true
	}, settle, 10*time.Millisecond, "no agreed leader")
	return found
}

// followers returns the running nodes other than leader.
func (c *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, tn := range c.running() {
		if tn != leader {
			out = append(out, tn)
		}
	}
	return out
}

// forwardedTotal is how many writes the nodes received from peers.
func (c *testCluster) forwardedTotal() int32 {
	var total int32
	for _, tn := range c.nodes {
		total += tn.forwarded.Load()
	}
	return total
}

// byID returns the node with the given id.
func (c *testCluster) byID(id string) *testNode {
	for _, tn := range c.nodes {
		if tn.ID() == id {
			return tn
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

// putQuote returns the command that sets symbol to price.
func putQuote(symbol, price, key string) fsm.Command {
	cmd := stocks.PutCommand{Symbol: symbol, Price: price}.Command()
	cmd.IdempotencyKey = key
	return cmd
}

// propose proposes cmd on tn and requires the state machine to accept it.
func propose(t *testing.T, tn *testNode, cmd fsm.Command) *fsm.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	result, err := tn.Propose(ctx, cmd)
	require.NoError(t, err)
	require.Nil(t, result.Err)
	require.NotZero(t, result.Index)
	return result
}

// quote reads symbol from tn's local state.
func quote(t *testing.T, tn *testNode, symbol string) stocks.Quote {
	t.Helper()
	q, err := stocks.Get(tn.State(), symbol)
	require.NoError(t, err, "%s has no quote for %s", tn.ID(), symbol)
	return q
}

// requireConflict requires err to be the state machine's conflict error.
func requireConflict(t *testing.T, err error) {
	t.Helper()
	var fe *fsm.Error
	require.True(t, errors.As(err, &fe), "want an fsm conflict, got %v", err)
	require.Equal(t, fsm.CodeConflict, fe.Code, "%v", err)
}

// voterIDs returns the ids in tn's cluster status, sorted.
func voterIDs(t *testing.T, tn *testNode) []string {
	t.Helper()
	status, err := tn.Cluster(context.Background())
	require.NoError(t, err)
	var ids []string
	for _, m := range status.Nodes {
		if m.Voter {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func joinIDs(ids []string) string { return strings.Join(ids, ",") }
