// Package bench runs a load against a running shoal cluster through the Go
// client and measures throughput and latency. It is a benchmark for people
// (`shoal bench`), not a timed test.
//
// A run has a fixed number of clients, each a goroutine that sends one
// request at a time for the given duration, optionally paced to a total
// rate. What the clients send is the workload; every workload lives in
// workloads.go behind a small interface, so new ones (hot reads while a
// writer updates the symbol, text edits, comment votes) are one more type
// and one more entry in the registry.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-db/shoal/client"
)

// Workload names accepted in Options.Workload.
const (
	// WorkloadWrite sends only stock writes to any node.
	WorkloadWrite = "write"
	// WorkloadRead sends only stock reads, spread over every node.
	WorkloadRead = "read"
	// WorkloadMixed mixes reads and writes, ReadFraction of them reads.
	WorkloadMixed = "mixed"
	// WorkloadHotRead reads one symbol (HotSymbol) spread over every node
	// while a background writer updates it WriteRate times a second.
	WorkloadHotRead = "hot-read"
	// WorkloadRedisGet is the reference for hot-read: a plain Redis GET
	// of one key on RedisAddr, with the same clients and pacing.
	WorkloadRedisGet = "redis-get"
)

// Defaults for the zero fields of Options.
const (
	DefaultClients      = 16
	DefaultDuration     = 10 * time.Second
	DefaultReadFraction = 0.9
	DefaultHotSymbol    = "BENCH-HOT"
	DefaultWriteRate    = 10
	defaultSymbolCount  = 16
)

// Options describes one run. Zero fields take the defaults above; Symbols
// defaults to BENCH-00 ... BENCH-15, so that a run does not overwrite real
// data such as the replayed stock quotes.
type Options struct {
	// Workload is one of Workloads().
	Workload string
	// Clients is the number of concurrent clients.
	Clients int
	// Duration is how long the clients send requests.
	Duration time.Duration
	// Rate is the total target of requests per second over all clients;
	// zero means as fast as the clients go. With a rate, a request's
	// latency is counted from when it was due, not from when it was sent,
	// so a stalled cluster shows up in the percentiles (no coordinated
	// omission).
	Rate float64
	// Symbols are the stock symbols the workload reads and writes.
	Symbols []string
	// Addrs are the nodes reads are pinned to, each read to the next node
	// in turn. Empty means every address of the client.
	Addrs []string
	// ReadFraction is the share of reads in the mixed workload.
	ReadFraction float64
	// Consistency is the consistency level of reads (client.Consistency*).
	Consistency string
	// HotSymbol is the symbol of the hot-read workload.
	HotSymbol string
	// WriteRate is how many writes a second the hot-read workload's
	// background writer sends.
	WriteRate float64
	// RedisAddr is the Redis the redis-get workload reads.
	RedisAddr string
}

// DefaultOptions returns the options of `shoal bench` without flags.
func DefaultOptions() Options {
	return Options{Workload: WorkloadWrite}.withDefaults()
}

// withDefaults fills in the zero fields.
func (o Options) withDefaults() Options {
	o.Workload = cmp.Or(o.Workload, WorkloadWrite)
	o.Clients = cmp.Or(o.Clients, DefaultClients)
	o.Duration = cmp.Or(o.Duration, DefaultDuration)
	o.ReadFraction = cmp.Or(o.ReadFraction, DefaultReadFraction)
	o.HotSymbol = cmp.Or(o.HotSymbol, DefaultHotSymbol)
	o.WriteRate = cmp.Or(o.WriteRate, DefaultWriteRate)
	if len(o.Symbols) == 0 {
		for i := range defaultSymbolCount {
			o.Symbols = append(o.Symbols, fmt.Sprintf("BENCH-%02d", i))
		}
	}
	return o
}

// Validate reports whether the options (after defaults) describe a run.
func (o Options) Validate() error {
	switch {
	case registry[o.Workload] == nil:
		return fmt.Errorf("bench: unknown workload %q (want one of %v)", o.Workload, Workloads())
	case o.Clients < 1:
		return fmt.Errorf("bench: clients must be at least 1, not %d", o.Clients)
	case o.Duration <= 0:
		return fmt.Errorf("bench: duration must be positive, not %v", o.Duration)
	case o.Rate < 0:
		return fmt.Errorf("bench: rate must not be negative, not %v", o.Rate)
	case o.ReadFraction < 0 || o.ReadFraction > 1:
		return fmt.Errorf("bench: read fraction must be in [0, 1], not %v", o.ReadFraction)
	case len(o.Symbols) == 0:
		return errors.New("bench: no symbols")
	case o.WriteRate < 0:
		return fmt.Errorf("bench: write rate must not be negative, not %v", o.WriteRate)
	case o.Workload == WorkloadRedisGet && o.RedisAddr == "":
		return errors.New("bench: the redis-get workload needs a Redis address")
	}
	return nil
}

// Workloads returns the names of the known workloads, sorted.
func Workloads() []string {
	return slices.Sorted(maps.Keys(registry))
}

// Run prepares the workload (for reads: one write per symbol, so that
// reads find something), then runs opts.Clients clients for opts.Duration
// and returns what they measured. Requests still in flight when the time
// is up are finished and counted.
//
// When ctx ends early the clients stop and Run returns the report of the
// shorter run together with ctx's error. Failed requests are counted by
// kind in the report and never stop the run.
func Run(ctx context.Context, c *client.Client, opts Options) (Report, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	env, err := newEnv(c, opts)
	if err != nil {
		return Report{}, err
	}
	load := registry[opts.Workload](opts)

	if err := load.prepare(ctx, env); err != nil {
		return Report{}, fmt.Errorf("bench: prepare %s workload: %w", opts.Workload, err)
	}

	// The measured phase: clients plus the workload's background task.
	var pace *pacer
	if opts.Rate > 0 {
		pace = newPacer(opts.Rate)
	}
	start := time.Now()
	deadline := start.Add(opts.Duration)
	recorders := make([]*recorder, opts.Clients+1)
	var wg sync.WaitGroup

	backgroundCtx, stopBackground := context.WithDeadline(ctx, deadline)
	defer stopBackground()
	recorders[opts.Clients] = newRecorder()
	wg.Go(func() {
		load.background(backgroundCtx, env, recorders[opts.Clients])
	})

	for id := range opts.Clients {
		rec := newRecorder()
		recorders[id] = rec
		wg.Go(func() {
			w := &worker{id: id, rng: rand.New(rand.NewPCG(uint64(id), uint64(start.UnixNano())))}
			for {
				due, ok := pace.next(ctx, deadline)
				if !ok {
					return
				}
				op, err := load.op(ctx, env, w)
				if err != nil && ctx.Err() != nil {
					return // interrupted, not failed
				}
				rec.record(op, time.Since(due), err)
				w.seq++
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	report := newReport(opts, len(env.nodes), elapsed, recorders)
	if n, ok := load.(noter); ok {
		report.Notes = n.notes(ctx, env)
	}
	if err := ctx.Err(); err != nil {
		return report, fmt.Errorf("bench: interrupted after %v: %w",
			elapsed.Round(time.Millisecond), err)
	}
	return report, nil
}

// env is what every workload may use during one run. Its methods are safe
// for concurrent use.
type env struct {
	client *client.Client
	opts   Options
	nodes  []string // where reads go, in turn

	nodeCursor atomic.Uint64
}

func newEnv(c *client.Client, opts Options) (*env, error) {
	e := &env{client: c, opts: opts, nodes: opts.Addrs}
	if len(e.nodes) == 0 {
		e.nodes = c.Addrs()
	}
	for _, addr := range e.nodes {
		if _, err := client.NormalizeAddr(addr); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	return e, nil
}

// nextNode returns the node the next pinned read goes to.
func (e *env) nextNode() string {
	return e.nodes[(e.nodeCursor.Add(1)-1)%uint64(len(e.nodes))]
}

// worker is the state of one client goroutine; only that goroutine uses it.
type worker struct {
	id  int
	seq int // requests sent so far
	rng *rand.Rand
}

// symbol returns a symbol chosen uniformly from symbols.
func (w *worker) symbol(symbols []string) string {
	return symbols[w.rng.IntN(len(symbols))]
}

// price returns a random price between 1.00 and 999.99.
func (w *worker) price() string {
	cents := 100 + w.rng.IntN(99900)
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
}

// pacer hands out evenly spaced start times for a total rate of requests.
// A nil pacer lets every request start at once.
type pacer struct {
	interval time.Duration

	mu  sync.Mutex
	due time.Time // start time of the next request
}

func newPacer(rate float64) *pacer {
	return &pacer{
		interval: time.Duration(float64(time.Second) / rate),
		due:      time.Now(),
	}
}

// next waits until the caller's next request is due and returns when that
// was; ok is false when the request would be due after deadline or ctx
// ended first.
func (p *pacer) next(ctx context.Context, deadline time.Time) (due time.Time, ok bool) {
	if ctx.Err() != nil {
		return time.Time{}, false
	}
	if p == nil {
		now := time.Now()
		return now, now.Before(deadline)
	}

	p.mu.Lock()
	due = p.due
	p.due = p.due.Add(p.interval)
	p.mu.Unlock()
	if !due.Before(deadline) {
		return time.Time{}, false
	}

	wait := time.Until(due)
	if wait <= 0 {
		return due, true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return time.Time{}, false
	case <-t.C:
		return due, true
	}
}
