package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/cluster"
)

func init() {
	clusterCmd := &cobra.Command{
		Use:   "cluster",
		Short: "Start and inspect a local cluster of real node processes",
		Long: `Start a local cluster with "shoal cluster up" and keep it in the foreground;
from a second terminal, watch it with "shoal cluster status", kill a node with
"shoal cluster kill n1" and bring it back with "shoal cluster restart n1".`,
		RunE: requireSubcommand,
	}
	var dir string
	clusterCmd.PersistentFlags().StringVar(&dir, "dir", "./data", "cluster directory")

	cfg := cluster.Config{}
	up := &cobra.Command{
		Use:   "up",
		Short: "Start a local cluster and keep it running until Ctrl-C",
		Long: `Start N real "shoal node" processes on this machine: node 1 bootstraps a
new cluster and the others join it. Each node keeps its data in DIR/nI and
logs to DIR/nI.log. Running "up" again on the same directory restarts the
same nodes on the same addresses with all their data.

While it runs, "up" prints leader changes and nodes going away or coming
back. Ctrl-C stops every node gracefully.`,
		Example: `  shoal cluster up
  shoal cluster up --nodes 5 --dir /tmp/shoal --http-base 7001 --raft-base 7101`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkUpFlags(cfg); err != nil {
				return err
			}
			return checkFlagsAgainstDir(cmd, dir, cfg)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary, cfg.Dir = bin, dir
			return clusterUp(cmd.OutOrStdout(), cfg)
		},
	}
	up.Flags().IntVar(&cfg.Nodes, "nodes", 3, "number of nodes of a new cluster (1-"+
		fmt.Sprint(maxNodes)+")")
	up.Flags().IntVar(&cfg.HTTPBase, "http-base", 8081, "HTTP port of node 1 of a new "+
		"cluster; node i uses base+i-1 (0: free ports)")
	up.Flags().IntVar(&cfg.RaftBase, "raft-base", 9081, "Raft port of node 1 of a new "+
		"cluster; node i uses base+i-1 (0: free ports)")
	up.Flags().StringSliceVar(&cfg.NodeArgs, "node-arg", nil,
		"extra flag for every node, repeatable (e.g. --node-arg=--snapshot-threshold=100)")
	up.Flags().StringVar(&cfg.Redis, "redis", "", "host:port of a Redis for the hot tier; "+
		"by default one is started in DIR/redis when redis-server is on the PATH; off for none")

	var addr string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every node's role, address and applied index",
		Example: `  shoal cluster status
  shoal cluster status --addr 127.0.0.1:8082`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return clusterStatus(cmd.Context(), cmd.OutOrStdout(), dir, addr)
		},
	}
	status.Flags().StringVar(&addr, "addr", "", "ask this node (host:port) instead of the "+
		"nodes recorded in --dir")

	kill := &cobra.Command{
		Use:     "kill ID",
		Short:   "kill -9 one node of the local cluster",
		Example: "  shoal cluster kill n1",
		Args:    oneNodeID,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := cluster.SignalMember(dir, args[0], syscall.SIGKILL)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "killed %s (pid %d)\n", m.ID, m.Pid)
			return nil
		},
	}
	restart := &cobra.Command{
		Use:   "restart ID",
		Short: "Start a stopped node of the local cluster again, with its data",
		Long: `Start a stopped node of the local cluster again, with its data, while the
"shoal cluster up" that runs the cluster watches it. Without that "up" the
node would run alone, so restart refuses: run "shoal cluster up --dir DIR"
to start the whole cluster again.`,
		Example: "  shoal cluster restart n1",
		Args:    oneNodeID,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := cluster.StartDetached(dir, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "started %s (pid %d), logging to %s\n", m.ID, m.Pid, m.Log)
			return nil
		},
	}
	clusterCmd.AddCommand(up, status, kill, restart)
	rootCmd.AddCommand(clusterCmd)
}

// oneNodeID accepts exactly one argument, the id of a node.
func oneNodeID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s needs the id of one node, such as n1 "+
			"(shoal cluster status lists them); got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

func clusterUp(out io.Writer, cfg cluster.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// With stdout a pipe whose reader has gone (| head), a write would
	// kill the process by SIGPIPE and leave its nodes running; ignored,
	// the write fails and the shutdown below still stops them.
	signal.Ignore(syscall.SIGPIPE)

	out = &syncWriter{w: out}

	redis, err := startClusterRedis(ctx, out, &cfg)
	if err != nil {
		return err
	}
	if redis != nil {
		defer redis.Stop()
		stopping := make(chan struct{})
		defer close(stopping) // before redis.Stop: its exit is no news then
		go watchRedis(out, redis, filepath.Join(cfg.Dir, "redis"), stopping)
	}

	starting := "starting %d nodes in %s ...\n"
	if state, err := cluster.Load(cfg.Dir); err == nil {
		starting, cfg.Nodes = "starting the %d nodes recorded in %s ...\n", len(state.Members)
	}
	fmt.Fprintf(out, starting, cfg.Nodes, cfg.Dir)
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	c, err := cluster.Start(startCtx, cfg)
	cancel()
	if errors.Is(err, cluster.ErrPortInUse) {
		return fmt.Errorf("%w; nothing was started. Stop what holds the port, or start "+
			"another cluster in a new --dir on other ports (--http-base, --raft-base)", err)
	}
	if err != nil {
		return fmt.Errorf("%w; the processes this command started are stopped", err)
	}
	defer func() {
		fmt.Fprintln(out, "stopping the cluster ...")
		skip := map[int]bool{}
		for _, m := range c.Members() {
			skip[m.Pid] = c.Running(m.ID)
		}
		c.Close()
		cluster.StopStrays(cfg.Dir, skip)
	}()

	// Joins are recorded a moment after the nodes are ready; wait briefly
	// so the first table shows every node.
	status, _ := anyStatus(ctx, targetsOf(c.Members()))
	for wait := 0; wait < 40 && !allReachable(status); wait++ {
		time.Sleep(50 * time.Millisecond)
		status, _ = anyStatus(ctx, targetsOf(c.Members()))
	}
	printTable(out, cfg.Dir, status, c.Members())
	members := c.Members()
	self := shellPath(os.Args[0])
	fmt.Fprintf(out, "\nready. Try, in another terminal:\n"+
		"  curl -X PUT http://%s/v1/stocks/DEMO -d '{\"price\": \"116.03\"}'\n"+
		"  curl http://%s/v1/stocks/DEMO\n"+
		"  %s cluster status --dir %s\n"+
		"  %s cluster kill %s --dir %s    (kill -9 the leader; watch the failover here)\n"+
		"Ctrl-C stops the cluster; its data stays in %s.\n\n",
		members[0].HTTP, members[len(members)-1].HTTP, self, cfg.Dir, self, status.Leader,
		cfg.Dir, cfg.Dir)

	watch(ctx, out, c, status)
	return nil
}

// watch prints leader changes and nodes that stop answering or come back,
// until ctx ends.
func watch(ctx context.Context, out io.Writer, c *cluster.Cluster, last cluster.Status) {
	states := map[string]string{}
	for _, n := range last.Nodes {
		states[n.ID] = n.State
	}
	leader := last.Leader
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		var members []cluster.Member
		for _, m := range c.Members() {
			if cluster.Alive(m) || c.Running(m.ID) {
				members = append(members, m)
			}
		}
		status, err := anyStatus(ctx, targetsOf(members))
		if err != nil {
			continue
		}
		now := time.Now().Format("15:04:05.000")
		if status.Leader != leader {
			if status.Leader == "" {
				fmt.Fprintf(out, "%s  no leader (election in progress)\n", now)
			} else {
				fmt.Fprintf(out, "%s  leader is now %s (term %d)\n", now, status.Leader,
					status.Term)
			}
			leader = status.Leader
		}
		for _, n := range status.Nodes {
			if prev := states[n.ID]; prev != n.State && (prev == "unreachable" ||
				n.State == "unreachable" || prev == "") {
				fmt.Fprintf(out, "%s  %s is %s\n", now, n.ID, n.State)
			}
			states[n.ID] = n.State
		}
	}
}

// target is a node to ask for the cluster status: its HTTP address and,
// when known, the id it must answer as.
type target struct {
	addr, id string
}

// targetsOf returns the members as targets.
func targetsOf(members []cluster.Member) []target {
	out := make([]target, len(members))
	for i, m := range members {
		out[i] = target{addr: m.HTTP, id: m.ID}
	}
	return out
}

// anyStatus asks the given nodes in turn for the cluster status and
// returns the leader's own answer when it can: a node that has just
// restarted may not yet know how its peers are doing. A node that
// answers as another id than its target's (a node of another cluster on
// the same port) is not asked again.
func anyStatus(ctx context.Context, targets []target) (cluster.Status, error) {
	expect := map[string]string{}
	for _, t := range targets {
		expect[t.addr] = t.id
	}
	query := func(addr string) (cluster.Status, error) {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		status, err := cluster.QueryStatus(qctx, addr)
		if id := expect[addr]; err == nil && id != "" && status.Node != id {
			return cluster.Status{}, fmt.Errorf("%s answers as node %q, not as %s: a node "+
				"of another cluster holds its port", addr, status.Node, id)
		}
		return status, err
	}
	var best cluster.Status
	var lastErr error = fmt.Errorf("no node answered")
	answered := false
	for _, t := range targets {
		a := t.addr
		status, err := query(a)
		if err != nil {
			if !answered {
				lastErr = err
			}
			continue
		}
		if status.Leader == "" {
			// Keep a leaderless answer: without a quorum it is the truth.
			best, lastErr, answered = status, nil, true
			continue
		}
		for _, n := range status.Nodes {
			if n.ID == status.Leader && n.HTTP != "" && n.HTTP != a {
				if fromLeader, err := query(n.HTTP); err == nil && fromLeader.Leader != "" {
					return fromLeader, nil
				}
			}
		}
		return status, nil
	}
	return best, lastErr
}

// clusterStatus prints the status of the cluster in dir, asked of its
// running nodes only (a node of another cluster may hold the port of one
// that is down), or of the nodes at addr.
func clusterStatus(ctx context.Context, out io.Writer, dir, addr string) error {
	var members []cluster.Member
	var targets []target
	if addr == "" {
		state, err := cluster.Load(dir)
		if err != nil {
			return fmt.Errorf("no cluster in %s (start one with `shoal cluster up --dir %s`, "+
				"or pass --addr): %w", dir, dir, err)
		}
		for _, m := range state.Members {
			members = append(members, *m)
			if cluster.Alive(*m) {
				targets = append(targets, target{addr: m.HTTP, id: m.ID})
			}
		}
		if len(targets) == 0 {
			return fmt.Errorf("no node of the cluster in %s is running (start it with "+
				"`shoal cluster up --dir %s`)", dir, dir)
		}
	} else {
		addrs, err := splitAddrs(addr)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			targets = append(targets, target{addr: a})
		}
	}
	status, err := anyStatus(ctx, targets)
	if err != nil {
		return fmt.Errorf("no node answered: %w", err)
	}
	printTable(out, dir, status, members)
	return nil
}

func printTable(out io.Writer, dir string, status cluster.Status, members []cluster.Member) {
	pids := map[string]string{}
	for _, m := range members {
		pid := "-"
		if cluster.Alive(m) {
			pid = fmt.Sprint(m.Pid)
		}
		pids[m.ID] = pid
	}
	nodes := status.Nodes
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })

	leader := status.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(out, "leader %s, term %d\n", leader, status.Term)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHTTP\tRAFT\tPID\tROLE\tAPPLIED")
	for _, n := range nodes {
		pid := pids[n.ID]
		if pid == "" {
			pid = "?"
		}
		// An unreachable node's index is unknown, not 0.
		applied := "-"
		if n.State != client.StateUnreachable {
			applied = fmt.Sprint(n.AppliedIndex)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.HTTP, n.Raft, pid, n.State,
			applied)
	}
	_ = tw.Flush()
	_ = dir
}

// allReachable reports whether status lists nodes and none is unreachable.
func allReachable(status cluster.Status) bool {
	for _, n := range status.Nodes {
		if n.State == "unreachable" || n.HTTP == "" {
			return false
		}
	}
	return len(status.Nodes) > 0
}

// shellPath is how to call this binary again from the current directory:
// "bin/shoal" when it was started as bin/shoal, "shoal" from the PATH.
func shellPath(arg0 string) string {
	if !strings.Contains(arg0, "/") {
		return arg0
	}
	if rel, err := filepath.Rel(".", arg0); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return arg0
}

// maxNodes is the largest cluster `shoal cluster up` starts.
const maxNodes = 99

// checkUpFlags checks the numbers given to `cluster up` before anything
// starts.
func checkUpFlags(cfg cluster.Config) error {
	if cfg.Nodes < 1 || cfg.Nodes > maxNodes {
		return fmt.Errorf("--nodes %d: want 1-%d", cfg.Nodes, maxNodes)
	}
	last := 65535 - (cfg.Nodes - 1)
	for _, f := range []struct {
		name string
		base int
	}{{"--http-base", cfg.HTTPBase}, {"--raft-base", cfg.RaftBase}} {
		if f.base != 0 && (f.base < 1 || f.base > last) {
			return fmt.Errorf("%s %d: want 1-%d for %d nodes (node i uses base+i-1), or 0 "+
				"for free ports", f.name, f.base, last, cfg.Nodes)
		}
	}
	if h, r := cfg.HTTPBase, cfg.RaftBase; h != 0 && r != 0 && h < r+cfg.Nodes &&
		r < h+cfg.Nodes {
		return fmt.Errorf("--http-base %d and --raft-base %d: the ports of %d nodes overlap "+
			"(%d-%d and %d-%d)", h, r, cfg.Nodes, h, h+cfg.Nodes-1, r, r+cfg.Nodes-1)
	}
	return nil
}

// checkFlagsAgainstDir refuses --nodes, --http-base, --raft-base and
// --node-arg given explicitly for a directory that already holds a
// cluster with other values: its nodes keep the addresses and flags they
// were created with, as etcd members keep theirs.
func checkFlagsAgainstDir(cmd *cobra.Command, dir string, cfg cluster.Config) error {
	state, err := cluster.Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(state.Members) == 0 {
		return fmt.Errorf("%s records no nodes; remove it or choose another --dir",
			filepath.Join(dir, cluster.StateFile))
	}
	var https, rafts []string
	for _, m := range state.Members {
		https, rafts = append(https, m.HTTP), append(rafts, m.Raft)
	}
	holds := fmt.Sprintf("%s holds a cluster of %d nodes with HTTP on %s and Raft on %s",
		dir, len(state.Members), strings.Join(https, ", "), strings.Join(rafts, ", "))
	if len(state.NodeArgs) > 0 {
		holds += fmt.Sprintf(", node flags %s", strings.Join(state.NodeArgs, " "))
	}
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	var clash []string
	flags := cmd.Flags()
	if flags.Changed("nodes") && cfg.Nodes != len(state.Members) {
		clash = append(clash, fmt.Sprintf("--nodes %d", cfg.Nodes))
	}
	if flags.Changed("http-base") && cfg.HTTPBase != port(https[0]) {
		clash = append(clash, fmt.Sprintf("--http-base %d", cfg.HTTPBase))
	}
	if flags.Changed("raft-base") && cfg.RaftBase != port(rafts[0]) {
		clash = append(clash, fmt.Sprintf("--raft-base %d", cfg.RaftBase))
	}
	if flags.Changed("node-arg") && !slices.Equal(cfg.NodeArgs, state.NodeArgs) {
		clash = append(clash, "--node-arg "+strings.Join(cfg.NodeArgs, ","))
	}
	if len(clash) == 0 {
		return nil
	}
	them := "them"
	if len(clash) == 1 {
		them = "it"
	}
	return fmt.Errorf("%s; its nodes keep what they were created with, so %s cannot apply. "+
		"Leave %s out to start that cluster again, or give a new --dir for a new cluster",
		holds, strings.Join(clash, " and "), them)
}

// watchRedis reports the Redis that `cluster up` started exiting before
// up stops it.
func watchRedis(out io.Writer, redis *cluster.Redis, dir string, stopping <-chan struct{}) {
	select {
	case <-stopping:
		return
	case <-redis.Exited():
	}
	select {
	case <-stopping: // stopped meanwhile: expected
		return
	default:
	}
	fmt.Fprintf(out, "%s  redis-server on %s exited (see %s): the nodes read from Pebble "+
		"until it is back; restart `cluster up` to start it again\n",
		time.Now().Format("15:04:05.000"), redis.Addr(), filepath.Join(dir, "redis.log"))
}

// syncWriter serializes writes from the watchers of `cluster up`.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
