package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/internal/replay"
)

func init() {
	var (
		addrs       []string
		thread      string
		concurrency int
		pageSize    int
		noProgress  bool
		verify      bool
	)
	commentsCmd := &cobra.Command{
		Use:   "comments FILE",
		Short: "Replay a real comment thread with its votes and verify every listing on every node",
		Long: `Replay a comment thread file (JSON lines: the thread, then one comment per
line with id, parent, author, created_utc, ups, downs, depth, body_chars).

The comments are created one at a time in created_utc order with their
real parents, so shoal's ids and creation times follow the file; each
body is a stand-in text of the real length. Then every comment gets its
real number of up-votes and down-votes from distinct users (user-v000001,
user-v000002, ...), --concurrency votes at a time, spread over all nodes.

Afterwards every node, once it has applied the replay's last write, is
read in full: the thread's top level and the replies of every comment, in
the orders new, old, top, replies and best, page by page. The order of
every listing and every comment's upvotes, downvotes, reply_count and
descendant_count must be what the file implies; the expected orders are
computed from the file, with the Wilson lower bound (z = 1.281551565545)
for best and ties by id. The command exits non-zero when a write failed
or a node disagrees.

Without --thread the thread is named after the file's thread id, or
"<id> #2", "<id> #3", ... when an earlier replay used that name.`,
		Example: `  shoal replay comments ../shared/data/reddit_thread.jsonl
  shoal replay comments thread.jsonl --addr 127.0.0.1:8081 --concurrency 64`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			return firstError(checkInt("concurrency", concurrency, 1, maxConcurrency),
				checkInt("page-size", pageSize, 1, maxListLimit))
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
			opts := replay.CommentsOptions{Thread: thread, Concurrency: concurrency,
				Progress: cmd.ErrOrStderr()}
			if noProgress {
				opts.Progress = nil
			}
			report, err := replay.Comments(ctx, c, args[0], opts)
			if report.Comments > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), report)
			}
			if report.FirstError != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "first error:", report.FirstError)
			}
			if err != nil {
				return err
			}
			var verifyErr error
			if verify {
				verified, err := replay.VerifyComments(ctx, c, report, addrs, pageSize)
				if err != nil {
					return err
				}
				if err := verified.Print(cmd.OutOrStdout()); err != nil {
					return err
				}
				verifyErr = verified.Err()
			}

			var errs []error
			if report.Errors > 0 {
				errs = append(errs, fmt.Errorf("%d writes failed", report.Errors))
			}
			return errors.Join(append(errs, verifyErr)...)
		},
	}

	flags := commentsCmd.Flags()
	flags.StringSliceVar(&addrs, "addr", defaultClientAddrs,
		"HTTP `ADDR` of a node (host:port or URL); repeat or separate with commas")
	flags.StringVar(&thread, "thread", "",
		"name of the thread to create (default: the file's thread id, made unique)")
	flags.IntVar(&concurrency, "concurrency", replay.DefaultCommentsConcurrency,
		"concurrent voters, 1-"+fmt.Sprint(maxConcurrency))
	flags.IntVar(&pageSize, "page-size", replay.DefaultVerifyPageSize,
		fmt.Sprintf("page size of the verifying listings (1-%d; small pages test the cursors)",
			maxListLimit))
	flags.BoolVar(&noProgress, "no-progress", false, "do not show progress on stderr")
	flags.BoolVar(&verify, "verify", true, "read every listing back from every node and compare")

	replayCmd.AddCommand(commentsCmd)
}
