package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/internal/replay"
)

func init() {
	var (
		addrs      []string
		opts       replay.TextOptions
		limit      int
		noProgress bool
	)
	textCmd := &cobra.Command{
		Use:   "text FILE",
		Short: "Replay an editing trace as typed and verify the text on every node and client",
		Long: `Replay a keystroke-level editing trace (gzipped or plain JSON, the format
of ../shared/data/README.md) into a new document, as it was typed, then
check that every node and every client holds the trace's end content.

A sequential trace is typed by --clients clients, client i connected to
node i mod the number of --addr nodes. With one client, it types every
transaction as fast as it can: its edits compose behind the op in flight,
so the replay takes few round trips. With more, the transactions are
dealt in blocks of --block consecutive ones to the clients in turn; a
client starts its block as soon as its own copy reflects every earlier
transaction, and the next client takes over once the block is
acknowledged. A block is one hand-off of a round trip or two, so larger
blocks mean fewer of them.

A concurrent trace ({"kind": "concurrent", ...}) is typed by one client
per agent, each sending a transaction as soon as its copy holds the
transaction's parents, translated into its copy.

The summary gives edits per second (transactions over the time from the
first edit until every client holds the last revision) and percentiles
of the commit latency (from an edit being made to the server
acknowledging the op that carried it) and of the request latency. The
command exits non-zero when a client stopped or a text differs.`,
		Example: `  shoal replay text ../shared/data/automerge-paper.json.gz
  shoal replay text ../shared/data/seph-blog1.json.gz --clients 3
  shoal replay text trace.json --doc notes --addr 127.0.0.1:8081,127.0.0.1:8082
  shoal replay text ../shared/data/seph-blog1.json.gz --docs 64 --limit 2000`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			return firstError(checkInt("clients", opts.Clients, 1, maxConcurrency),
				checkAtLeast("block", opts.Block, 1),
				checkInt("docs", opts.Docs, 1, maxConcurrency),
				checkAtLeast("limit", limit, 0))
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

			trace, err := replay.LoadTextTrace(args[0])
			if err != nil {
				return err
			}
			if limit > 0 {
				if trace, err = trace.Prefix(limit); err != nil {
					return err
				}
			}
			if opts.Doc == "" {
				opts.Doc = replay.DocIDForFile(args[0])
			}
			opts.Addrs = addrs
			if !noProgress {
				opts.Progress = cmd.ErrOrStderr()
			}

			report, err := replay.Text(ctx, c, trace, opts)
			if printErr := report.Print(cmd.OutOrStdout()); printErr != nil {
				return printErr
			}
			if err != nil {
				return err
			}
			return report.Err()
		},
	}

	flags := textCmd.Flags()
	flags.StringSliceVar(&addrs, "addr", defaultClientAddrs,
		"HTTP `ADDR` of a node (host:port or URL); repeat or separate with commas")
	flags.StringVar(&opts.Doc, "doc", "",
		"document `ID` to replay into; it must have no ops (default replay-FILE-RANDOM)")
	flags.IntVar(&opts.Clients, "clients", 1,
		"clients typing a sequential trace, dealt to the nodes in turn (1-1000)")
	flags.IntVar(&opts.Block, "block", replay.DefaultTextBlock,
		"consecutive transactions a client types before the next takes over (at least 1)")
	flags.IntVar(&opts.Docs, "docs", 1,
		"documents to replay the trace into at once (ids DOC-1, DOC-2, ...; 1-1000)")
	flags.IntVar(&limit, "limit", 0,
		"replay only the first `N` transactions of a sequential trace (0: all)")
	flags.BoolVar(&noProgress, "no-progress", false, "do not show progress on stderr")

	replayCmd.AddCommand(textCmd)
}
