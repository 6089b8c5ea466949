package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/internal/bench"
)

func init() {
	var (
		addrs []string
		opts  = bench.DefaultOptions()
	)
	benchCmd := &cobra.Command{
		Use:   "bench",
		Short: "Run a read or write load against a running cluster and report latency",
		Long: `Bench runs a fixed number of concurrent clients against a running cluster
for a fixed time and prints throughput and latency percentiles (p50, p99,
p99.9, max) per operation, plus failed requests by kind. Writes go to any
node (followers forward them to the leader); each read is pinned to the
next node in turn, so every node serves the same share.

Workloads:
  write  stock writes of random prices, the leader stamps the time
  read   stock reads (after one seeding write per symbol)
  mixed  reads and writes, --read-fraction of them reads
  hot-read   reads of one symbol (--hot-symbol, BENCH-HOT) spread over the
             nodes while a writer updates it --write-rate times a second;
             the report adds the share of reads each hot tier answered
  redis-get  the reference for hot-read: plain GETs of one key from --redis
  votes      comment votes by --clients concurrent voters
  listing    first pages (limit 25) of a 100,000-comment thread in every
             order; builds the thread through the cluster on first use
  text       one keystroke per request, each client on its own document

By default the load uses its own symbols (BENCH-00 ... BENCH-15, BENCH-HOT),
threads and documents, so it does not overwrite replayed data. With --rate the clients share a fixed
schedule and latency counts from when a request was due, so stalls show
up in the percentiles. It is a benchmark for people, not a timed test.`,
		Example: `  shoal bench
  shoal bench --workload read --clients 32 --duration 30s
  shoal bench --workload mixed --read-fraction 0.5 --rate 2000
  shoal bench --addr 127.0.0.1:8081 --workload read --consistency strong
  shoal bench --workload hot-read --clients 16 --rate 3000 --duration 30s
  shoal bench --workload redis-get --redis 127.0.0.1:6379 --rate 3000`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			return checkBenchFlags(opts)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := clientForAddrs(addrs)
			if err != nil {
				return err
			}
			if opts.Workload != bench.WorkloadRedisGet {
				if err := probeCluster(ctx, addrs); err != nil {
					return err
				}
			}
			opts.Addrs = addrs
			if opts.Consistency == "local" {
				opts.Consistency = client.ConsistencyLocal
			}

			fmt.Fprintf(cmd.ErrOrStderr(), "running %s workload: %d clients for %v against %s\n",
				opts.Workload, opts.Clients, opts.Duration, strings.Join(addrs, ", "))
			report, err := bench.Run(ctx, c, opts)
			if err != nil && !interrupted(ctx, err) {
				return err
			}
			if printErr := report.Print(cmd.OutOrStdout()); printErr != nil {
				return printErr
			}
			if err == nil && report.Total.Count == 0 {
				return errors.New("bench: no request succeeded")
			}
			return err
		},
	}

	flags := benchCmd.Flags()
	flags.StringSliceVar(&addrs, "addr", defaultClientAddrs,
		"HTTP `ADDR` of a node (host:port or URL); repeat or separate with commas")
	flags.StringVar(&opts.Workload, "workload", opts.Workload,
		"what to send: "+strings.Join(bench.Workloads(), ", "))
	flags.IntVar(&opts.Clients, "clients", opts.Clients, "concurrent clients (1-"+
		fmt.Sprint(maxBenchClients)+")")
	flags.DurationVar(&opts.Duration, "duration", opts.Duration, "how long to send requests")
	flags.Float64Var(&opts.Rate, "rate", 0,
		"total requests per second over all clients (0 = as fast as possible)")
	flags.StringSliceVar(&opts.Symbols, "symbols", nil,
		"stock symbols to use (default BENCH-00 ... BENCH-15)")
	flags.Float64Var(&opts.ReadFraction, "read-fraction", opts.ReadFraction,
		"share of reads in the mixed workload")
	flags.StringVar(&opts.Consistency, "consistency", "local",
		"read consistency: `LEVEL` local or strong")
	flags.StringVar(&opts.HotSymbol, "hot-symbol", bench.DefaultHotSymbol,
		"symbol of the hot-read workload")
	flags.Float64Var(&opts.WriteRate, "write-rate", bench.DefaultWriteRate,
		"writes per second of the hot-read workload's background writer")
	flags.StringVar(&opts.RedisAddr, "redis", "", "Redis `ADDR` of the redis-get workload")

	rootCmd.AddCommand(benchCmd)
}

// maxBenchClients bounds --clients.
const maxBenchClients = 10000

// checkBenchFlags checks the flags of bench before it sends anything.
func checkBenchFlags(opts bench.Options) error {
	var redisErr error
	if opts.Workload == bench.WorkloadRedisGet && opts.RedisAddr == "" {
		redisErr = errors.New("--workload redis-get needs --redis ADDR")
	}
	var rateErr, fractionErr, writeRateErr error
	if opts.Rate < 0 {
		rateErr = fmt.Errorf("--rate %v: want 0 (as fast as possible) or more", opts.Rate)
	}
	if opts.ReadFraction < 0 || opts.ReadFraction > 1 {
		fractionErr = fmt.Errorf("--read-fraction %v: want 0-1", opts.ReadFraction)
	}
	if opts.WriteRate < 0 {
		writeRateErr = fmt.Errorf("--write-rate %v: want 0 or more", opts.WriteRate)
	}
	return firstError(checkOneOf("workload", opts.Workload, bench.Workloads()...),
		checkInt("clients", opts.Clients, 1, maxBenchClients),
		checkPositive("duration", opts.Duration), rateErr, fractionErr,
		checkOneOf("consistency", opts.Consistency, "local", client.ConsistencyStrong),
		writeRateErr, redisErr)
}

// interrupted reports whether err only says that the user pressed Ctrl-C
// (or the process got SIGTERM).
func interrupted(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && ctx.Err() != nil
}
