package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/fsm/text"
)

// WorkloadText types into many documents at once: each client is one
// author typing into a document of its own, so --clients is the number of
// documents edited at once.
const WorkloadText = "text"

// OpEdit is the row of one edit: a submit of one keystroke-sized op,
// from sending it to the server's acknowledgment (its commit latency).
const OpEdit = "edit"

// textWords are what the text workload types: mostly letters, some
// spaces and newlines, and text beyond ASCII.
var textWords = []string{"e", "t", "a", "o", "n", " ", " ", "\n", "é", "日", "🙂", "the "}

// textEdits is the text workload. Every client types into its own new
// document through the client's round robin of nodes, one edit per
// request: at a cursor that mostly moves on with the typing and now and
// then jumps, inserting a letter or deleting the one before the cursor.
// With one author per document nothing is ever transformed; the load is
// the replicated op log and the document's rope on every node.
type textEdits struct {
	noBackground

	mu   sync.Mutex
	docs map[int]*textDoc // by worker id
	run  string
}

// textDoc is one client's document; only its worker's goroutine uses it.
type textDoc struct {
	id     string
	client string
	rev    uint64
	seq    uint64
	length int
	cursor int
}

func newTextEdits(Options) workload { return &textEdits{} }

func (t *textEdits) prepare(context.Context, *env) error {
	var b [4]byte
	_, _ = rand.Read(b[:])
	t.run = hex.EncodeToString(b[:])
	t.docs = make(map[int]*textDoc)
	return nil
}

// doc returns worker id's document, made on first use.
func (t *textEdits) doc(id int) *textDoc {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.docs[id]
	if d == nil {
		d = &textDoc{
			id:     fmt.Sprintf("bench-text-%s-%d", t.run, id),
			client: fmt.Sprintf("bench-%s-%d", t.run, id),
		}
		t.docs[id] = d
	}
	return d
}

func (t *textEdits) op(ctx context.Context, e *env, w *worker) (string, error) {
	d := t.doc(w.id)

	// Type at the cursor, now and then somewhere else.
	if w.rng.IntN(20) == 0 {
		d.cursor = w.rng.IntN(d.length + 1)
	}
	pos, deleted, inserted := d.cursor, 0, ""
	if d.cursor > 0 && w.rng.IntN(8) == 0 {
		pos, deleted = d.cursor-1, 1
	} else {
		inserted = textWords[w.rng.IntN(len(textWords))]
	}
	op, err := text.FromSplice(pos, deleted, inserted, d.length)
	if err != nil {
		return OpEdit, err
	}

	d.seq++
	reply, err := e.client.SubmitDocOp(ctx, d.id, client.DocSubmit{
		Rev: d.rev, Client: d.client, Seq: d.seq, Op: op,
	}, client.RequestOptions{})
	if err != nil {
		// The edit may have been applied after all: start again from the
		// document as it is.
		if resyncErr := d.resync(ctx, e.client); resyncErr != nil {
			return OpEdit, fmt.Errorf("%w (and then: %v)", err, resyncErr)
		}
		return OpEdit, err
	}
	d.rev, d.length = reply.Rev, reply.Op.TargetLen()
	d.cursor = pos + len([]rune(inserted))
	return OpEdit, nil
}

// resync reads the document's revision and length after a failed edit.
func (d *textDoc) resync(ctx context.Context, c *client.Client) error {
	doc, err := c.GetDoc(ctx, d.id, client.ReadOptions{Consistency: client.ConsistencyStrong})
	switch {
	case client.IsNotFound(err):
		d.rev, d.length = 0, 0
	case err != nil:
		return err
	default:
		d.rev, d.length = doc.Rev, len([]rune(doc.Text))
	}
	d.cursor = min(d.cursor, d.length)
	return nil
}
