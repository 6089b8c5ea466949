package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/shoal-db/shoal/fsm/text"
)

// ErrDiverged is returned (wrapped) by a Doc once its copy no longer
// follows the server's log: a committed op did not fit the local text, or
// the server applied the client's own op differently than the client
// transformed it. Either means a bug in the engine or the server; the Doc
// stops and reports the error rather than edit a wrong text.
var ErrDiverged = errors.New("client: document copy diverged from the server")

// DocState is where a Doc stands in the ot.js client protocol: how many of
// its local edits the server has not yet acknowledged.
type DocState int

const (
	// DocSynchronized means every local edit has been acknowledged.
	DocSynchronized DocState = iota
	// DocAwaitingConfirm means one op is in flight and nothing is behind
	// it.
	DocAwaitingConfirm
	// DocAwaitingWithBuffer means one op is in flight and later local
	// edits wait behind it, composed into one buffered op.
	DocAwaitingWithBuffer
)

// String returns the state's name as ot.js spells it.
func (s DocState) String() string {
	switch s {
	case DocSynchronized:
		return "Synchronized"
	case DocAwaitingConfirm:
		return "AwaitingConfirm"
	case DocAwaitingWithBuffer:
		return "AwaitingWithBuffer"
	}
	return fmt.Sprintf("DocState(%d)", int(s))
}

// outgoing is a local op on its way to the server: the one in flight or
// the buffer behind it.
type outgoing struct {
	seq     uint64  // 0 while buffered
	baseRev uint64  // the revision it was sent against
	sent    text.Op // as sent; a resend repeats it unchanged
	op      text.Op // transformed against every op committed since baseRev

	edits    []time.Time // when each local edit composed into it was made
	sentAt   time.Time   // the first send
	attempts int         // sends so far
	replied  bool        // a submit reply arrived for it
	index    uint64      // the Raft index of that reply
	ackedAt  time.Time   // when the reply (or its own event) arrived
}

// docCore is the state machine of a document client, without I/O: the
// local copy, its revision, and the ot.js states. Local edits go in
// through local; committed ops of the server's log, in any order and with
// duplicates, through offer. It is not safe for concurrent use; Doc
// serializes all calls under its lock.
type docCore struct {
	clientID string
	text     *text.Rope
	rev      uint64
	nextSeq  uint64

	inflight *outgoing
	buffer   *outgoing

	// early holds committed ops beyond rev+1 until the ops between arrive.
	early map[uint64]DocOp
}

func newDocCore(clientID, initial string, rev uint64) *docCore {
	return &docCore{
		clientID: clientID,
		text:     text.NewRope(initial),
		rev:      rev,
		nextSeq:  1,
		early:    make(map[uint64]DocOp),
	}
}

// state returns the ot.js state.
func (c *docCore) state() DocState {
	switch {
	case c.inflight == nil:
		return DocSynchronized
	case c.buffer == nil:
		return DocAwaitingConfirm
	}
	return DocAwaitingWithBuffer
}

// local applies a local edit made at time at to the copy and queues it
// for the server. It reports whether a new op is now in flight and needs
// sending. A no-op changes nothing and is not sent.
func (c *docCore) local(op text.Op, at time.Time) (send bool, err error) {
	if err := c.text.Apply(op); err != nil {
		return false, err
	}
	if op.IsNoop() {
		return false, nil
	}

	switch {
	case c.inflight == nil:
		c.inflight = &outgoing{
			seq: c.nextSeq, baseRev: c.rev, sent: op, op: op,
			edits: []time.Time{at},
		}
		c.nextSeq++
		return true, nil
	case c.buffer == nil:
		c.buffer = &outgoing{op: op, edits: []time.Time{at}}
	default:
		// TODO(client): the buffer grows without bound while an op is in
		// flight; one composed of megabytes of typing would exceed the
		// server's 1 MiB body limit and stop the Doc. Start a second buffer
		// past a size instead.
		composed, err := text.Compose(c.buffer.op, op)
		if err != nil {
			return false, fmt.Errorf("%w: compose buffer: %v", ErrDiverged, err)
		}
		c.buffer.op = composed
		c.buffer.edits = append(c.buffer.edits, at)
	}
	return false, nil
}

// docStep is what offer did with one committed op, in log order.
type docStep struct {
	// op is the committed op.
	op DocOp
	// applied is op transformed onto the local copy; for an ack of the
	// client's own op it is the zero Op and ack is set.
	applied text.Op
	// ack is the in-flight op this committed op acknowledged.
	ack *outgoing
}

// offer takes one committed op of the log, from the event stream, a page
// of the op log or a submit reply. Ops at or below the current revision
// are duplicates and ignored; ops beyond the next revision wait in early.
// It returns what it applied, in order, and whether a new op is now in
// flight and needs sending. An error wraps ErrDiverged and leaves the copy
// as it was before the failing op.
func (c *docCore) offer(op DocOp) (steps []docStep, send bool, err error) {
	switch {
	case op.Rev <= c.rev:
		return nil, false, nil
	case op.Rev > c.rev+1:
		if _, ok := c.early[op.Rev]; !ok {
			c.early[op.Rev] = op
		}
		return nil, false, nil
	}

	for {
		step, sendNext, err := c.apply(op)
		if err != nil {
			return steps, send, err
		}
		steps = append(steps, step)
		send = send || sendNext

		next, ok := c.early[c.rev+1]
		if !ok {
			break
		}
		delete(c.early, c.rev+1)
		op = next
	}
	for rev := range c.early {
		if rev <= c.rev {
			delete(c.early, rev)
		}
	}
	return steps, send, nil
}

// resettable returns nil if the copy may be replaced by a later text of
// the server, and an error wrapping ErrHistoryTruncated if local edits
// are pending: they were made against the copy's revision.
func (c *docCore) resettable() error {
	if c.inflight != nil {
		return fmt.Errorf("%w: local edits are pending (seq %d made against revision %d)",
			ErrHistoryTruncated, c.inflight.seq, c.inflight.baseRev)
	}
	return nil
}

// reset replaces the copy with the server's text s at revision rev, ahead
// of the copy, when the ops in between can no longer be had. Ops held
// early stay if they are beyond rev. It fails, changing nothing, if local
// edits are pending (see resettable).
func (c *docCore) reset(s string, rev uint64) error {
	if err := c.resettable(); err != nil {
		return err
	}
	c.text, c.rev = text.NewRope(s), rev
	for r := range c.early {
		if r <= rev {
			delete(c.early, r)
		}
	}
	return nil
}

// gap reports whether committed ops beyond the next revision are waiting
// for the ones in between.
func (c *docCore) gap() bool { return len(c.early) > 0 }

// apply takes the committed op of revision rev+1.
func (c *docCore) apply(op DocOp) (docStep, bool, error) {
	// The client's own op: the in-flight op is acknowledged. One op is in
	// flight at a time and ops of one client commit in order, so the next
	// op of this client in the log is the in-flight one.
	own := c.inflight != nil && op.Client == c.clientID &&
		(op.Seq == 0 || op.Seq == c.inflight.seq)
	if own {
		if !op.Op.Equal(c.inflight.op) {
			return docStep{}, false, fmt.Errorf("%w: revision %d: the server applied "+
				"op %d as %v, the client expected %v", ErrDiverged, op.Rev,
				c.inflight.seq, op.Op, c.inflight.op)
		}

		acked := c.inflight
		c.rev = op.Rev
		c.inflight = nil
		send := false
		if c.buffer != nil {
			next := c.buffer
			next.seq, next.baseRev, next.sent = c.nextSeq, c.rev, next.op
			c.nextSeq++
			c.inflight, c.buffer = next, nil
			send = true
		}
		return docStep{op: op, ack: acked}, send, nil
	}

	// Someone else's op: rebase the pending ops over it, and it over them.
	// The pending op goes first in Transform: the server will order it
	// after this op, and Transform(incoming, applied) is what it runs.
	incoming := op.Op
	var inflightOp, bufferOp text.Op
	var err error
	if c.inflight != nil {
		if inflightOp, incoming, err = text.Transform(c.inflight.op, incoming); err != nil {
			return docStep{}, false, fmt.Errorf("%w: revision %d against the in-flight op: %v",
				ErrDiverged, op.Rev, err)
		}
	}
	if c.buffer != nil {
		if bufferOp, incoming, err = text.Transform(c.buffer.op, incoming); err != nil {
			return docStep{}, false, fmt.Errorf("%w: revision %d against the buffer: %v",
				ErrDiverged, op.Rev, err)
		}
	}
	if err := c.text.Apply(incoming); err != nil {
		return docStep{}, false, fmt.Errorf("%w: revision %d: %v", ErrDiverged, op.Rev, err)
	}

	// Commit only once nothing can fail.
	if c.inflight != nil {
		c.inflight.op = inflightOp
	}
	if c.buffer != nil {
		c.buffer.op = bufferOp
	}
	c.rev = op.Rev
	return docStep{op: op, applied: incoming}, false, nil
}
