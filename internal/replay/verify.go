package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
)

// ErrMismatch is wrapped by VerifyReport.Err when a node holds a price
// other than the expected one, or could not be read.
var ErrMismatch = errors.New("replay: verification failed")

// Expected is the state a replay must leave on every node.
type Expected struct {
	// Prices maps each symbol to its expected price.
	Prices map[string]string
	// MinIndex is the Raft index every node must have applied before it
	// is read: the highest index of the replay's writes. Zero makes Verify
	// find it with a linearizable read.
	MinIndex uint64
}

// VerifyResult is one symbol as read from one node.
type VerifyResult struct {
	// Addr is the node address the read was pinned to.
	Addr string
	// Node is the id of the node that answered.
	Node string
	// Symbol is the symbol read.
	Symbol string
	// Want is the expected price in canonical form.
	Want string
	// Got is the price the node holds, empty when the read failed.
	Got string
	// GotTime is the time of the quote the node holds.
	GotTime time.Time
	// Err is the read's error.
	Err error
}

// OK reports whether the node holds the expected price.
func (r VerifyResult) OK() bool {
	return r.Err == nil && CanonicalDecimal(r.Got) == r.Want
}

// VerifyReport holds every read of Verify.
type VerifyReport struct {
	// MinIndex is the index every read waited for.
	MinIndex uint64
	// Addrs are the nodes read, in the order given.
	Addrs []string
	// Results has one entry per symbol and node, by symbol then node.
	Results []VerifyResult
}

// Err returns nil when every node holds every expected price, and an error
// wrapping ErrMismatch that counts the failures otherwise.
func (r VerifyReport) Err() error {
	failed := 0
	for _, res := range r.Results {
		if !res.OK() {
			failed++
		}
	}
	if failed == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d reads do not match", ErrMismatch, failed, len(r.Results))
}

// Print writes one line per symbol with its expected price and "ok" when
// every node holds it, otherwise a MISMATCH line per node that differs.
func (r VerifyReport) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	otherPrices := false
	for _, symbol := range r.symbols() {
		var want string
		var bad []VerifyResult
		for _, res := range r.Results {
			if res.Symbol != symbol {
				continue
			}
			want = res.Want
			if !res.OK() {
				bad = append(bad, res)
			}
		}

		if len(bad) == 0 {
			fmt.Fprintf(tw, "%s\t%s\tok on %d/%d nodes\n", symbol, want,
				len(r.Addrs), len(r.Addrs))
			continue
		}
		for _, res := range bad {
			where := res.Addr
			if res.Node != "" {
				where += " (" + res.Node + ")"
			}
			got := "has " + res.Got
			if !res.GotTime.IsZero() {
				got += " (quote time " + res.GotTime.UTC().Format(time.RFC3339) + ")"
			}
			if res.Err != nil {
				got = "error: " + res.Err.Error()
			} else {
				otherPrices = true
			}
			fmt.Fprintf(tw, "%s\t%s\tMISMATCH on %s: %s\n", symbol, want, where, got)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if otherPrices {
		// The usual cause: a quote written by hand without a time is
		// stamped now, and every quote of the file is older than it.
		_, err := fmt.Fprintln(w, "A different price with a quote time after the file's last close "+
			"usually means a quote was written by hand (without a time it is stamped now): "+
			"the latest quote by time wins, so the file's older quotes leave it. "+
			"Replay into a fresh cluster to check the file alone.")
		return err
	}
	return nil
}

// symbols returns the symbols of the results in their order.
func (r VerifyReport) symbols() []string {
	var symbols []string
	for _, res := range r.Results {
		if len(symbols) == 0 || symbols[len(symbols)-1] != res.Symbol {
			symbols = append(symbols, res.Symbol)
		}
	}
	return symbols
}

// verifyParallelism bounds the reads Verify has in flight.
const verifyParallelism = 8

// Verify reads every expected symbol from every node in addrs (each read
// pinned to its node, with min_index = expected.MinIndex) and compares the
// prices as canonical decimals. Failed reads and wrong prices are results
// in the report, see VerifyReport.Err; the error is non-nil only when
// Verify could not start, for example when MinIndex is zero and the
// linearizable read that would find it fails. Empty addrs means every
// address of c.
func Verify(
	ctx context.Context, c *client.Client, expected Expected, addrs []string,
) (VerifyReport, error) {
	if len(addrs) == 0 {
		addrs = c.Addrs()
	}

	// Without a known index, a linearizable read returns one that covers
	// every write acknowledged before Verify started.
	minIndex := expected.MinIndex
	if minIndex == 0 {
		list, err := c.ListStocks(ctx, client.ReadOptions{Consistency: client.ConsistencyStrong})
		if err != nil {
			return VerifyReport{}, fmt.Errorf("replay: find index to verify at: %w", err)
		}
		minIndex = list.Index
	}

	report := VerifyReport{MinIndex: minIndex, Addrs: slices.Clone(addrs)}
	for _, symbol := range slices.Sorted(maps.Keys(expected.Prices)) {
		for _, addr := range addrs {
			report.Results = append(report.Results, VerifyResult{
				Addr:   addr,
				Symbol: symbol,
				Want:   CanonicalDecimal(expected.Prices[symbol]),
			})
		}
	}

	// Read them all, a few at a time; each goroutine owns one result.
	var group errgroup.Group
	group.SetLimit(verifyParallelism)
	for i := range report.Results {
		res := &report.Results[i]
		group.Go(func() error {
			q, err := c.GetStock(ctx, res.Symbol, client.ReadOptions{
				MinIndex: minIndex,
				Node:     res.Addr,
			})
			res.Node, res.Got, res.GotTime, res.Err = q.Node, q.Price, q.Time, err
			return nil
		})
	}
	_ = group.Wait() // the goroutines report through their results
	return report, nil
}
