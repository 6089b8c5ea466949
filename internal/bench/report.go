package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/shoal-db/shoal/client"
)

// Latencies are recorded in microseconds from 1µs to one minute with three
// significant digits; longer ones count as one minute.
const (
	histogramMin     = 1
	histogramMax     = int64(time.Minute / time.Microsecond)
	histogramSigFigs = 3
)

// recorder collects the latencies and errors of one goroutine; it is not
// safe for concurrent use, and Run merges all of them at the end.
type recorder struct {
	latencies map[string]*hdrhistogram.Histogram // successes, by op
	failures  map[string]int64                   // failures, by op
	errors    map[errorKey]int64                 // failures, by op and kind
}

// errorKey is an operation and a kind of error.
type errorKey struct{ op, kind string }

func newRecorder() *recorder {
	return &recorder{
		latencies: make(map[string]*hdrhistogram.Histogram),
		failures:  make(map[string]int64),
		errors:    make(map[errorKey]int64),
	}
}

// record counts one request of op that took latency and ended with err.
func (r *recorder) record(op string, latency time.Duration, err error) {
	if err != nil {
		r.failures[op]++
		r.errors[errorKey{op: op, kind: ErrorKind(err)}]++
		return
	}

	h := r.latencies[op]
	if h == nil {
		h = newHistogram()
		r.latencies[op] = h
	}
	micros := min(max(latency.Microseconds(), histogramMin), histogramMax)
	_ = h.RecordValue(micros) // in range by construction
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histogramMin, histogramMax, histogramSigFigs)
}

// ErrorKind names the kind of a failed request for the report: the status
// and code of an API error ("503 no_leader"), "timeout", "connection
// refused", "connection reset", "network" for other transport failures,
// and "other" for the rest.
func ErrorKind(err error) string {
	var apiErr *client.APIError
	var netErr net.Error
	switch {
	case errors.As(err, &apiErr):
		if apiErr.Code == "" {
			return fmt.Sprint(apiErr.Status)
		}
		return fmt.Sprintf("%d %s", apiErr.Status, apiErr.Code)
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	}
	var transportErr *client.TransportError
	if errors.As(err, &transportErr) {
		return "network"
	}
	return "other"
}

// Report is the outcome of one run.
type Report struct {
	// Options are the options of the run, defaults filled in.
	Options Options
	// Nodes is the number of nodes reads were spread over.
	Nodes int
	// Elapsed is the wall time of the measured phase.
	Elapsed time.Duration
	// Ops has one row per operation, sorted by name.
	Ops []OpStats
	// Total sums all operations.
	Total OpStats
	// Errors counts failed requests by operation and kind, most first.
	Errors []ErrorCount
	// Notes are lines a workload adds about the run, such as the hot
	// tier's hit ratio.
	Notes []string
}

// OpStats is the throughput and latency of one operation. Latencies are
// of successful requests only.
type OpStats struct {
	// Op is the operation, such as OpRead, or "total".
	Op string
	// Count is the number of successful requests.
	Count int64
	// Errors is the number of failed requests.
	Errors int64
	// Throughput is successful requests per second.
	Throughput float64
	// Mean, P50, P99, P999 and Max summarize the latency.
	Mean, P50, P99, P999, Max time.Duration
}

// ErrorCount is how many requests of one operation failed one way.
type ErrorCount struct {
	// Op is the operation.
	Op string
	// Kind is what went wrong, see ErrorKind.
	Kind string
	// Count is the number of requests.
	Count int64
}

// newReport merges the recorders of a run into a report.
func newReport(opts Options, nodes int, elapsed time.Duration, recorders []*recorder) Report {
	latencies := make(map[string]*hdrhistogram.Histogram)
	failures := make(map[string]int64)
	errorCounts := make(map[errorKey]int64)
	for _, rec := range recorders {
		for op, h := range rec.latencies {
			if latencies[op] == nil {
				latencies[op] = newHistogram()
			}
			latencies[op].Merge(h)
		}
		for op, n := range rec.failures {
			failures[op] += n
		}
		for key, n := range rec.errors {
			errorCounts[key] += n
		}
	}

	// One row per operation, then the total over all of them.
	report := Report{Options: opts, Nodes: nodes, Elapsed: elapsed}
	ops := slices.Sorted(maps.Keys(latencies))
	for op := range failures {
		if latencies[op] == nil {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops)
	total := newHistogram()
	var totalErrors int64
	for _, op := range ops {
		h := latencies[op]
		if h == nil {
			h = newHistogram()
		}
		total.Merge(h)
		totalErrors += failures[op]
		report.Ops = append(report.Ops, newOpStats(op, h, failures[op], elapsed))
	}
	report.Total = newOpStats("total", total, totalErrors, elapsed)

	for key, n := range errorCounts {
		report.Errors = append(report.Errors, ErrorCount{Op: key.op, Kind: key.kind, Count: n})
	}
	slices.SortFunc(report.Errors, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Op, b.Op),
			cmp.Compare(a.Kind, b.Kind))
	})
	return report
}

func newOpStats(op string, h *hdrhistogram.Histogram, errs int64, elapsed time.Duration) OpStats {
	micros := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	stats := OpStats{
		Op:     op,
		Count:  h.TotalCount(),
		Errors: errs,
		Mean:   time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:    micros(h.ValueAtPercentile(50)),
		P99:    micros(h.ValueAtPercentile(99)),
		P999:   micros(h.ValueAtPercentile(99.9)),
		Max:    micros(h.Max()),
	}
	if elapsed > 0 {
		stats.Throughput = float64(stats.Count) / elapsed.Seconds()
	}
	return stats
}

// Print writes the report as a table: a line describing the run, one row
// per operation and the total, then the errors by kind.
func (r Report) Print(w io.Writer) error {
	o := r.Options
	workload := o.Workload
	if o.Workload == WorkloadMixed {
		workload += fmt.Sprintf(" (%.0f%% reads)", o.ReadFraction*100)
	}
	rate := "unlimited"
	if o.Rate > 0 {
		rate = fmt.Sprintf("%g/s", o.Rate)
	}
	consistency := cmp.Or(o.Consistency, "local")
	fmt.Fprintf(w, "workload %s, %d clients, %.1fs, rate %s, %d %s, %s reads\n\n",
		workload, o.Clients, r.Elapsed.Seconds(), rate, r.Nodes, plural(r.Nodes, "node"),
		consistency)

	// Numbers align right; the op names are padded to align left.
	rows := r.Ops
	if len(rows) != 1 {
		rows = append(slices.Clone(rows), r.Total)
	}
	width := len("op")
	for _, s := range rows {
		width = max(width, len(s.Op))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tok\terrors\tops/s\tmean\tp50\tp99\tp99.9\tmax\t\n", width, "op")
	for _, s := range rows {
		latencies := []string{"-", "-", "-", "-", "-"}
		if s.Count > 0 {
			latencies = []string{millis(s.Mean), millis(s.P50), millis(s.P99),
				millis(s.P999), millis(s.Max)}
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%.1f\t%s\t\n", width, s.Op, s.Count, s.Errors,
			s.Throughput, strings.Join(latencies, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	for i, note := range r.Notes {
		if i == 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, note)
	}
	if len(r.Errors) == 0 {
		_, err := fmt.Fprintln(w, "\nerrors: none")
		return err
	}
	fmt.Fprintln(w, "\nerrors:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", e.Op, e.Kind, e.Count)
	}
	return tw.Flush()
}

// millis formats a latency in milliseconds with microsecond precision.
func millis(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// plural returns noun, with an s unless n is one.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
