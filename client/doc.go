package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/shoal-db/shoal/fsm/text"
)

// Defaults used for the zero fields of a DocConfig.
const (
	// DefaultGapTimeout is how long a Doc waits for the event stream to
	// deliver missing revisions before it reads them from the op log.
	DefaultGapTimeout = 100 * time.Millisecond
	// DefaultIdleTimeout is how long an event stream may stay silent
	// before the Doc reconnects, to another node.
	DefaultIdleTimeout = 30 * time.Second
	// docPageSize is the page size of op log reads that fill gaps.
	docPageSize = 1000
)

// ErrDocClosed is returned by the methods of a Doc after Close.
var ErrDocClosed = errors.New("client: document closed")

// ErrHistoryTruncated is returned (wrapped) by a Doc that fell so far
// behind that the server's op log no longer holds the ops after its
// revision while it had local edits the server had not acknowledged:
// they were made against a revision nothing can transform any more, and
// the Doc stops. Without pending edits a Doc recovers by itself: it
// replaces its copy with the current text (see DocChange.Reset).
var ErrHistoryTruncated = errors.New("client: the op log no longer holds the document's revision")

// DocConfig configures a Doc. The zero value is ready to use.
type DocConfig struct {
	// ClientID names this editing session in the document's log; the
	// server deduplicates submits on (ClientID, seq). It must be unique
	// among the Docs editing one document, also across processes. Empty
	// means a random id.
	ClientID string
	// Node is the node, as host:port or URL, that the Doc prefers for its
	// event stream and its submits; it moves on to the others when that
	// node fails. Empty means the Client's next node in turn.
	Node string
	// FromStart rebuilds the text from the empty document at revision 0
	// and the whole op log, instead of starting from the text a node
	// holds now. If the log no longer starts at revision 1 (the server
	// prunes old ops), the Doc starts from the current text instead, with
	// one DocChange whose Reset is set.
	FromStart bool
	// GapTimeout is how long revisions may be missing (a submit reply
	// named a revision the stream has not delivered) before the Doc reads
	// them from the op log. A gap within the stream itself is filled at
	// once. Zero means DefaultGapTimeout.
	GapTimeout time.Duration
	// IdleTimeout is how long the event stream may deliver nothing before
	// the Doc reconnects to the next node. Zero means DefaultIdleTimeout;
	// a negative value disables the check.
	IdleTimeout time.Duration
	// OnChange, if set, is called for every change of the local copy, in
	// the order the changes are made, with the Doc's lock held: it sees
	// the copy exactly as the change left it and must not call the Doc's
	// methods.
	OnChange func(DocChange)
	// OnAck, if set, is called once for every local op the server
	// acknowledged, with the Doc's lock held, like OnChange.
	OnAck func(DocAck)
	// Logger receives Debug lines on reconnects, gap fills and resends,
	// and Error lines on fatal errors. Nil means the Client's logger.
	Logger *slog.Logger
}

// DocChange is one change of a Doc's local copy.
type DocChange struct {
	// Op is the change as applied to the local copy: a local edit as made,
	// a committed op of someone else transformed past the pending local
	// edits.
	Op text.Op
	// Local reports whether it was a local edit.
	Local bool
	// Rev is the server revision the copy reflects after the change (for
	// a local edit, the one it reflected before).
	Rev uint64
	// Client is the author's client id; empty for a reset.
	Client string
	// Reset reports that the copy fell behind further than the server's
	// op log reaches and was replaced by the current text: Op deletes the
	// whole old text and inserts the new one, and the ops in between are
	// not reported.
	Reset bool
}

// DocAck describes one local op the server acknowledged.
type DocAck struct {
	// Seq is the op's sequence number in this session.
	Seq uint64
	// Rev is the revision it produced.
	Rev uint64
	// Index is the Raft index of the write, zero when the acknowledgment
	// came from the event stream or op log rather than a submit reply.
	Index uint64
	// Edits holds the time of each local edit the op carried, in order.
	Edits []time.Time
	// Sent is when the op was first sent; Acked when its acknowledgment
	// arrived.
	Sent, Acked time.Time
	// Attempts is the number of submits it took, resends included.
	Attempts int
}

// DocStats counts what a Doc did since it was opened.
type DocStats struct {
	// Edits is the number of local edits, no-ops excluded.
	Edits int
	// Acked is the number of local ops the server acknowledged; Resends
	// the submits sent again after a failure.
	Acked, Resends int
	// Remote is the number of other clients' ops applied.
	Remote int
	// Reconnects counts event streams opened after the first.
	Reconnects int
	// GapFills counts reads of the op log that filled missing revisions.
	GapFills int
	// Resets counts the times the copy was replaced by the current text
	// because the op log no longer held the revisions after it.
	Resets int
}

// TextView is read access to a Doc's local copy, valid only during the
// call of the function it is passed to.
type TextView interface {
	// Len returns the length in code points.
	Len() int
	// Slice returns the code points from start up to end.
	Slice(start, end int) string
	// String returns the whole text.
	String() string
}

// Doc is one client's copy of a shared document: it applies local edits
// at once and sends them in the background, and it follows every other
// client's committed edits through a node's event stream. It keeps one op
// in flight and composes later local edits behind it (the ot.js client
// states, see DocState), transforms incoming ops against both, and
// rebuilds the text from the stream alone.
//
// The stream reconnects, to the next node when one fails, resuming after
// the last revision it holds; revisions it misses are read from the op
// log. If the server has pruned them from its log (410
// history_truncated), the Doc reads the current text and goes on from
// there, or stops with ErrHistoryTruncated if it has local edits pending. A submit that fails is sent again with the same (client, seq), so
// the server applies it once however often it arrives.
//
// A Doc is safe for concurrent use by many goroutines. Local edits from
// different goroutines are applied in the order they take its lock. Open
// one with Client.OpenDoc and Close it when done.
type Doc struct {
	id     string
	api    *Client // prefers cfg.Node, fails over to the others
	cfg    DocConfig
	logger *slog.Logger

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sendKick chan struct{} // a new op is in flight
	gapKick  chan struct{} // revisions are missing

	mu           sync.Mutex
	core         *docCore
	err          error         // fatal: the Doc stopped
	changed      chan struct{} // closed and replaced on every change
	stats        DocStats
	maxIndex     uint64    // highest Raft index of a submit reply
	known        uint64    // a revision known to exist (from WaitSynced)
	gapSince     time.Time // when the current gap was first seen
	streamGap    bool      // the stream itself skipped revisions
	streamAddr   string    // node of the current or next stream
	stopStream   context.CancelFunc
	reconnecting bool // Reconnect chose streamAddr
}

// OpenDoc opens document id: it reads the text a node holds now (a
// document without ops is empty at revision 0) and starts following the
// event stream. ctx bounds only the first read. The Doc uses c's HTTP
// client and retry settings.
func (c *Client) OpenDoc(ctx context.Context, id string, cfg DocConfig) (*Doc, error) {
	if id == "" {
		return nil, errors.New("client: empty document id")
	}
	cfg.ClientID = cmp.Or(cfg.ClientID, randomID())
	cfg.GapTimeout = cmp.Or(cfg.GapTimeout, DefaultGapTimeout)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)

	preferred := c.addrs[c.firstNode()]
	if cfg.Node != "" {
		var err error
		if preferred, err = NormalizeAddr(cfg.Node); err != nil {
			return nil, err
		}
	}
	logger := cmp.Or(cfg.Logger, c.logger)
	d := &Doc{
		id:         id,
		api:        c.preferring(preferred),
		cfg:        cfg,
		logger:     logger.With("doc", id, "doc_client", cfg.ClientID),
		sendKick:   make(chan struct{}, 1),
		gapKick:    make(chan struct{}, 1),
		changed:    make(chan struct{}),
		streamAddr: preferred,
	}

	// Start from a node's current text, or from nothing.
	initial, rev := "", uint64(0)
	if !cfg.FromStart {
		doc, err := d.api.GetDoc(ctx, id, ReadOptions{})
		switch {
		case err == nil:
			initial, rev = doc.Text, doc.Rev
		case !IsNotFound(err):
			return nil, fmt.Errorf("client: open document %s: %w", id, err)
		}
	}
	d.core = newDocCore(cfg.ClientID, initial, rev)

	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(3)
	go d.streamLoop()
	go d.sendLoop()
	go d.gapLoop()
	return d, nil
}

// preferring returns a client for the same nodes that sends every request
// to preferred first and stays with whichever node answered last.
func (c *Client) preferring(preferred string) *Client {
	addrs := []string{preferred}
	for _, addr := range c.addrs {
		if addr != preferred {
			addrs = append(addrs, addr)
		}
	}
	return &Client{
		addrs:         addrs,
		http:          c.http,
		timeout:       c.timeout,
		maxRetries:    c.maxRetries,
		retryBackoff:  c.retryBackoff,
		maxBackoff:    c.maxBackoff,
		maxRetryAfter: c.maxRetryAfter,
		selection:     SelectPinned,
		clientID:      c.clientID,
		logger:        c.logger,
	}
}

// ID returns the document id.
func (d *Doc) ID() string { return d.id }

// ClientID returns the id this session's ops carry in the log.
func (d *Doc) ClientID() string { return d.cfg.ClientID }

// Text returns the local copy's text, with every local edit applied.
func (d *Doc) Text() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.core.text.String()
}

// Len returns the local copy's length in code points.
func (d *Doc) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.core.text.Len()
}

// Rev returns the server revision the local copy reflects: every
// committed op up to Rev is in it, plus the pending local edits.
func (d *Doc) Rev() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.core.rev
}

// State returns the ot.js state of the pending local edits.
func (d *Doc) State() DocState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.core.state()
}

// Snapshot returns the text, the revision and the state together, as of
// one moment.
func (d *Doc) Snapshot() (string, uint64, DocState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.core.text.String(), d.core.rev, d.core.state()
}

// Stats returns the Doc's counters.
func (d *Doc) Stats() DocStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// MaxIndex returns the highest Raft index of any submit reply so far: a
// read with min_index = MaxIndex on any node reflects every op of this
// session acknowledged through a reply.
func (d *Doc) MaxIndex() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxIndex
}

// StreamNode returns the base URL of the node the event stream is (or is
// about to be) connected to.
func (d *Doc) StreamNode() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.streamAddr
}

// Err returns the error that stopped the Doc, ErrDocClosed after Close,
// or nil while it runs.
func (d *Doc) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// ApplyLocal applies op, made against the local copy as it is now, to the
// copy and queues it for the server. It fails with an error wrapping
// text.ErrLengthMismatch if op does not fit the copy, and changes nothing
// then. A no-op is accepted and not sent.
func (d *Doc) ApplyLocal(op text.Op) error {
	return d.Update(func(TextView) (text.Op, error) { return op, nil })
}

// Edit applies a splice of the local copy as it is now: at code point
// s.Pos delete s.Deleted code points and insert s.Inserted.
func (d *Doc) Edit(s text.Splice) error {
	return d.Update(func(view TextView) (text.Op, error) { return s.Op(view.Len()) })
}

// Update calls fn with the local copy and applies the op it returns, as
// ApplyLocal does, with no change able to come in between. fn runs with
// the Doc's lock held and must not call the Doc's methods; an error from
// fn is returned and nothing changes.
func (d *Doc) Update(fn func(view TextView) (text.Op, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}

	op, err := fn(d.core.text)
	if err != nil {
		return err
	}
	send, err := d.core.local(op, time.Now())
	if err != nil {
		return err
	}
	if op.IsNoop() {
		return nil
	}
	d.stats.Edits++
	if d.cfg.OnChange != nil {
		d.cfg.OnChange(DocChange{Op: op, Local: true, Rev: d.core.rev, Client: d.cfg.ClientID})
	}
	if send {
		kick(d.sendKick)
	}
	d.notifyLocked()
	return nil
}

// WaitSynced waits until the local copy reflects at least revision minRev
// and every local edit has been acknowledged, and returns the revision
// the copy then reflects. With minRev zero it only waits for the
// acknowledgments. It returns early with the Doc's error if it stops, or
// with ctx's error.
func (d *Doc) WaitSynced(ctx context.Context, minRev uint64) (uint64, error) {
	// The revision exists: if the stream does not bring it in time, the
	// op log will.
	d.mu.Lock()
	if minRev > d.known {
		d.known = minRev
		d.checkGapLocked(false)
	}
	d.mu.Unlock()

	for {
		d.mu.Lock()
		rev, state, err, changed := d.core.rev, d.core.state(), d.err, d.changed
		d.mu.Unlock()
		switch {
		case err != nil:
			return rev, err
		case rev >= minRev && state == DocSynchronized:
			return rev, nil
		}

		select {
		case <-ctx.Done():
			return rev, fmt.Errorf("client: document %s at revision %d (%s), waiting for %d: %w",
				d.id, rev, state, minRev, ctx.Err())
		case <-changed:
		}
	}
}

// Reconnect drops the event stream and opens it again on node (host:port
// or URL), or on the next node when node is empty. The copy carries on
// from the revision it holds.
func (d *Doc) Reconnect(node string) error {
	addr := ""
	if node != "" {
		var err error
		if addr, err = NormalizeAddr(node); err != nil {
			return err
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	if addr == "" {
		addr = d.nextAddrLocked(d.streamAddr)
	}
	d.streamAddr, d.reconnecting = addr, true
	if d.stopStream != nil {
		d.stopStream()
	}
	return nil
}

// Close stops the Doc's goroutines. Local edits not yet acknowledged may
// or may not reach the server; call WaitSynced first to be sure.
func (d *Doc) Close() error {
	d.mu.Lock()
	if d.err == nil {
		d.err = ErrDocClosed
	}
	d.notifyLocked()
	d.mu.Unlock()

	d.cancel()
	d.wg.Wait()
	return nil
}

// fail stops the Doc with err; the caller holds d.mu.
func (d *Doc) failLocked(err error) {
	if d.err != nil {
		return
	}
	d.err = err
	d.logger.Error("document client stopped", "err", err)
	d.notifyLocked()
	d.cancel()
}

// notifyLocked wakes every WaitSynced; the caller holds d.mu.
func (d *Doc) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// kick wakes the goroutine reading ch without blocking.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// nextAddrLocked returns the node after addr in the Doc's order.
func (d *Doc) nextAddrLocked(addr string) string {
	i := slices.Index(d.api.addrs, addr)
	return d.api.addrs[(i+1)%len(d.api.addrs)]
}

// offerLocked feeds committed ops into the state machine and reports what
// happened to the callbacks and waiters; fromStream says they came from
// the event stream, whose gaps are filled at once. The caller holds d.mu.
func (d *Doc) offerLocked(fromStream bool, ops ...DocOp) {
	now := time.Now()
	skipped := false // the stream jumped past the next revision
	for _, op := range ops {
		if d.err != nil {
			return
		}
		skipped = skipped || fromStream && op.Rev > d.core.rev+1
		steps, send, err := d.core.offer(op)
		for _, step := range steps {
			d.reportLocked(step, now)
		}
		if err != nil {
			d.failLocked(err)
			return
		}
		if send {
			kick(d.sendKick)
		}
	}

	d.checkGapLocked(skipped)
	d.notifyLocked()
}

// gapLocked reports whether revisions are known to exist that the copy
// lacks: ops beyond the next revision wait for those in between, or a
// waiter named a revision the copy has not reached.
func (d *Doc) gapLocked() bool {
	return d.core.gap() || d.core.rev < d.known
}

// checkGapLocked notes when a gap opens or closes and wakes gapLoop for a
// new one; skipped says the event stream itself jumped past revisions,
// which gapLoop fills at once. The caller holds d.mu.
func (d *Doc) checkGapLocked(skipped bool) {
	switch {
	case !d.gapLocked():
		d.gapSince, d.streamGap = time.Time{}, false
	case d.gapSince.IsZero() || skipped && !d.streamGap:
		if d.gapSince.IsZero() {
			d.gapSince = time.Now()
		}
		d.streamGap = d.streamGap || skipped
		kick(d.gapKick)
	}
}

// reportLocked passes one step of the log to the callbacks.
func (d *Doc) reportLocked(step docStep, now time.Time) {
	if step.ack == nil {
		d.stats.Remote++
		if d.cfg.OnChange != nil {
			d.cfg.OnChange(DocChange{Op: step.applied, Rev: step.op.Rev, Client: step.op.Client})
		}
		return
	}

	out := step.ack
	d.stats.Acked++
	if out.ackedAt.IsZero() {
		out.ackedAt = now
	}
	if d.cfg.OnAck != nil {
		d.cfg.OnAck(DocAck{
			Seq: out.seq, Rev: step.op.Rev, Index: out.index, Edits: out.edits,
			Sent: out.sentAt, Acked: out.ackedAt, Attempts: out.attempts,
		})
	}
}

// sendLoop sends the in-flight op, and sends it again with the same
// (client, seq) until the server answers.
func (d *Doc) sendLoop() {
	defer d.wg.Done()
	backoffs := 0
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.sendKick:
		}

		for d.ctx.Err() == nil {
			d.mu.Lock()
			out := d.core.inflight
			if out == nil || out.replied || d.err != nil {
				d.mu.Unlock()
				break
			}
			submit := DocSubmit{Rev: out.baseRev, Client: d.cfg.ClientID, Seq: out.seq,
				Op: out.sent}
			if out.attempts == 0 {
				out.sentAt = time.Now()
			} else {
				d.stats.Resends++
			}
			out.attempts++
			d.mu.Unlock()

			res, err := d.api.SubmitDocOp(d.ctx, d.id, submit, RequestOptions{})
			if err == nil {
				backoffs = 0
				d.mu.Lock()
				if d.core.inflight == out {
					out.replied, out.index, out.ackedAt = true, res.Index, time.Now()
				}
				d.maxIndex = max(d.maxIndex, res.Index)
				d.offerLocked(false, DocOp{Rev: res.Rev, Op: res.Op, Client: submit.Client,
					Seq: submit.Seq})
				d.mu.Unlock()
				continue
			}
			if d.ctx.Err() != nil {
				return
			}

			// A rejected op cannot succeed later; anything else may.
			var apiErr *APIError
			if errors.As(err, &apiErr) && !apiErr.Temporary() {
				d.mu.Lock()
				d.failLocked(fmt.Errorf("client: document %s: op %d rejected: %w",
					d.id, submit.Seq, err))
				d.mu.Unlock()
				return
			}
			wait := d.api.backoff(backoffs)
			backoffs++
			d.logger.Debug("resending op", "seq", submit.Seq, "wait", wait, "err", err)
			if sleep(d.ctx, wait) != nil {
				return
			}
		}
	}
}

// gapLoop fills missing revisions from the op log: at once when the
// stream skipped some, after GapTimeout when only a submit reply is ahead
// of the stream.
func (d *Doc) gapLoop() {
	defer d.wg.Done()
	backoffs := 0
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.gapKick:
		}

		for {
			d.mu.Lock()
			gap, since, now := d.gapLocked(), d.gapSince, d.streamGap
			from, minIndex := d.core.rev, d.maxIndex
			d.mu.Unlock()
			if !gap {
				backoffs = 0
				break
			}
			if !now {
				if wait := time.Until(since.Add(d.cfg.GapTimeout)); wait > 0 {
					// Wake early if the stream itself skips revisions.
					timer := time.NewTimer(wait)
					select {
					case <-d.ctx.Done():
						timer.Stop()
						return
					case <-d.gapKick:
					case <-timer.C:
					}
					timer.Stop()
					continue
				}
			}

			list, err := d.api.DocOps(d.ctx, d.id, from, docPageSize,
				ReadOptions{MinIndex: minIndex})
			if d.ctx.Err() != nil {
				return
			}
			if IsHistoryTruncated(err) {
				if err = d.resync(err); err == nil {
					backoffs = 0
					continue
				}
			}
			progressed := false
			d.mu.Lock()
			if err == nil {
				d.stats.GapFills++
				d.offerLocked(false, list.Ops...)
				progressed = d.core.rev > from
			}
			d.mu.Unlock()
			if progressed {
				backoffs = 0
				continue
			}

			// The node did not have them yet (or failed): try again.
			wait := d.api.backoff(backoffs)
			backoffs++
			d.logger.Debug("op log read did not fill the gap", "from", from, "wait", wait,
				"err", err)
			if sleep(d.ctx, wait) != nil {
				return
			}
		}
	}
}

// streamLoop keeps an event stream open, moving to the next node when one
// fails.
func (d *Doc) streamLoop() {
	defer d.wg.Done()
	backoffs := 0
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		if d.ctx.Err() != nil {
			d.mu.Unlock()
			return
		}
		addr := d.streamAddr
		ctx, stop := context.WithCancel(d.ctx)
		d.stopStream, d.reconnecting = stop, false
		if attempt > 0 {
			d.stats.Reconnects++
		}
		d.mu.Unlock()

		delivered, err := d.stream(ctx, addr)
		stop()
		if d.ctx.Err() != nil {
			return
		}
		if IsHistoryTruncated(err) {
			// The node is fine; the copy must start over from its text.
			if err = d.resync(err); err == nil {
				backoffs = 0
				continue
			}
		}

		// Move on to the next node, unless Reconnect chose one.
		d.mu.Lock()
		requested := d.reconnecting
		if !requested {
			d.streamAddr = d.nextAddrLocked(addr)
		}
		next := d.streamAddr
		d.mu.Unlock()
		d.logger.Debug("event stream ended", "node", addr, "next", next,
			"requested", requested, "err", err)

		// A stream that broke after delivering reconnects at once; one
		// that never got going waits before the next try.
		if requested || delivered {
			backoffs = 0
			continue
		}
		if sleep(d.ctx, d.api.backoff(backoffs)) != nil {
			return
		}
		backoffs++
	}
}

// stream reads one event stream from addr until it breaks, ctx ends or
// it stays idle too long. It reports whether any event arrived.
func (d *Doc) stream(ctx context.Context, addr string) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	d.mu.Lock()
	from := d.core.rev
	d.mu.Unlock()
	req, err := newEventRequest(ctx, addr, d.id, from)
	if err != nil {
		return false, err
	}

	// The idle timer covers the wait for the reply's headers too.
	var idle *time.Timer
	if d.cfg.IdleTimeout > 0 {
		idle = time.AfterFunc(d.cfg.IdleTimeout, cancel)
		defer idle.Stop()
	}
	resp, err := d.api.http.Do(req)
	if err != nil {
		return false, &TransportError{Addr: addr, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, decodeAPIError(resp, addr)
	}

	events := newEventReader(resp.Body)
	for {
		ev, err := events.next()
		if idle != nil {
			idle.Reset(d.cfg.IdleTimeout)
		}
		if err != nil {
			return delivered, err
		}
		if ev.kind == "error" {
			return delivered, parseEventError(ev, addr)
		}
		if ev.data == "" || (ev.kind != "" && ev.kind != "message" && ev.kind != "op") {
			continue // a comment, heartbeat or event of another kind
		}

		op, err := parseEventOp(ev)
		if err != nil {
			return delivered, fmt.Errorf("client: event stream of %s from %s: %w", d.id, addr, err)
		}
		delivered = true
		d.mu.Lock()
		d.offerLocked(true, op)
		d.mu.Unlock()
	}
}

// resync replaces the copy with a node's current text after the op log
// answered cause, a history_truncated error: it no longer holds the ops
// after the copy's revision. A copy with pending local edits cannot be
// carried over, and the Doc stops with ErrHistoryTruncated. It returns an
// error if the text could not be read or is not ahead of the copy, to be
// tried again later.
func (d *Doc) resync(cause error) error {
	d.mu.Lock()
	minIndex := d.maxIndex
	err := d.core.resettable()
	if err != nil {
		d.failLocked(fmt.Errorf("client: document %s at revision %d: %w (%v)", d.id,
			d.core.rev, err, cause))
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}

	doc, err := d.api.GetDoc(d.ctx, d.id, ReadOptions{MinIndex: minIndex})
	if err != nil {
		return fmt.Errorf("client: document %s: read the text to resync: %w", d.id, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.err != nil:
		return d.err
	case doc.Rev <= d.core.rev:
		// Another resync or the stream got there first, or the node that
		// answered lags the one whose log was truncated.
		return fmt.Errorf("client: document %s: node %s is at revision %d, the copy at %d",
			d.id, doc.Node, doc.Rev, d.core.rev)
	}
	old := d.core.text.Len()
	from := d.core.rev
	if err := d.core.reset(doc.Text, doc.Rev); err != nil {
		// A local edit came in while the text was read.
		d.failLocked(fmt.Errorf("client: document %s at revision %d: %w (%v)", d.id, from,
			err, cause))
		return err
	}
	d.stats.Resets++
	d.logger.Info("document copy reset to the current text: the op log no longer holds "+
		"the revisions after it", "from_rev", from, "rev", doc.Rev, "node", doc.Node)
	if d.cfg.OnChange != nil {
		op, err := text.FromSplice(0, old, doc.Text, old)
		if err == nil {
			d.cfg.OnChange(DocChange{Op: op, Rev: doc.Rev, Reset: true})
		}
	}
	// Ops that arrived ahead of the new revision go on from it.
	if next, ok := d.core.early[doc.Rev+1]; ok {
		d.offerLocked(false, next)
		return nil
	}
	d.checkGapLocked(false)
	d.notifyLocked()
	return nil
}
