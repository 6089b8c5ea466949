package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-db/shoal/transport"
)

// Network is the harness's model of the network between the nodes of a
// local cluster, and the means to break it without root. Every directed
// link A→B gets two TCP proxies of its own, one for B's Raft port and one
// for B's HTTP port (forwarded writes and read-index requests go over
// HTTP). Node A is started with transport.DialMapEnv so that everything it
// dials for B goes through A's proxies for B, while every node still
// advertises its real addresses.
//
// Cutting A→B black-holes the link the way a dropped route does: the
// proxies keep accepting connections but stop delivering bytes in either
// direction, so the node waits for its timeouts instead of getting a fast
// refusal. Healing closes the connections that lost bytes (their streams
// are broken) and lets new ones through.
//
// Clients of the cluster reach every node directly; only traffic between
// nodes is subject to the Network. Links a node dials without the dial map
// (the one-off join request at start and the admin-endpoint proxying of a
// follower) are not routed through it.
//
// A Network is safe for concurrent use.
type Network struct {
	mu     sync.Mutex
	links  map[link]*proxy
	closed bool
}

// link is one directed link between two nodes, for one of the target's
// ports.
type link struct {
	from, to string
	port     string // "raft" or "http"
}

// NewNetwork returns a Network with no links; they are made as nodes
// start, through ProcessEnv.
func NewNetwork() *Network {
	return &Network{links: map[link]*proxy{}}
}

// ProcessEnv is a Config.ProcessEnv: it makes sure m's outgoing links to
// every other member have proxies and returns the dial map that routes m
// through them. A link's proxy outlives restarts of either end, so a cut
// stays cut when a node comes back.
func (n *Network) ProcessEnv(m Member, all []Member) []string {
	var rewrites []string
	for _, peer := range all {
		if peer.ID == m.ID {
			continue
		}
		for _, port := range []struct{ name, target string }{
			{"raft", peer.Raft}, {"http", peer.HTTP},
		} {
			p, err := n.proxy(link{from: m.ID, to: peer.ID, port: port.name}, port.target)
			if err != nil {
				// Without a proxy the link is direct and cannot be cut;
				// the harness notices when it checks Routed.
				continue
			}
			rewrites = append(rewrites, port.target+"="+p.addr())
		}
	}
	return []string{transport.DialMapEnv + "=" + strings.Join(rewrites, ",")}
}

func (n *Network) proxy(l link, target string) (*proxy, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("cluster: network closed")
	}
	if p, ok := n.links[l]; ok {
		return p, nil
	}
	p, err := newProxy(target)
	if err != nil {
		return nil, err
	}
	n.links[l] = p
	return p, nil
}

// Routed reports whether every directed link between the given nodes has
// its proxies, so that cuts between them are real.
func (n *Network) Routed(ids []string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, from := range ids {
		for _, to := range ids {
			if from == to {
				continue
			}
			for _, port := range []string{"raft", "http"} {
				if _, ok := n.links[link{from, to, port}]; !ok {
					return false
				}
			}
		}
	}
	return true
}

// Cut black-holes the directed link from→to (both of to's ports).
func (n *Network) Cut(from, to string) { n.setCut(from, to, true) }

// Heal restores the directed link from→to.
func (n *Network) Heal(from, to string) { n.setCut(from, to, false) }

func (n *Network) setCut(from, to string, cut bool) {
	n.mu.Lock()
	var targets []*proxy
	for l, p := range n.links {
		if l.from == from && l.to == to {
			targets = append(targets, p)
		}
	}
	n.mu.Unlock()
	for _, p := range targets {
		p.setCut(cut)
	}
}

// Partition cuts every link between nodes of different groups, in both
// directions; links within a group are left as they are.
func (n *Network) Partition(groups ...[]string) {
	for i, a := range groups {
		for j, b := range groups {
			if i == j {
				continue
			}
			for _, from := range a {
				for _, to := range b {
					n.Cut(from, to)
				}
			}
		}
	}
}

// HealAll restores every link.
func (n *Network) HealAll() {
	n.mu.Lock()
	all := make([]*proxy, 0, len(n.links))
	for _, p := range n.links {
		all = append(all, p)
	}
	n.mu.Unlock()
	for _, p := range all {
		p.setCut(false)
	}
}

// Cuts describes the links that are cut now, as sorted "from→to" strings.
func (n *Network) Cuts() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[string]bool{}
	for l, p := range n.links {
		if p.isCut() {
			seen[l.from+"→"+l.to] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Close stops every proxy and closes every connection through them.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	all := n.links
	n.links = map[link]*proxy{}
	n.mu.Unlock()
	for _, p := range all {
		p.close()
	}
}

// proxy relays TCP connections from its listener to target, unless cut.
type proxy struct {
	listener net.Listener
	target   string

	mu     sync.Mutex
	cut    bool
	relays map[*relay]struct{}
	done   bool
}

func newProxy(target string) (*proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cluster: proxy for %s: %w", target, err)
	}
	p := &proxy{listener: l, target: target, relays: map[*relay]struct{}{}}
	go p.serve()
	return p, nil
}

func (p *proxy) addr() string { return p.listener.Addr().String() }

func (p *proxy) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

func (p *proxy) serve() {
	for {
		in, err := p.listener.Accept()
		if err != nil {
			return
		}
		go p.handle(in)
	}
}

// handle relays one connection. While the link is cut the connection is
// accepted and its bytes are swallowed, as a black hole would.
func (p *proxy) handle(in net.Conn) {
	r := &relay{in: in}
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		in.Close()
		return
	}
	r.dropped = p.cut
	p.relays[r] = struct{}{}
	p.mu.Unlock()
	defer p.forget(r)

	if r.isDropped() {
		_, _ = io.Copy(io.Discard, in)
		return
	}
	out, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		// The target is down: the dialer sees its connection closed.
		return
	}
	if !r.attach(out) {
		out.Close()
		if r.isDropped() {
			_, _ = io.Copy(io.Discard, in)
		}
		return
	}
	done := make(chan struct{}, 2)
	go func() { r.pump(out, in); done <- struct{}{} }()
	go func() { r.pump(in, out); done <- struct{}{} }()
	<-done
	// A black hole delivers no FIN either: once cut, one end closing is
	// not passed on to the other, which learns of it only by timing out
	// or when the link heals.
	if !r.isDropped() {
		r.close()
	}
	<-done
	r.close()
}

func (p *proxy) forget(r *relay) {
	r.close()
	p.mu.Lock()
	delete(p.relays, r)
	p.mu.Unlock()
}

// setCut cuts or heals the link. Cutting makes every open connection drop
// its bytes from now on; healing closes those connections.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	var broken []*relay
	for r := range p.relays {
		if cut {
			r.drop()
		} else if r.isDropped() {
			broken = append(broken, r)
		}
	}
	p.mu.Unlock()
	for _, r := range broken {
		r.close()
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.done = true
	relays := make([]*relay, 0, len(p.relays))
	for r := range p.relays {
		relays = append(relays, r)
	}
	p.mu.Unlock()
	p.listener.Close()
	for _, r := range relays {
		r.close()
	}
}

// relay is one proxied connection.
type relay struct {
	mu      sync.Mutex
	in, out net.Conn
	dropped bool
	closed  bool
}

func (r *relay) isDropped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

func (r *relay) drop() {
	r.mu.Lock()
	r.dropped = true
	r.mu.Unlock()
}

// attach records the outgoing half; it fails if the relay was closed or
// cut while dialing.
func (r *relay) attach(out net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.dropped {
		return false
	}
	r.out = out
	return true
}

// pump copies src to dst until either fails, discarding what it reads
// once the relay is dropped.
func (r *relay) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.isDropped() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	in, out := r.in, r.out
	r.mu.Unlock()
	in.Close()
	if out != nil {
		out.Close()
	}
}
