package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary, cfg.Dir = bin, dir
			return clusterUp(cmd.OutOrStdout(), cfg)
		},
	}
	up.Flags().IntVar(&cfg.Nodes, "nodes", 3, "number of nodes of a new cluster")
	up.Flags().IntVar(&cfg.HTTPBase, "http-base", 8081, "HTTP port of node 1; node i uses base+i-1")
	up.Flags().IntVar(&cfg.RaftBase, "raft-base", 9081, "Raft port of node 1; node i uses base+i-1")
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
		Args:    cobra.ExactArgs(1),
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
		Use:     "restart ID",
		Short:   "Start a stopped node of the local cluster again, with its data",
		Example: "  shoal cluster restart n1",
		Args:    cobra.ExactArgs(1),
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

func clusterUp(out io.Writer, cfg cluster.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	redis, err := startClusterRedis(ctx, out, &cfg)
	if err != nil {
		return err
	}
	if redis != nil {
		defer redis.Stop()
	}

	fmt.Fprintf(out, "starting %d nodes in %s ...\n", cfg.Nodes, cfg.Dir)
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	c, err := cluster.Start(startCtx, cfg)
	cancel()
	if err != nil {
		return err
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
	status, _ := anyStatus(ctx, c.HTTPAddrs())
	for wait := 0; wait < 40 && !allReachable(status); wait++ {
		time.Sleep(50 * time.Millisecond)
		status, _ = anyStatus(ctx, c.HTTPAddrs())
	}
	printTable(out, cfg.Dir, status, c.Members())
	members := c.Members()
	self := shellPath(os.Args[0])
	fmt.Fprintf(out, "\nready. Try, in another terminal:\n"+
		"  curl -X PUT http://%s/v1/stocks/AAPL -d '{\"price\": \"116.03\"}'\n"+
		"  curl http://%s/v1/stocks/AAPL\n"+
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
		var addrs []string
		for _, m := range c.Members() {
			if cluster.Alive(m) || c.Running(m.ID) {
				addrs = append(addrs, m.HTTP)
			}
		}
		status, err := anyStatus(ctx, addrs)
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

// anyStatus asks the given nodes in turn for the cluster status and
// returns the leader's own answer when it can: a node that has just
// restarted may not yet know how its peers are doing.
func anyStatus(ctx context.Context, addrs []string) (cluster.Status, error) {
	query := func(addr string) (cluster.Status, error) {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return cluster.QueryStatus(qctx, addr)
	}
	var best cluster.Status
	var lastErr error = fmt.Errorf("no node answered")
	answered := false
	for _, a := range addrs {
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

func clusterStatus(ctx context.Context, out io.Writer, dir, addr string) error {
	var members []cluster.Member
	addrs := []string{addr}
	if addr == "" {
		state, err := cluster.Load(dir)
		if err != nil {
			return fmt.Errorf("no cluster in %s (start one with `shoal cluster up`, or pass "+
				"--addr): %w", dir, err)
		}
		addrs = nil
		for _, m := range state.Members {
			members = append(members, *m)
			addrs = append(addrs, m.HTTP)
		}
	} else {
		var err error
		if addrs, err = splitAddrs(addr); err != nil {
			return err
		}
	}
	status, err := anyStatus(ctx, addrs)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", n.ID, n.HTTP, n.Raft, pid, n.State,
			n.AppliedIndex)
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
