package replay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/fsm/text"
)

// A concurrent trace is replayed by one client per agent, agent i on node
// i mod len(addrs). Each agent types its transactions in order; it sends
// one as soon as its copy holds the transaction's parents, one op per
// transaction (it waits for the previous one's acknowledgment, so that
// the other clients can tell the transactions apart in the log).
//
// A transaction's positions count in the document after its parents, but
// a client's copy also holds whatever else it has received by then, in the
// server's order. The client translates the transaction into its copy with
// a causal index of the document (causalDoc): every character any
// transaction it holds inserted, deleted ones included, in document
// order, each knowing which transaction inserted it and which deleted it.
// The document after the parents is then the characters inserted and not
// deleted by a parent (or an ancestor); the patches find their characters
// there, and the op on the copy deletes those of them the copy still has
// and inserts the new text right after the character left of it. Other
// clients apply the op as the server transformed it and record its
// characters in their own index the same way.
//
// Concurrent inserts at the same place end up in the order the server
// committed them, which may differ from the order the recorded editor
// chose, so a trace with such ties can end with another text than its
// end content; every node and client still ends with the same text.

// traceCausality is what a concurrent trace says about the order of its
// transactions, computed once per replay.
type traceCausality struct {
	agent    []int   // agent of each transaction
	seq      []int   // position of each transaction among its agent's
	version  [][]int // per transaction: of each agent, how many txns precede it causally
	byAgent  [][]int // each agent's transactions in order
	numAgent int
}

// newTraceCausality computes the versions of a concurrent trace. It
// requires each agent's transactions to form a chain, every one having
// the agent's previous one among its ancestors, which is how people type
// and what the editing-traces collection records.
func newTraceCausality(trace *TextTrace) (*traceCausality, error) {
	n := len(trace.Txns)
	tc := &traceCausality{
		agent: make([]int, n), seq: make([]int, n), version: make([][]int, n),
		byAgent: make([][]int, trace.NumAgents), numAgent: trace.NumAgents,
	}
	for t, txn := range trace.Txns {
		v := make([]int, trace.NumAgents)
		for _, p := range txn.Parents {
			for a, count := range tc.version[p] {
				v[a] = max(v[a], count)
			}
			v[tc.agent[p]] = max(v[tc.agent[p]], tc.seq[p]+1)
		}

		a := txn.Agent
		tc.agent[t], tc.seq[t], tc.version[t] = a, len(tc.byAgent[a]), v
		if v[a] != tc.seq[t] {
			return nil, fmt.Errorf("replay: transaction %d of agent %d does not follow "+
				"the agent's previous one (it has %d of the agent's %d earlier transactions "+
				"as ancestors)", t, a, v[a], tc.seq[t])
		}
		tc.byAgent[a] = append(tc.byAgent[a], t)
	}
	return tc, nil
}

// visibleIn reports whether transaction t is part of version v.
func (tc *traceCausality) visibleIn(t int32, v []int) bool {
	return tc.seq[t] < v[tc.agent[t]]
}

// causalItem is one character in a causalDoc.
type causalItem struct {
	r         rune
	txn       int32   // the transaction that inserted it
	deletedBy []int32 // the transactions that deleted it
	live      bool    // in the client's copy now

	// Scratch of the integrate call that touched the item last.
	bornIn, diedIn uint32
}

// causalDoc is one client's causal index of the document, described
// above. Its methods are not safe for concurrent use.
//
// TODO(replay): one item per character in a slice makes every transaction
// cost time linear in the document's history, fine for the small traces
// of the tests but slow for the public concurrent traces of 100,000
// transactions; keep runs of characters in a tree instead.
type causalDoc struct {
	causality *traceCausality
	trace     *TextTrace
	items     []causalItem
	have      []int  // of each agent, how many transactions are in the index
	serial    uint32 // counts integrate calls
	misplaced int    // remote inserts re-placed to follow the server
}

func newCausalDoc(trace *TextTrace, tc *traceCausality) *causalDoc {
	return &causalDoc{causality: tc, trace: trace, have: make([]int, tc.numAgent)}
}

// view returns the version of transaction t with t itself included.
func (d *causalDoc) view(t int) []int {
	v := slices.Clone(d.causality.version[t])
	v[d.causality.agent[t]]++
	return v
}

// visible reports whether item i is in the document of version v.
func (d *causalDoc) visible(item *causalItem, v []int) bool {
	if !d.causality.visibleIn(item.txn, v) {
		return false
	}
	for _, del := range item.deletedBy {
		if d.causality.visibleIn(del, v) {
			return false
		}
	}
	return true
}

// ready reports whether every transaction transaction t depends on is in
// the index.
func (d *causalDoc) ready(t int) bool {
	for a, count := range d.causality.version[t] {
		if d.have[a] < count {
			return false
		}
	}
	return true
}

// liveText returns the client's copy as the index has it.
func (d *causalDoc) liveText() string {
	var b strings.Builder
	for i := range d.items {
		if d.items[i].live {
			b.WriteRune(d.items[i].r)
		}
	}
	return b.String()
}

// integrate records transaction t, which must be ready and the next of
// its agent, in the index. With live set its effect on the client's copy
// is applied too: its inserts are live and what it deletes is no longer,
// and the returned op is that effect on the copy as it was. Without live
// it changes only what later transactions see (a transaction that changed
// nothing in its author's copy).
func (d *causalDoc) integrate(t int, live bool) (text.Op, error) {
	if a := d.causality.agent[t]; d.have[a] != d.causality.seq[t] || !d.ready(t) {
		return text.Op{}, fmt.Errorf("replay: transaction %d is not ready to integrate", t)
	}
	d.serial++
	v := d.view(t)
	txn := int32(t)

	for p, patch := range d.trace.Txns[t].Patches {
		// Walk to the patch's position in the document of version v.
		at, seen := 0, 0 // index into items, visible items passed
		for at < len(d.items) && seen < patch.Pos {
			if d.visible(&d.items[at], v) {
				seen++
			}
			at++
		}
		if seen < patch.Pos {
			return text.Op{}, fmt.Errorf("replay: transaction %d patch %d: position %d "+
				"beyond the document of its parents (%d code points)", t, p, patch.Pos, seen)
		}
		insertAt := at // right after the character left of the position

		// Delete the next patch.Deleted visible characters.
		deleted := 0
		for i := at; i < len(d.items) && deleted < patch.Deleted; i++ {
			item := &d.items[i]
			if !d.visible(item, v) {
				continue
			}
			item.deletedBy = append(item.deletedBy, txn)
			if live && item.live {
				item.live, item.diedIn = false, d.serial
			}
			deleted++
		}
		if deleted < patch.Deleted {
			return text.Op{}, fmt.Errorf("replay: transaction %d patch %d deletes past "+
				"the end of the document of its parents", t, p)
		}

		// Insert the new characters.
		if patch.Inserted == "" {
			continue
		}
		added := make([]causalItem, 0, utf8.RuneCountInString(patch.Inserted))
		for _, r := range patch.Inserted {
			added = append(added, causalItem{r: r, txn: txn, live: live, bornIn: d.serial})
		}
		d.items = slices.Insert(d.items, insertAt, added...)
	}
	d.have[d.causality.agent[t]]++

	if !live {
		return text.Op{}, nil
	}
	return d.liveOp(), nil
}

// liveOp returns the op the last integrate made of the client's copy.
func (d *causalDoc) liveOp() text.Op {
	var b opBuilder
	for i := range d.items {
		item := &d.items[i]
		switch {
		case item.live && item.bornIn == d.serial:
			b.insert(item.r)
		case item.live:
			b.retain()
		case item.diedIn == d.serial && item.bornIn != d.serial:
			b.delete()
		}
	}
	return b.op()
}

// integrateRemote records transaction t as another client made it, given
// the op it made of this client's copy. When the index places t's inserts
// elsewhere among concurrent characters than the server did, they move to
// where the op says, so that the index always matches the copy.
func (d *causalDoc) integrateRemote(t int, applied text.Op) error {
	before := slices.Clone(d.items)
	got, err := d.integrate(t, true)
	if err != nil {
		return err
	}
	if got.Equal(applied) {
		return nil
	}

	// Take the new characters out and put them where the op puts them.
	var born, kept []causalItem
	for _, item := range d.items {
		if item.bornIn == d.serial && item.live {
			born = append(born, item)
		} else {
			kept = append(kept, item)
		}
	}
	placed := make([]causalItem, 0, len(d.items))
	i := 0
	for _, c := range applied.Components() {
		switch {
		case c.Retain > 0 || c.Delete > 0:
			n := c.Retain + c.Delete
			for n > 0 && i < len(kept) {
				wasLive := kept[i].live || kept[i].diedIn == d.serial && kept[i].bornIn != d.serial
				placed = append(placed, kept[i])
				i++
				if wasLive {
					n--
				}
			}
		case c.Insert != "":
			for _, r := range c.Insert {
				if len(born) == 0 || born[0].r != r {
					d.items = before
					return fmt.Errorf("%w: transaction %d: the server inserted other text "+
						"than the trace (%v, index expected %v)", client.ErrDiverged, t, applied, got)
				}
				placed = append(placed, born[0])
				born = born[1:]
			}
		}
	}
	placed = append(placed, kept[i:]...)
	d.items = placed
	if again := d.liveOp(); !again.Equal(applied) || len(born) > 0 {
		d.items = before
		return fmt.Errorf("%w: transaction %d: the server applied %v, the index expects %v",
			client.ErrDiverged, t, applied, again)
	}
	d.misplaced++
	return nil
}

// opBuilder makes an op one code point at a time.
type opBuilder struct {
	comps []text.Component
	ins   strings.Builder
}

func (b *opBuilder) flushInsert() {
	if b.ins.Len() > 0 {
		b.comps = append(b.comps, text.Component{Insert: b.ins.String()})
		b.ins.Reset()
	}
}

func (b *opBuilder) retain() {
	b.flushInsert()
	if n := len(b.comps); n > 0 && b.comps[n-1].Retain > 0 {
		b.comps[n-1].Retain++
		return
	}
	b.comps = append(b.comps, text.Component{Retain: 1})
}

func (b *opBuilder) delete() {
	b.flushInsert()
	if n := len(b.comps); n > 0 && b.comps[n-1].Delete > 0 {
		b.comps[n-1].Delete++
		return
	}
	b.comps = append(b.comps, text.Component{Delete: 1})
}

func (b *opBuilder) insert(r rune) { b.ins.WriteRune(r) }

func (b *opBuilder) op() text.Op {
	b.flushInsert()
	op, err := text.NewOp(b.comps...)
	if err != nil {
		panic("replay: broken invariant: " + err.Error()) // components are valid by construction
	}
	return op
}

// concurrentRun is the shared state of the agents of a concurrent replay.
type concurrentRun struct {
	causality *traceCausality
	agentOf   map[string]int // client id to agent

	mu      sync.Mutex
	sent    [][]int      // of each agent, the transactions it sent, in order
	skipped map[int]bool // transactions that changed nothing in their author's copy
	changed chan struct{}
	err     error
	cancel  context.CancelFunc
}

// broadcast wakes every agent waiting for its parents.
func (cr *concurrentRun) broadcast() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	close(cr.changed)
	cr.changed = make(chan struct{})
}

// fail records the first error of a callback and stops the replay.
func (cr *concurrentRun) fail(err error) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.err == nil {
		cr.err = err
		cr.cancel()
	}
}

// agentIndex is one agent's client and causal index. idx is guarded by
// mu; the Doc's callbacks take mu inside the Doc's lock.
type agentIndex struct {
	agent    int
	mu       sync.Mutex
	idx      *causalDoc
	received []int // of each agent, ops of it applied
}

// catchUpLocked integrates, without effect on the copy, every skipped
// transaction that t depends on and that is ready. The caller holds mu.
func (ai *agentIndex) catchUpLocked(cr *concurrentRun, t int) error {
	for progress := true; progress; {
		progress = false
		for a, count := range cr.causality.version[t] {
			for ai.idx.have[a] < count {
				next := cr.causality.byAgent[a][ai.idx.have[a]]
				cr.mu.Lock()
				skipped := cr.skipped[next]
				cr.mu.Unlock()
				if !skipped || !ai.idx.ready(next) {
					break
				}
				if _, err := ai.idx.integrate(next, false); err != nil {
					return err
				}
				progress = true
			}
		}
	}
	return nil
}

// onChange integrates another client's op into the agent's index.
func (ai *agentIndex) onChange(cr *concurrentRun, change client.DocChange) {
	if change.Local {
		return
	}
	a, ok := cr.agentOf[change.Client]
	if !ok {
		cr.fail(fmt.Errorf("replay: op of unknown client %q in the document", change.Client))
		return
	}

	ai.mu.Lock()
	k := ai.received[a]
	ai.received[a]++
	cr.mu.Lock()
	var t int
	if k < len(cr.sent[a]) {
		t = cr.sent[a][k]
	} else {
		t = -1
	}
	cr.mu.Unlock()
	err := fmt.Errorf("replay: op %d of agent %d was never sent", k, a)
	if t >= 0 {
		if err = ai.catchUpLocked(cr, t); err == nil {
			err = ai.idx.integrateRemote(t, change.Op)
		}
	}
	ai.mu.Unlock()
	if err != nil {
		cr.fail(err)
		return
	}
	cr.broadcast()
}

// concurrent replays a concurrent trace as described above.
func (r *textRun) concurrent(ctx context.Context) error {
	causality, err := newTraceCausality(r.trace)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cr := &concurrentRun{
		causality: causality, agentOf: make(map[string]int),
		sent: make([][]int, causality.numAgent), skipped: make(map[int]bool),
		changed: make(chan struct{}), cancel: cancel,
	}

	// One client and index per agent.
	runID := randomSuffix()
	indexes := make([]*agentIndex, causality.numAgent)
	for a := range indexes {
		indexes[a] = &agentIndex{agent: a, idx: newCausalDoc(r.trace, causality),
			received: make([]int, causality.numAgent)}
		cr.agentOf[fmt.Sprintf("replay-%s-a%d", runID, a)] = a
	}
	err = r.openDocs(ctx, causality.numAgent, func(a int) client.DocConfig {
		ai := indexes[a]
		return client.DocConfig{
			ClientID: fmt.Sprintf("replay-%s-a%d", runID, a),
			OnChange: func(change client.DocChange) { ai.onChange(cr, change) },
		}
	})
	if err != nil {
		return err
	}

	r.start = time.Now()
	group, groupCtx := errgroup.WithContext(ctx)
	for a, doc := range r.docs {
		ai := indexes[a]
		group.Go(func() error {
			for _, t := range causality.byAgent[a] {
				if err := r.typeConcurrent(groupCtx, cr, ai, doc, t); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err = group.Wait()
	cr.mu.Lock()
	if cr.err != nil {
		err = cr.err
	}
	cr.mu.Unlock()
	if err != nil {
		return err
	}

	if err := r.settle(ctx, 0); err != nil {
		return err
	}
	for a, ai := range indexes {
		ai.mu.Lock()
		r.report.Misplaced += ai.idx.misplaced
		live := ai.idx.liveText()
		ai.mu.Unlock()
		if got := r.docs[a].Text(); live != got {
			return fmt.Errorf("replay: agent %d's index lost track of its copy: %s",
				a, firstDifference(live, got))
		}
	}
	return nil
}

// typeConcurrent sends transaction t of agent ai once its copy holds t's
// parents and its previous op is acknowledged.
func (r *textRun) typeConcurrent(
	ctx context.Context, cr *concurrentRun, ai *agentIndex, doc *client.Doc, t int,
) error {
	for {
		cr.mu.Lock()
		changed := cr.changed
		cr.mu.Unlock()
		ai.mu.Lock()
		err := ai.catchUpLocked(cr, t)
		ready := ai.idx.ready(t)
		ai.mu.Unlock()
		if err != nil || ready {
			if err != nil {
				return err
			}
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
	if _, err := doc.WaitSynced(ctx, 0); err != nil {
		return err
	}

	skipped := false
	err := doc.Update(func(view client.TextView) (text.Op, error) {
		ai.mu.Lock()
		defer ai.mu.Unlock()
		op, err := ai.idx.integrate(t, true)
		if err != nil {
			return text.Op{}, err
		}
		if op.BaseLen() != view.Len() {
			return text.Op{}, fmt.Errorf("replay: agent %d's index has %d code points, "+
				"its copy %d", ai.agent, op.BaseLen(), view.Len())
		}

		// Others map this client's next op to t; record it before sending.
		cr.mu.Lock()
		if op.IsNoop() {
			cr.skipped[t], skipped = true, true
		} else {
			cr.sent[ai.agent] = append(cr.sent[ai.agent], t)
		}
		cr.mu.Unlock()
		return op, nil
	})
	if err != nil {
		return fmt.Errorf("replay: transaction %d: %w", t, err)
	}
	if skipped {
		cr.broadcast()
		r.bar.add(1)
	}
	return nil
}
