package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/shoal-db/shoal/fsm/text"
)

// KindConcurrent is the kind of a trace whose transactions several agents
// made at once, each relative to the document after its parents.
const KindConcurrent = "concurrent"

// TextTrace is an editing trace in the format of the public
// editing-traces collection (../shared/data/README.md). In a sequential
// trace every transaction applies to the document after all earlier
// ones. In a concurrent trace (Kind "concurrent") a transaction applies to
// the document as it was after its Parents, which lists earlier
// transactions by index (an empty list is the empty document), and Agent
// says who typed it.
type TextTrace struct {
	// Kind is "" for a sequential trace or KindConcurrent.
	Kind string `json:"kind,omitempty"`
	// NumAgents is the number of agents of a concurrent trace.
	NumAgents int `json:"numAgents,omitempty"`
	// StartContent is the text before the first transaction.
	StartContent string `json:"startContent"`
	// EndContent is the text after the last one.
	EndContent string `json:"endContent"`
	// Txns are the transactions, in an order where parents come first.
	Txns []TextTxn `json:"txns"`
}

// TextTxn is one transaction of a trace: patches that apply one after
// another.
type TextTxn struct {
	// Patches are the edits, each relative to the document after the
	// ones before it.
	Patches []TextPatch `json:"patches"`
	// Parents lists the transactions this one was made after (concurrent
	// traces only).
	Parents []int `json:"parents,omitempty"`
	// Agent is the agent that made it (concurrent traces only).
	Agent int `json:"agent,omitempty"`
}

// TextPatch is a splice in the trace's wire form [pos, deleted,
// "inserted"], positions and lengths in code points.
type TextPatch text.Splice

// UnmarshalJSON reads [pos, deleted, "inserted"].
func (p *TextPatch) UnmarshalJSON(data []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || len(raw) != 3 {
		return fmt.Errorf("replay: patch %.40s: want [pos, deleted, \"inserted\"]", data)
	}
	if err := json.Unmarshal(raw[0], &p.Pos); err != nil {
		return fmt.Errorf("replay: patch position: %w", err)
	}
	if err := json.Unmarshal(raw[1], &p.Deleted); err != nil {
		return fmt.Errorf("replay: patch deleted count: %w", err)
	}
	if err := json.Unmarshal(raw[2], &p.Inserted); err != nil {
		return fmt.Errorf("replay: patch text: %w", err)
	}
	return nil
}

// MarshalJSON writes [pos, deleted, "inserted"].
func (p TextPatch) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{p.Pos, p.Deleted, p.Inserted})
}

// Concurrent reports whether the trace is of the concurrent kind.
func (t *TextTrace) Concurrent() bool { return t.Kind == KindConcurrent }

// Patches returns the number of patches over all transactions.
func (t *TextTrace) Patches() int {
	n := 0
	for _, txn := range t.Txns {
		n += len(txn.Patches)
	}
	return n
}

// ReadTextTrace decodes a trace, gzipped or not, and checks its shape: a
// known kind, and in a concurrent trace agents in range and parents that
// come first.
func ReadTextTrace(r io.Reader) (*TextTrace, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("replay: read trace: %w", err)
		}
		defer gz.Close()
		r = gz
	} else {
		r = br
	}

	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("replay: read trace: %w", err)
	}
	trace, err := decodeTrace(data)
	if err != nil {
		return nil, err
	}
	if !validUTF8(trace) {
		return nil, errors.New("replay: trace text is not valid UTF-8")
	}
	if err := trace.validate(); err != nil {
		return nil, err
	}
	return trace, nil
}

// validate checks what ReadTextTrace promises.
func (t *TextTrace) validate() error {
	switch t.Kind {
	case "":
		return nil
	case KindConcurrent:
	default:
		return fmt.Errorf("replay: unknown trace kind %q", t.Kind)
	}

	if t.NumAgents < 1 {
		return fmt.Errorf("replay: concurrent trace with %d agents", t.NumAgents)
	}
	if t.StartContent != "" {
		return errors.New("replay: concurrent traces must start from the empty document")
	}
	for i, txn := range t.Txns {
		if txn.Agent < 0 || txn.Agent >= t.NumAgents {
			return fmt.Errorf("replay: transaction %d: agent %d of %d", i, txn.Agent, t.NumAgents)
		}
		for _, p := range txn.Parents {
			if p < 0 || p >= i {
				return fmt.Errorf("replay: transaction %d: parent %d does not come before it",
					i, p)
			}
		}
	}
	return nil
}

// LoadTextTrace reads the trace file at path with ReadTextTrace.
func LoadTextTrace(path string) (*TextTrace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	return ReadTextTrace(f)
}

// LoadTextEnd returns the end content of the trace file at path without
// decoding its transactions, as long as endContent comes before them (as
// in the files of the editing-traces collection); it is cheap where
// LoadTextTrace takes seconds.
func LoadTextEnd(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("replay: %w", err)
	}
	defer f.Close()

	var r io.Reader = bufio.NewReader(f)
	if magic, _ := r.(*bufio.Reader).Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return "", fmt.Errorf("replay: read trace: %w", err)
		}
		defer gz.Close()
		r = gz
	}

	// Walk the top-level object's keys until endContent.
	dec := json.NewDecoder(r)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", fmt.Errorf("replay: read trace %s: not a JSON object", path)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", fmt.Errorf("replay: read trace %s: %w", path, err)
		}
		if key == "endContent" {
			var end string
			if err := dec.Decode(&end); err != nil {
				return "", fmt.Errorf("replay: read trace %s: %w", path, err)
			}
			return end, nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", fmt.Errorf("replay: read trace %s: %w", path, err)
		}
	}
	return "", fmt.Errorf("replay: trace %s has no endContent", path)
}

// TxnOp returns the op of a transaction's patches on a document of docLen
// code points: the patches composed in order.
func TxnOp(patches []TextPatch, docLen int) (text.Op, error) {
	op, err := text.FromSplice(0, 0, "", docLen)
	if err != nil {
		return text.Op{}, err
	}
	for i, p := range patches {
		next, err := text.Splice(p).Op(op.TargetLen())
		if err != nil {
			return text.Op{}, fmt.Errorf("patch %d: %w", i, err)
		}
		if op, err = text.Compose(op, next); err != nil {
			return text.Op{}, fmt.Errorf("patch %d: %w", i, err)
		}
	}
	return op, nil
}

// Apply returns the text a sequential trace produces from its start, and
// an error if a patch does not fit.
func (t *TextTrace) Apply() (string, error) {
	if t.Concurrent() {
		return "", errors.New("replay: a concurrent trace has no single order to apply")
	}
	doc := text.NewRope(t.StartContent)
	for i, txn := range t.Txns {
		op, err := TxnOp(txn.Patches, doc.Len())
		if err != nil {
			return "", fmt.Errorf("replay: transaction %d: %w", i, err)
		}
		if err := doc.Apply(op); err != nil {
			return "", fmt.Errorf("replay: transaction %d: %w", i, err)
		}
	}
	return doc.String(), nil
}

// Prefix returns a sequential trace of the first n transactions, its end
// content recomputed.
func (t *TextTrace) Prefix(n int) (*TextTrace, error) {
	if t.Concurrent() {
		return nil, errors.New("replay: Prefix of a concurrent trace")
	}
	prefix := &TextTrace{StartContent: t.StartContent, Txns: t.Txns[:min(n, len(t.Txns))]}
	end, err := prefix.Apply()
	if err != nil {
		return nil, err
	}
	prefix.EndContent = end
	return prefix, nil
}

// firstDifference describes where got first differs from want, for a
// report: the code point offset and a little of both texts there.
func firstDifference(got, want string) string {
	g, w := []rune(got), []rune(want)
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	excerpt := func(r []rune) string {
		if i >= len(r) {
			return "(end)"
		}
		return fmt.Sprintf("%q", string(r[i:min(len(r), i+24)]))
	}
	return fmt.Sprintf("differs at code point %d of %d (want %d): has %s, want %s",
		i, len(g), len(w), excerpt(g), excerpt(w))
}
