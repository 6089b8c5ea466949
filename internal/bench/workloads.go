package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-db/shoal/client"
)

// Operation names, the rows of a report.
const (
	OpWrite = "write"
	OpRead  = "read"
)

// workload is one kind of load. Run calls prepare once before the clock
// starts, background once in its own goroutine for the measured phase,
// and op over and over from every client goroutine, each with its own
// worker. op returns the name of the operation it ran, which is the row
// its latency is counted in. background records into its own recorder
// and returns when ctx ends.
type workload interface {
	prepare(ctx context.Context, e *env) error
	background(ctx context.Context, e *env, rec *recorder)
	op(ctx context.Context, e *env, w *worker) (string, error)
}

// registry maps each workload name to its constructor. A new workload is
// a type implementing workload and a line here.
var registry = map[string]func(Options) workload{
	WorkloadWrite: func(Options) workload { return stockWrites{} },
	WorkloadRead:  func(Options) workload { return stockReads{} },
	WorkloadMixed: func(o Options) workload { return stockMixed{readFraction: o.ReadFraction} },

	WorkloadVotes:   newCommentVotes, // comments.go
	WorkloadListing: newCommentListing,
	WorkloadText:    newTextEdits, // text.go
}

// stockWrites writes random prices to random symbols through any node
// (the client's round robin), with the leader stamping the time.
type stockWrites struct{ noBackground }

func (stockWrites) prepare(context.Context, *env) error { return nil }

func (stockWrites) op(ctx context.Context, e *env, w *worker) (string, error) {
	_, err := e.client.PutStock(ctx, w.symbol(e.opts.Symbols), w.price(), time.Time{})
	return OpWrite, err
}

// stockReads reads random symbols, each read pinned to the next node so
// that every node serves the same share.
type stockReads struct{ noBackground }

func (stockReads) prepare(ctx context.Context, e *env) error {
	return seedSymbols(ctx, e)
}

func (stockReads) op(ctx context.Context, e *env, w *worker) (string, error) {
	return readStock(ctx, e, w)
}

// stockMixed is stockReads and stockWrites in one stream, readFraction of
// the requests reads.
type stockMixed struct {
	noBackground
	readFraction float64
}

func (stockMixed) prepare(ctx context.Context, e *env) error {
	return seedSymbols(ctx, e)
}

func (m stockMixed) op(ctx context.Context, e *env, w *worker) (string, error) {
	if w.rng.Float64() < m.readFraction {
		return readStock(ctx, e, w)
	}
	return stockWrites{}.op(ctx, e, w)
}

// readStock reads one random symbol from the next node.
func readStock(ctx context.Context, e *env, w *worker) (string, error) {
	_, err := e.client.GetStock(ctx, w.symbol(e.opts.Symbols), client.ReadOptions{
		Consistency: e.opts.Consistency,
		Node:        e.nextNode(),
	})
	return OpRead, err
}

// seedSymbols writes one quote per symbol and waits until every read node
// has applied them, so that reads in the measured phase find a quote.
func seedSymbols(ctx context.Context, e *env) error {
	var last uint64
	for i, symbol := range e.opts.Symbols {
		q, err := e.client.PutStock(ctx, symbol, fmt.Sprintf("%d.00", 100+i), time.Time{})
		if err != nil {
			return fmt.Errorf("seed %s: %w", symbol, err)
		}
		last = max(last, q.Index)
	}

	for _, node := range e.nodes {
		opts := client.ReadOptions{MinIndex: last, Node: node}
		if _, err := e.client.GetStock(ctx, e.opts.Symbols[0], opts); err != nil {
			return fmt.Errorf("wait for seed on %s: %w", node, err)
		}
	}
	return nil
}

// noBackground is embedded by workloads without a background task.
type noBackground struct{}

func (noBackground) background(context.Context, *env, *recorder) {}
