// Package cluster starts, watches, kills and restarts a local cluster of
// real `shoal node` processes. `shoal cluster up` uses it, and so do the
// integration tests; production deployments run `shoal node` directly.
//
// A cluster lives in one directory: a data directory and a log file per
// node, and cluster.json, which records every node's addresses and process
// id so that commands in another terminal (status, kill, restart) can find
// them.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StateFile is the name of the file, in a cluster directory, that records
// the cluster's nodes.
const StateFile = "cluster.json"

// Config describes a local cluster.
type Config struct {
	// Binary is the path of the shoal executable to run.
	Binary string

	// Dir holds the cluster: node data, logs and StateFile.
	Dir string

	// Nodes is how many nodes a new cluster gets.
	Nodes int

	// Host is the address nodes listen on; 127.0.0.1 by default.
	Host string

	// HTTPBase and RaftBase are the ports of node 1; node i uses base+i-1.
	// Zero picks free ports.
	HTTPBase, RaftBase int

	// NodeArgs are extra flags for every node, such as
	// --snapshot-threshold.
	NodeArgs []string

	// Redis is the host:port of a Redis server passed to every node with
	// --redis; empty means none.
	Redis string

	// ProcessEnv, if set, returns extra environment variables (KEY=VALUE)
	// for the process of member m each time it starts; all holds every
	// member. The chaos harness uses it to route links through proxies.
	ProcessEnv func(m Member, all []Member) []string
}

// Member is one node of a local cluster.
type Member struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	Raft string `json:"raft"`
	Data string `json:"data"`
	Log  string `json:"log"`
	Pid  int    `json:"pid"`
}

// State is the content of StateFile: what a cluster directory records.
type State struct {
	Binary   string    `json:"binary"`
	NodeArgs []string  `json:"node_args,omitempty"`
	Redis    string    `json:"redis,omitempty"`
	Members  []*Member `json:"members"`

	// Supervisor is the process that started the nodes and watches them
	// (`shoal cluster up`, or a test); `shoal cluster restart` refuses to
	// start a node that no supervisor would watch.
	Supervisor *Process `json:"supervisor,omitempty"`
}

// Process names one process for as long as it lives: a pid alone may be
// reused by a later process, the pair of pid and start time is not.
type Process struct {
	Pid int `json:"pid"`
	// Start is the process's start time in clock ticks since boot, field
	// 22 of /proc/PID/stat.
	Start uint64 `json:"start"`
}

// Cluster is a running local cluster. Its methods are safe for concurrent
// use.
type Cluster struct {
	cfg Config

	mu      sync.Mutex
	state   State
	running map[string]*exec.Cmd
	exited  map[string]chan struct{}
}

// Start starts a cluster in cfg.Dir: a new one (node 1 bootstraps, the
// others join it) or, when the directory already holds one, the same
// nodes on their old addresses with their data. It returns once every
// node is ready.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{cfg: cfg, running: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}}

	existing, err := Load(cfg.Dir)
	if err == nil {
		for _, m := range existing.Members {
			if Alive(*m) {
				return nil, fmt.Errorf("cluster: %s in %s is already running (pid %d); "+
					"stop that cluster first, or use `shoal cluster status`", m.ID, cfg.Dir, m.Pid)
			}
		}
	}
	switch {
	case err == nil:
		c.state = existing
		c.state.Binary = cfg.Binary
		if cfg.Redis != "" {
			c.state.Redis = cfg.Redis
		}
		if err := checkPortsFree(c.state.Members); err != nil {
			return nil, err
		}
		c.state.Supervisor = self()
		for _, m := range c.state.Members {
			if err := c.startProcess(m, nil); err != nil {
				c.Close()
				return nil, err
			}
		}
	case errors.Is(err, os.ErrNotExist):
		if err := c.startNew(ctx); err != nil {
			c.Close()
			return nil, err
		}
	default:
		return nil, err
	}
	if err := c.save(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startNew(ctx context.Context) error {
	if c.cfg.Nodes < 1 {
		return errors.New("cluster: at least one node is needed")
	}
	c.state = State{Binary: c.cfg.Binary, NodeArgs: c.cfg.NodeArgs, Redis: c.cfg.Redis,
		Supervisor: self()}
	for i := 1; i <= c.cfg.Nodes; i++ {
		m, err := c.newMember(i)
		if err != nil {
			return err
		}
		c.state.Members = append(c.state.Members, m)
	}
	if err := checkPortsFree(c.state.Members); err != nil {
		return err
	}

	first := c.state.Members[0]
	if err := c.startProcess(first, []string{"--bootstrap"}); err != nil {
		return err
	}
	if err := c.waitReady(ctx, *first, nil); err != nil {
		return err
	}
	for _, m := range c.state.Members[1:] {
		if err := c.startProcess(m, []string{"--join", first.HTTP}); err != nil {
			return err
		}
	}
	return nil
}

// newMember chooses the addresses and paths of node i.
func (c *Cluster) newMember(i int) (*Member, error) {
	port := func(base int) (int, error) {
		if base > 0 {
			return base + i - 1, nil
		}
		return FreePort()
	}
	httpPort, err := port(c.cfg.HTTPBase)
	if err != nil {
		return nil, err
	}
	raftPort, err := port(c.cfg.RaftBase)
	if err != nil {
		return nil, err
	}
	id := "n" + strconv.Itoa(i)
	return &Member{
		ID:   id,
		HTTP: net.JoinHostPort(c.cfg.Host, strconv.Itoa(httpPort)),
		Raft: net.JoinHostPort(c.cfg.Host, strconv.Itoa(raftPort)),
		Data: filepath.Join(c.cfg.Dir, id),
		Log:  filepath.Join(c.cfg.Dir, id+".log"),
	}, nil
}

// startProcess starts m's node process with extra flags, logging to m.Log.
func (c *Cluster) startProcess(m *Member, extra []string) error {
	args := []string{"node", "--id", m.ID, "--http", m.HTTP, "--raft", m.Raft, "--data", m.Data}
	args = append(args, c.state.NodeArgs...)
	if c.state.Redis != "" {
		args = append(args, "--redis", c.state.Redis)
	}
	args = append(args, extra...)

	logFile, err := os.OpenFile(m.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	cmd := exec.Command(c.state.Binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if c.cfg.ProcessEnv != nil {
		cmd.Env = append(os.Environ(), c.cfg.ProcessEnv(*m, c.Members())...)
	}
	// Own process group: Ctrl-C in the terminal reaches `cluster up`,
	// which then stops the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("cluster: start %s: %w", m.ID, err)
	}

	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	c.mu.Lock()
	m.Pid = cmd.Process.Pid
	c.running[m.ID] = cmd
	c.exited[m.ID] = done
	c.mu.Unlock()
	return nil
}

// Members returns a copy of the cluster's members.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, len(c.state.Members))
	for i, m := range c.state.Members {
		out[i] = *m
	}
	return out
}

// Member returns the member with the given id.
func (c *Cluster) Member(id string) (Member, bool) {
	for _, m := range c.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// HTTPAddrs returns every member's HTTP address.
func (c *Cluster) HTTPAddrs() []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.HTTP)
	}
	return out
}

// Exited returns a channel closed when the process this Cluster started
// for id exits, or nil if it started none.
func (c *Cluster) Exited(id string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited[id]
}

// Kill sends SIGKILL to a node and waits for it to exit.
func (c *Cluster) Kill(id string) error { return c.signal(id, syscall.SIGKILL, true) }

// Stop sends SIGTERM to a node and waits for it to exit.
func (c *Cluster) Stop(id string) error { return c.signal(id, syscall.SIGTERM, true) }

// Pause stops a node's process with SIGSTOP; Resume continues it.
func (c *Cluster) Pause(id string) error { return c.signal(id, syscall.SIGSTOP, false) }

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(id string) error { return c.signal(id, syscall.SIGCONT, false) }

func (c *Cluster) signal(id string, sig syscall.Signal, wait bool) error {
	c.mu.Lock()
	cmd, done := c.running[id], c.exited[id]
	c.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("cluster: %s is not running", id)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("cluster: signal %s: %w", id, err)
	}
	if !wait {
		return nil
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	c.mu.Lock()
	delete(c.running, id)
	c.mu.Unlock()
	return nil
}

// Restart starts a stopped node again with its data directory, which
// remembers the cluster. It does not wait: a node alone cannot become
// ready without a quorum, so callers restart what they need and then
// call WaitReady.
func (c *Cluster) Restart(id string) error {
	c.mu.Lock()
	var member *Member
	for _, m := range c.state.Members {
		if m.ID == id {
			member = m
		}
	}
	_, running := c.running[id]
	c.mu.Unlock()
	if member == nil {
		return fmt.Errorf("cluster: no member %s", id)
	}
	if running {
		return fmt.Errorf("cluster: %s is still running", id)
	}
	if err := c.startProcess(member, nil); err != nil {
		return err
	}
	return c.save()
}

// Grow adds a new node that joins through a running member and waits
// until it is ready.
func (c *Cluster) Grow(ctx context.Context) (Member, error) {
	c.mu.Lock()
	m, err := c.newMember(len(c.state.Members) + 1)
	if err == nil {
		c.state.Members = append(c.state.Members, m)
	}
	via := c.state.Members[0].HTTP
	for _, other := range c.state.Members {
		if _, ok := c.running[other.ID]; ok {
			via = other.HTTP
			break
		}
	}
	c.mu.Unlock()
	if err != nil {
		return Member{}, err
	}
	if err := c.startProcess(m, []string{"--join", via}); err != nil {
		return Member{}, err
	}
	if err := c.save(); err != nil {
		return Member{}, err
	}
	return *m, c.waitReady(ctx, *m, nil)
}

// WaitReady waits until every running node answers /readyz with 200 as
// itself (its X-Shoal-Node header names it). It fails early when one of
// them exits, with the last lines of its log, or when another process
// answers on a node's address.
func (c *Cluster) WaitReady(ctx context.Context) error {
	var waiting []Member
	for _, m := range c.Members() {
		if c.Running(m.ID) {
			waiting = append(waiting, m)
		}
	}
	for _, m := range waiting {
		if err := c.waitReady(ctx, m, waiting); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every node this Cluster started, gently first.
func (c *Cluster) Close() {
	c.mu.Lock()
	ids := make([]string, 0, len(c.running))
	for id := range c.running {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Stop(id)
		}()
	}
	wg.Wait()
}

func (c *Cluster) save() error {
	c.mu.Lock()
	raw, err := json.MarshalIndent(c.state, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.cfg.Dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return os.Rename(tmp, filepath.Join(c.cfg.Dir, StateFile))
}

// Load reads the state of the cluster in dir.
func Load(dir string) (State, error) {
	var state State
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return state, err
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		return state, fmt.Errorf("cluster: %s: %w", filepath.Join(dir, StateFile), err)
	}
	return state, nil
}

// waitReady polls m's /readyz until m answers 200 or ctx ends. It fails
// at once when a node of another process answers on m's address, and when
// the process started for m, or for any member of others (which m may
// need for a quorum), exits.
func (c *Cluster) waitReady(ctx context.Context, m Member, others []Member) error {
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		if err := c.checkExited(append([]Member{m}, others...)); err != nil {
			return err
		}
		resp, err := client.Get("http://" + m.HTTP + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if id := resp.Header.Get(nodeHeader); id != m.ID {
				// Our process may have died of the clash meanwhile:
				// its log says why, which is the better message.
				if err := c.checkExited([]Member{m}); err != nil {
					return err
				}
				return fmt.Errorf("cluster: %s answers as node %q, not as %s: another "+
					"process holds %s's HTTP port (another cluster?); see %s",
					m.HTTP, id, m.ID, m.ID, m.Log)
			}
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready: %w (last: %v); see %s", m.ID, ctx.Err(),
				last, m.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nodeHeader is the response header in which a node names itself.
const nodeHeader = "X-Shoal-Node"

// checkExited returns an error when the process this Cluster started for
// one of members has exited without being stopped, quoting the end of its
// log.
func (c *Cluster) checkExited(members []Member) error {
	for _, m := range members {
		c.mu.Lock()
		_, running := c.running[m.ID]
		done := c.exited[m.ID]
		c.mu.Unlock()
		if !running || done == nil {
			continue
		}
		select {
		case <-done:
		default:
			continue
		}
		// Kill and Stop forget a process only after it exited; a member
		// still in running after a moment's grace died by itself.
		time.Sleep(10 * time.Millisecond)
		if !c.Running(m.ID) {
			continue
		}
		tail := logTail(m.Log, 3)
		if tail == "" {
			return fmt.Errorf("cluster: %s exited at start; see %s", m.ID, m.Log)
		}
		return fmt.Errorf("cluster: %s exited at start: %s (see %s)", m.ID, tail, m.Log)
	}
	return nil
}

// logTail returns the last n non-empty lines of the log at path, joined
// by " | ", or "" if it cannot be read.
func logTail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(raw) > 64<<10 {
		raw = raw[len(raw)-64<<10:]
	}
	var lines []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ErrPortInUse is returned by Start when a node's address is taken.
var ErrPortInUse = errors.New("cluster: port in use")

// checkPortsFree fails when one of the members' HTTP or Raft addresses is
// taken, naming the member and the address: a node would fail to bind it,
// and another node already listening there would answer in its place.
func checkPortsFree(members []*Member) error {
	for _, m := range members {
		for _, a := range []struct{ kind, addr string }{{"HTTP", m.HTTP}, {"Raft", m.Raft}} {
			l, err := net.Listen("tcp", a.addr)
			if err != nil {
				return fmt.Errorf("%w: %s's %s address %s is taken by another process "+
					"(another cluster?): %v", ErrPortInUse, m.ID, a.kind, a.addr, err)
			}
			l.Close()
		}
	}
	return nil
}

// handedOut remembers every port FreePort returned in this process: the
// kernel may offer a port again as soon as its probe listener is closed,
// and two nodes of one cluster must never be given the same one.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort asks the kernel for a free TCP port on 127.0.0.1 that this
// process has not handed out before.
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for attempt := 0; attempt < 100; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("cluster: find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("cluster: no fresh free port after 100 tries")
}
