package node

import (
	"context"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/fsm"
)

// ApplyObserver learns about every batch of log entries the state machine
// applies, synchronously, which a cache in front of the state (the hot
// tier) needs to know exactly which index its view of each key reflects.
//
// Applied runs on the apply goroutine after the batch [first, last] is
// committed to the state database and the node's applied index is last,
// and after the batch's events went to subscribers. events holds the
// batch's events in log order; it is empty for a batch that produced none
// (a no-op, a membership change, a rejected command), which Applied still
// hears about. Batches arrive in log order; when first is more than one
// past the previous batch's last, the state was replaced by a snapshot in
// between and the observer must forget what it derived from the state.
//
// Applied must not block and must not keep events after it returns: the
// next batch is not applied until it returns.
type ApplyObserver interface {
	Applied(events []fsm.Event, first, last uint64)
}

// observerBox lets an interface value live in an atomic.Pointer.
type observerBox struct{ observer ApplyObserver }

// SetApplyObserver makes o the node's apply observer, replacing any
// earlier one; nil removes it. It is safe to call at any time: the batch
// being applied at that moment may or may not reach o.
func (n *Node) SetApplyObserver(o ApplyObserver) {
	if o == nil {
		n.applyObserver.Store(nil)
		return
	}
	n.applyObserver.Store(&observerBox{observer: o})
}

// onEvents runs on the apply goroutine for each batch with events: it
// publishes them and keeps them for afterApply, which the FSM calls next
// for the same batch.
func (n *Node) onEvents(events []fsm.Event) {
	n.events.publish(events)
	n.pendingEvents = events
}

// afterApply runs on the apply goroutine after every batch that advanced
// the applied index, events or not.
func (n *Node) afterApply(entries int, took time.Duration) {
	observeApply(entries, took)
	events := n.pendingEvents
	n.pendingEvents = nil
	// The FSM only moves the applied index on this goroutine, so it is
	// the last index of the batch just applied.
	last := n.fsm.AppliedIndex()
	first := last + 1 - uint64(entries)
	if uint64(entries) > last {
		first = 1
	}
	// Raft keeps a new leader's no-op and barrier entries from the state
	// machine, so entries does not count them and a batch after them
	// seems to start past the previous one. Unless a snapshot replaced
	// the state in between, the batch follows on from the last one.
	if prev := n.observedLast; prev > 0 && !n.restored && first > prev+1 {
		first = prev + 1
	}
	n.observedLast, n.restored = last, false

	box := n.applyObserver.Load()
	if box == nil {
		return
	}
	box.observer.Applied(events, first, last)
}

// restoreNoting is the state machine as Raft sees it: it notes each
// snapshot restore, which Raft runs on the apply goroutine, for afterApply.
type restoreNoting struct {
	*fsm.FSM
	node *Node
}

// Raft batches applies only for a state machine that says it can.
var _ raft.BatchingFSM = restoreNoting{}

// Restore implements raft.FSM.
func (r restoreNoting) Restore(rc io.ReadCloser) error {
	r.node.restored = true
	return r.FSM.Restore(rc)
}

// WaitApplied blocks until this node has applied index or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	return n.fsm.WaitApplied(ctx, index)
}
