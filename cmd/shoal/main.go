// Command shoal is the one binary of shoal: it runs a node, starts and
// inspects a local cluster, replays real data and benchmarks a cluster.
// Each subcommand lives in its own file and only parses flags and wires
// packages together.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the top of the command tree; each subcommand file adds itself
// in an init function.
var rootCmd = &cobra.Command{
	Use:   "shoal",
	Short: "A Raft-replicated store on Pebble for realtime application data",
	Long: `shoal keeps collaborative text documents, stock quotes and threaded
comments in a cluster of nodes that agree on one log with Raft and apply it
into Pebble on every node. Any node answers reads over HTTP.

Start a local three-node cluster:   shoal cluster up
Watch it from another terminal:     shoal cluster status
Replay real stock prices into it:   shoal replay stocks ../shared/data/stocks_daily.csv`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// requireSubcommand is the RunE of a command that only groups others: an
// unknown subcommand is an error rather than a silent help text.
func requireSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q; see %q", args[0], cmd.CommandPath(),
			cmd.CommandPath()+" --help")
	}
	return cmd.Help()
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shoal:", err)
		os.Exit(1)
	}
}
