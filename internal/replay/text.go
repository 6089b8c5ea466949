package replay

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/fsm/text"
)

// DefaultTextBlock is the number of consecutive transactions of a
// sequential trace dealt to one client when TextOptions.Block is zero.
const DefaultTextBlock = 512

// Latencies are recorded in microseconds from 1µs to one minute with three
// significant digits.
const (
	latencyMin     = 1
	latencyMax     = int64(time.Minute / time.Microsecond)
	latencySigFigs = 3
)

// TextOptions adjusts Text. The zero value replays with one client into a
// new document with a generated id.
type TextOptions struct {
	// Doc is the document id; it must not have ops yet. Empty means
	// "replay-" and a random suffix.
	Doc string
	// Clients is the number of clients of a sequential trace; zero means
	// one. A concurrent trace has one client per agent and ignores it.
	Clients int
	// Block is the number of consecutive transactions of a sequential
	// trace dealt to one client before the next client takes over; zero
	// means DefaultTextBlock.
	Block int
	// Addrs are the nodes clients are dealt to, client i to Addrs[i mod
	// len], and the nodes verified at the end. Empty means every address
	// of the client.
	Addrs []string
	// Progress receives the progress of acknowledged transactions (see
	// progress); nil means none.
	Progress io.Writer
	// Docs is the number of documents the trace is replayed into at once,
	// each with its own clients, for the throughput of many documents;
	// zero means one. With more than one, the ids are Doc-1, Doc-2, ...
	Docs int
	// Logger receives the clients' Debug lines. Nil means slog.Default().
	Logger *slog.Logger
}

// TextReport is the outcome of Text.
type TextReport struct {
	// Doc is the document id.
	Doc string
	// Concurrent reports whether the trace was of the concurrent kind.
	Concurrent bool
	// Clients is the number of clients that typed each document.
	Clients int
	// Docs is the number of documents replayed at once.
	Docs int
	// Txns and Patches count the trace's transactions and patches.
	Txns, Patches int
	// Edits is the number of local edits the clients made (transactions
	// that changed nothing in a client's copy are not sent).
	Edits int
	// Ops is the number of ops the server acknowledged, Resends the
	// submits sent again after a failure.
	Ops, Resends int
	// Elapsed runs from the first edit until every client holds the last
	// revision.
	Elapsed time.Duration
	// Commit holds the latency of each edit from when a client made it to
	// when the server acknowledged the op that carried it, in µs.
	Commit *hdrhistogram.Histogram
	// Request holds the latency of each op from its first submit to its
	// acknowledgment, in µs.
	Request *hdrhistogram.Histogram
	// Rev is the document's final revision and MinIndex the Raft index
	// every node was read at.
	Rev, MinIndex uint64
	// Checks compares every node's and every client's text with the
	// trace's end content.
	Checks []TextCheck
	// Misplaced counts remote inserts of a concurrent trace whose place
	// among concurrent tombstones had to be taken from the server's op.
	Misplaced int
}

// TextCheck is one text compared with the trace's end content.
type TextCheck struct {
	// Where names it: "node ADDR (ID)" or "client ID".
	Where string
	// Rev is the revision it reflects.
	Rev uint64
	// Len is its length in code points.
	Len int
	// OK reports whether it equals the end content.
	OK bool
	// Problem says how it differs, or why it could not be read.
	Problem string
}

// Rate returns edits per second: the trace's transactions, times the
// documents, over Elapsed.
func (r TextReport) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Txns*max(r.Docs, 1)) / r.Elapsed.Seconds()
}

// Err returns nil when every node and client holds the end content, and
// an error wrapping ErrMismatch that counts the failures otherwise.
func (r TextReport) Err() error {
	failed := 0
	for _, c := range r.Checks {
		if !c.OK {
			failed++
		}
	}
	if failed == 0 && len(r.Checks) > 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d texts differ from the trace's end content",
		ErrMismatch, failed, len(r.Checks))
}

// Print writes the summary: throughput, latency percentiles and one line
// per check.
func (r TextReport) Print(w io.Writer) error {
	kind := "sequential"
	if r.Concurrent {
		kind = "concurrent"
	}
	into := fmt.Sprintf("%q", r.Doc)
	if r.Docs > 1 {
		into = fmt.Sprintf("each of %d documents %s-1...", r.Docs, r.Doc)
	}
	fmt.Fprintf(w, "replayed %d transactions (%d patches, %s trace) into %s with %d %s "+
		"in %.2fs: %.0f edits/s, %d ops, %d resends\n", r.Txns, r.Patches, kind, into,
		r.Clients, plural(r.Clients, "client"), r.Elapsed.Seconds(), r.Rate(), r.Ops,
		r.Resends)
	printLatency(w, "commit latency (edit made → acknowledged)", r.Commit)
	printLatency(w, "request latency (op sent → acknowledged)", r.Request)
	if r.Misplaced > 0 {
		fmt.Fprintf(w, "%d concurrent inserts placed by the server's order\n", r.Misplaced)
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		status := "ok"
		if !c.OK {
			status = "MISMATCH: " + c.Problem
		}
		fmt.Fprintf(tw, "%s\trev %d\t%d code points\t%s\n", c.Where, c.Rev, c.Len, status)
	}
	return tw.Flush()
}

func printLatency(w io.Writer, what string, h *hdrhistogram.Histogram) {
	if h == nil || h.TotalCount() == 0 {
		return
	}
	ms := func(v int64) string {
		return fmt.Sprintf("%.2fms", float64(v)/1000)
	}
	fmt.Fprintf(w, "%s: p50 %s  p99 %s  p99.9 %s  max %s  (%d samples)\n", what,
		ms(h.ValueAtPercentile(50)), ms(h.ValueAtPercentile(99)),
		ms(h.ValueAtPercentile(99.9)), ms(h.Max()), h.TotalCount())
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// Text replays an editing trace into one new document through the
// cluster behind c, then checks that every node and every client holds
// the trace's end content.
//
// A sequential trace is typed by opts.Clients clients, client i on node
// i mod len(addrs). With one client it types every transaction as fast
// as it can: its edits compose behind the op in flight, so the replay
// takes few round trips. With more, the transactions are dealt in blocks
// of opts.Block consecutive ones, block k to client k mod Clients; a
// client starts its block as soon as its own copy reflects every earlier
// transaction (the revision the previous block's client reached once
// acknowledged) and types it as one author would. Blocks keep the
// hand-offs between clients, each a round trip, to one per block.
//
// A concurrent trace is typed by one client per agent (see textConcurrent).
//
// The error is non-nil when the replay could not run to the end (a bad
// trace, a client that stopped, ctx); a replay that ran but ended with
// wrong texts returns a report whose Err says so.
func Text(
	ctx context.Context, c *client.Client, trace *TextTrace, opts TextOptions,
) (TextReport, error) {
	opts.Doc = cmp.Or(opts.Doc, "replay-"+randomSuffix())
	opts.Clients = max(opts.Clients, 1)
	opts.Block = cmp.Or(opts.Block, DefaultTextBlock)
	opts.Docs = max(opts.Docs, 1)
	if len(opts.Addrs) == 0 {
		opts.Addrs = c.Addrs()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	bar := newProgress(opts.Progress, len(trace.Txns)*opts.Docs, "text", "edits")
	if opts.Docs == 1 {
		report, err := replayOne(ctx, c, trace, opts, bar)
		bar.finish(err)
		return report, err
	}

	// Many documents at once, each a replay of its own.
	reports := make([]TextReport, opts.Docs)
	var group errgroup.Group
	for i := range opts.Docs {
		one := opts
		one.Doc = fmt.Sprintf("%s-%d", opts.Doc, i+1)
		group.Go(func() error {
			var err error
			reports[i], err = replayOne(ctx, c, trace, one, bar)
			return err
		})
	}
	err := group.Wait()
	bar.finish(err)
	return mergeTextReports(opts.Doc, reports), err
}

// mergeTextReports sums the reports of documents replayed at once.
func mergeTextReports(doc string, reports []TextReport) TextReport {
	merged := TextReport{
		Doc: doc, Docs: len(reports),
		Commit:  hdrhistogram.New(latencyMin, latencyMax, latencySigFigs),
		Request: hdrhistogram.New(latencyMin, latencyMax, latencySigFigs),
	}
	for _, r := range reports {
		merged.Concurrent, merged.Clients = r.Concurrent, r.Clients
		merged.Txns, merged.Patches = r.Txns, r.Patches
		merged.Edits += r.Edits
		merged.Ops += r.Ops
		merged.Resends += r.Resends
		merged.Misplaced += r.Misplaced
		merged.Elapsed = max(merged.Elapsed, r.Elapsed)
		merged.Rev = max(merged.Rev, r.Rev)
		merged.MinIndex = max(merged.MinIndex, r.MinIndex)
		if r.Commit != nil {
			merged.Commit.Merge(r.Commit)
			merged.Request.Merge(r.Request)
		}
		for _, check := range r.Checks {
			check.Where = r.Doc + ": " + check.Where
			merged.Checks = append(merged.Checks, check)
		}
	}
	return merged
}

// replayOne replays the trace into the one document opts.Doc.
func replayOne(
	ctx context.Context, c *client.Client, trace *TextTrace, opts TextOptions,
	bar *progress,
) (TextReport, error) {
	run := &textRun{
		client: c, trace: trace, opts: opts, bar: bar,
		report: TextReport{
			Doc: opts.Doc, Concurrent: trace.Concurrent(), Txns: len(trace.Txns),
			Patches: trace.Patches(), Clients: opts.Clients, Docs: 1,
		},
	}
	if trace.Concurrent() {
		run.report.Clients = trace.NumAgents
	}
	defer run.closeDocs()

	var err error
	if trace.Concurrent() {
		err = run.concurrent(ctx)
	} else {
		err = run.sequential(ctx)
	}
	if err != nil {
		return run.finishReport(), fmt.Errorf("replay: document %s: %w", opts.Doc, err)
	}

	run.closeDocs()
	report := run.finishReport()
	report.Checks = append(report.Checks, run.clientChecks...)
	nodes, err := VerifyText(ctx, c, opts.Doc, trace.EndContent, run.minIndex, opts.Addrs)
	report.MinIndex = run.minIndex
	report.Checks = append(nodes, report.Checks...)
	return report, err
}

// textRun is the state of one call of Text.
type textRun struct {
	client *client.Client
	trace  *TextTrace
	opts   TextOptions
	bar    *progress

	docs    []*client.Doc
	clients []*textClient
	start   time.Time
	end     time.Time

	clientChecks []TextCheck
	minIndex     uint64
	report       TextReport
}

// textClient is one replaying client's measurements. Its fields are
// written by the Doc's callbacks, under the Doc's lock, and read once the
// Doc is closed.
type textClient struct {
	commit, request *hdrhistogram.Histogram
	acked           int
	bar             *progress
}

func newTextClient(bar *progress) *textClient {
	return &textClient{
		commit:  hdrhistogram.New(latencyMin, latencyMax, latencySigFigs),
		request: hdrhistogram.New(latencyMin, latencyMax, latencySigFigs),
		bar:     bar,
	}
}

// onAck records one acknowledged op.
func (tc *textClient) onAck(ack client.DocAck) {
	tc.acked++
	record(tc.request, ack.Acked.Sub(ack.Sent))
	for _, at := range ack.Edits {
		record(tc.commit, ack.Acked.Sub(at))
	}
	tc.bar.add(len(ack.Edits))
}

func record(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(d.Microseconds(), latencyMin), latencyMax))
}

// openDocs opens one Doc per client, client i on node i mod len(addrs),
// and checks that the document is new.
func (r *textRun) openDocs(ctx context.Context, n int, cfg func(i int) client.DocConfig) error {
	runID := randomSuffix()
	for i := range n {
		tc := newTextClient(r.bar)
		c := client.DocConfig{
			ClientID: fmt.Sprintf("replay-%s-c%d", runID, i+1),
			Node:     r.opts.Addrs[i%len(r.opts.Addrs)],
			OnAck:    tc.onAck,
			Logger:   r.opts.Logger,
		}
		if cfg != nil {
			extra := cfg(i)
			c.ClientID = cmp.Or(extra.ClientID, c.ClientID)
			c.OnChange = extra.OnChange
		}
		doc, err := r.client.OpenDoc(ctx, r.opts.Doc, c)
		if err != nil {
			return err
		}
		r.docs = append(r.docs, doc)
		r.clients = append(r.clients, tc)
		if rev := doc.Rev(); rev != 0 {
			return fmt.Errorf("replay: document %q already has %d revisions; "+
				"replay into a new one (--doc)", r.opts.Doc, rev)
		}
	}
	return nil
}

// closeDocs closes every Doc, once.
func (r *textRun) closeDocs() {
	for _, d := range r.docs {
		_ = d.Close()
	}
}

// sequential replays a sequential trace as Text describes.
func (r *textRun) sequential(ctx context.Context) error {
	n := r.opts.Clients
	if err := r.openDocs(ctx, n, nil); err != nil {
		return err
	}

	// Deal the transactions in blocks; block k goes to client k mod n.
	txns := r.trace.Txns
	blocks := (len(txns) + r.opts.Block - 1) / r.opts.Block
	revAfter := make([]uint64, blocks) // revision once block k is acknowledged
	done := make([]chan struct{}, blocks)
	for k := range done {
		done[k] = make(chan struct{})
	}

	r.start = time.Now()
	if r.trace.StartContent != "" {
		if err := r.docs[0].Edit(text.Splice{Inserted: r.trace.StartContent}); err != nil {
			return err
		}
	}
	group, groupCtx := errgroup.WithContext(ctx)
	for i, doc := range r.docs {
		group.Go(func() error {
			for k := i; k < blocks; k += n {
				// Wait until this copy reflects every earlier block.
				if k > 0 && (k-1)%n != i {
					select {
					case <-groupCtx.Done():
						return groupCtx.Err()
					case <-done[k-1]:
					}
					if _, err := doc.WaitSynced(groupCtx, revAfter[k-1]); err != nil {
						return err
					}
				}

				for j := k * r.opts.Block; j < min(len(txns), (k+1)*r.opts.Block); j++ {
					err := doc.Update(func(view client.TextView) (text.Op, error) {
						return TxnOp(txns[j].Patches, view.Len())
					})
					if err != nil {
						return fmt.Errorf("replay: transaction %d: %w", j, err)
					}
				}

				// Hand over: the next client needs the revision this
				// block ends at. A lone client hands over to itself.
				if n > 1 || k == blocks-1 {
					rev, err := doc.WaitSynced(groupCtx, 0)
					if err != nil {
						return err
					}
					revAfter[k] = rev
					close(done[k])
				}
			}
			return nil
		})
	}
	if err := group.Wait(); err != nil {
		return err
	}

	var final uint64
	if blocks > 0 {
		final = revAfter[blocks-1]
	}
	return r.settle(ctx, final)
}

// settle waits until every client holds revision rev (at least) with
// nothing pending, stops the clock and records the clients' texts.
func (r *textRun) settle(ctx context.Context, rev uint64) error {
	for _, doc := range r.docs {
		got, err := doc.WaitSynced(ctx, rev)
		if err != nil {
			return err
		}
		rev = max(rev, got)
	}
	for _, doc := range r.docs {
		if _, err := doc.WaitSynced(ctx, rev); err != nil {
			return err
		}
	}
	r.end = time.Now()

	want := r.trace.EndContent
	for _, doc := range r.docs {
		got, docRev, _ := doc.Snapshot()
		check := TextCheck{Where: "client " + doc.ClientID(), Rev: docRev,
			Len: len([]rune(got)), OK: got == want}
		if !check.OK {
			check.Problem = firstDifference(got, want)
		}
		r.clientChecks = append(r.clientChecks, check)
		r.minIndex = max(r.minIndex, doc.MaxIndex())
	}
	r.report.Rev = rev
	return nil
}

// finishReport fills in the counts and latencies of the clients.
func (r *textRun) finishReport() TextReport {
	report := r.report
	report.Commit = hdrhistogram.New(latencyMin, latencyMax, latencySigFigs)
	report.Request = hdrhistogram.New(latencyMin, latencyMax, latencySigFigs)
	for i, doc := range r.docs {
		stats := doc.Stats()
		report.Edits += stats.Edits
		report.Ops += stats.Acked
		report.Resends += stats.Resends
		report.Commit.Merge(r.clients[i].commit)
		report.Request.Merge(r.clients[i].request)
	}
	if !r.start.IsZero() {
		end := r.end
		if end.IsZero() {
			end = time.Now()
		}
		report.Elapsed = end.Sub(r.start)
	}
	return report
}

// VerifyText reads document id from every node in addrs, each read pinned
// to its node and waiting until it has applied minIndex or the index a
// linearizable read returns, whichever is higher, and compares the text
// with want. Failed reads and wrong texts are checks that are not OK; the
// error is non-nil only when no index to read at could be found.
func VerifyText(
	ctx context.Context, c *client.Client, id, want string, minIndex uint64, addrs []string,
) ([]TextCheck, error) {
	if len(addrs) == 0 {
		addrs = c.Addrs()
	}
	// A linearizable read covers every write acknowledged before it, also
	// those a client learned of from its event stream before the submit
	// reply with their index arrived.
	doc, err := c.GetDoc(ctx, id, client.ReadOptions{Consistency: client.ConsistencyStrong})
	switch {
	case err == nil:
		minIndex = max(minIndex, doc.Index)
	case minIndex == 0:
		return nil, fmt.Errorf("replay: find index to verify at: %w", err)
	}

	checks := make([]TextCheck, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			check := &checks[i]
			check.Where = "node " + addr
			doc, err := c.GetDoc(ctx, id, client.ReadOptions{MinIndex: minIndex, Node: addr})
			if err != nil {
				check.Problem = err.Error()
				return
			}
			if doc.Node != "" {
				check.Where += " (" + doc.Node + ")"
			}
			check.Rev, check.Len = doc.Rev, len([]rune(doc.Text))
			check.OK = doc.Text == want
			if !check.OK {
				check.Problem = firstDifference(doc.Text, want)
			}
		})
	}
	wg.Wait()
	return checks, nil
}

// randomSuffix returns 8 random hex digits.
func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// DocIDForFile returns a fresh document id for replaying the trace at
// path: "replay-", the file's base name without extensions, and a random
// suffix.
func DocIDForFile(path string) string {
	base := filepath.Base(path)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	return "replay-" + base + "-" + randomSuffix()
}
