package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/cluster"
)

func init() {
	var (
		cfg    cluster.ChaosConfig
		faults string
		seed   int64
		keep   bool
	)
	chaosCmd := &cobra.Command{
		Use:   "chaos",
		Short: "Check a real local cluster for linearizability while injecting faults",
		Long: `Chaos starts a fresh local cluster of real node processes in a temporary
directory, runs concurrent clients that write and strongly read a few
stock symbols through every node, and meanwhile injects faults at random:

  kill       kill -9 of the leader or a random node, then a restart
  pause      SIGSTOP of the leader or a random node, then SIGCONT
  partition  one node isolated, or only its outgoing or incoming links
             cut, or (5+ nodes) a minority split from the majority,
             through proxies the harness puts on every link between
             nodes; no root needed
  redis      with --redis: SIGSTOP or kill -9 of the hot tier's Redis

Afterwards it repairs the cluster, reads every symbol from every node,
checks the whole history for linearizability with porcupine, and checks
that every node reached the same applied index and state digest. It
prints a report and exits non-zero if it found any anomaly; porcupine's
visualisation of the history is written when one is found (or always,
with --visualize). The seed fixes the fault schedule and the clients'
choices; it is printed so a run can be repeated.`,
		Example: `  shoal chaos
  shoal chaos --duration 5m --seed 7
  shoal chaos --faults partition --nodes 5 --visualize /tmp/history.html
  shoal chaos --redis --duration 2m`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			return firstError(checkPositive("duration", cfg.Duration),
				checkInt("nodes", cfg.Nodes, 1, maxNodes),
				checkInt("clients", cfg.Clients, 1, maxConcurrency),
				checkInt("keys", cfg.Keys, 1, maxConcurrency))
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var err error
			if cmd.Flags().Changed("faults") {
				if cfg.Faults, err = cluster.ParseFaults(faults); err != nil {
					return err
				}
				if cfg.Faults == nil {
					cfg.Faults = []cluster.FaultKind{} // none at all
				}
			}
			if seed == 0 {
				seed = time.Now().UnixNano() & 0xffffff
			}
			cfg.Seed = uint64(seed)
			if cfg.Binary, err = os.Executable(); err != nil {
				return err
			}
			if cfg.Dir == "" {
				if cfg.Dir, err = cluster.DefaultChaosDir(); err != nil {
					return err
				}
				// keep is read when RunE returns: an anomaly sets it.
				defer func() {
					if !keep {
						_ = os.RemoveAll(cfg.Dir)
					}
				}()
			}
			out := cmd.ErrOrStderr()
			cfg.Logf = func(format string, args ...any) {
				fmt.Fprintf(out, format+"\n", args...)
			}
			fmt.Fprintf(out, "shoal chaos: seed %d (repeat with --seed %d), cluster in %s\n",
				seed, seed, cfg.Dir)

			report, err := cluster.RunChaos(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), report.String())
			switch {
			case ctx.Err() != nil:
				// The repair was cut short too: what it found means little.
				return errors.New("chaos: interrupted")
			case !report.OK():
				keep = true
				return fmt.Errorf("chaos: %d anomalies (seed %d); node logs in %s",
					len(report.Anomalies), seed, cfg.Dir)
			}
			return nil
		},
	}
	f := chaosCmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", time.Minute, "how long to run the workload and faults")
	f.Int64Var(&seed, "seed", 0, "seed of the fault schedule and the clients (0: random)")
	f.StringVar(&faults, "faults", "kill,pause,partition",
		"comma-separated faults to inject: kill, pause, partition, redis (empty: none; "+
			"with --redis the default adds redis)")
	f.BoolVar(&cfg.Redis, "redis", false,
		"start a redis-server so reads go through the nodes' hot tier")
	f.IntVar(&cfg.Nodes, "nodes", 3, "cluster size")
	f.IntVar(&cfg.Clients, "clients", 8, "concurrent clients")
	f.IntVar(&cfg.Keys, "keys", 4, "registers (stock symbols) the clients share")
	f.IntVar(&cfg.Voters, "voters", 4, "concurrent voters on comments (negative: none)")
	f.IntVar(&cfg.Editors, "editors", 3, "concurrent editors of a document (negative: none)")
	f.StringVar(&cfg.Dir, "dir", "", "cluster directory (default: a new temporary one)")
	f.BoolVar(&keep, "keep", false, "keep the cluster directory and node logs afterwards")
	f.StringVar(&cfg.Visualize, "visualize", "",
		"always write porcupine's visualisation of the history to this `PATH`")
	f.StringSliceVar(&cfg.NodeArgs, "node-arg", nil,
		"extra flag for every node, e.g. --node-arg=--snapshot-threshold=100")
	rootCmd.AddCommand(chaosCmd)
}
