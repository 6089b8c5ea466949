package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/internal/replay"
)

// maxConcurrency bounds the --concurrency of the replays: far more
// concurrent requests than that only queue up.
const maxConcurrency = 1000

// maxListLimit is the largest limit of a comment listing the API takes.
const maxListLimit = 100

// defaultClientAddrs are the HTTP addresses of the local cluster that
// `shoal cluster up` starts with its default flags.
var defaultClientAddrs = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}

// replayCmd is the parent of the replay subcommands; each kind of data
// adds its own subcommand to it in its own file.
var replayCmd = &cobra.Command{
	Use:   "replay",
	Short: "Replay real recorded data into a running cluster and verify it",
	Long: `Replay writes real recorded data into a running cluster through the Go
client, spreading the writes over every node, and then checks that every
node holds the state the data implies. The data files are described in
../shared/data/README.md.`,
	RunE: requireSubcommand,
}

func init() {
	var (
		addrs       []string
		concurrency int
		noProgress  bool
		verify      bool
	)
	stocksCmd := &cobra.Command{
		Use:   "stocks FILE",
		Short: "Replay daily stock quotes, oldest first, and verify the last close on every node",
		Long: `Replay the daily stock file (date,open,high,low,close,...,Name; newest
first per symbol) oldest quote first: every row becomes a write of its
symbol with price = close and time = the date at 00:00 UTC. Writes of one
symbol are sent in date order; different symbols go in parallel and to
all nodes in turn.

Afterwards every symbol is read from every node, each node waiting until
it has applied the replay's last write, and compared with the file's last
close per symbol. The command exits non-zero when a write failed or a
node disagrees.`,
		Example: `  shoal replay stocks ../shared/data/stocks_daily.csv
  shoal replay stocks stocks.csv --addr 127.0.0.1:8081,127.0.0.1:8082 --concurrency 4`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			return checkInt("concurrency", concurrency, 1, maxConcurrency)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := clientForAddrs(addrs)
			if err != nil {
				return err
			}
			if err := probeCluster(ctx, addrs); err != nil {
				return err
			}

			// Replay, with progress on stderr and the summary on stdout.
			opts := replay.StocksOptions{Concurrency: concurrency, Progress: cmd.ErrOrStderr()}
			if noProgress {
				opts.Progress = nil
			}
			report, err := replay.Stocks(ctx, c, args[0], opts)
			if report.Quotes > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), report)
			}
			if report.FirstError != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "first error:", report.FirstError)
			}
			if err != nil {
				return err
			}
			if !verify {
				return replayStocksResult(report, nil)
			}

			verified, err := replay.Verify(ctx, c, report.Expected, addrs)
			if err != nil {
				return err
			}
			if err := verified.Print(cmd.OutOrStdout()); err != nil {
				return err
			}
			return replayStocksResult(report, verified.Err())
		},
	}

	flags := stocksCmd.Flags()
	flags.StringSliceVar(&addrs, "addr", defaultClientAddrs,
		"HTTP `ADDR` of a node (host:port or URL); repeat or separate with commas")
	flags.IntVar(&concurrency, "concurrency", replay.DefaultStocksConcurrency,
		"concurrent writers, 1-"+fmt.Sprint(maxConcurrency)+
			" (at most one per symbol is busy at a time)")
	flags.BoolVar(&noProgress, "no-progress", false, "do not show progress on stderr")
	flags.BoolVar(&verify, "verify", true, "read every symbol back from every node and compare")

	replayCmd.AddCommand(stocksCmd)
	rootCmd.AddCommand(replayCmd)
}

// replayStocksResult turns failed writes or a failed verification into the
// command's error, so that the exit status is non-zero.
func replayStocksResult(report replay.StocksReport, verifyErr error) error {
	var errs []error
	if report.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d of %d writes failed", report.Errors, report.Quotes))
	}
	if verifyErr != nil {
		errs = append(errs, verifyErr)
	}
	return errors.Join(errs...)
}

// clientForAddrs returns a client for the nodes named by an --addr flag.
func clientForAddrs(addrs []string) (*client.Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no --addr given")
	}
	return client.New(client.Config{Addrs: addrs})
}
