// Package text is the collaborative text domain of the state machine:
// documents edited concurrently by many clients through operational
// transformation, with the state machine as the single sequencer (as in
// Google Wave, ot.js and ShareDB).
//
// # Submitting an edit
//
// A client sends SubmitCommand{Doc, Rev, Client, Seq, Edit}: Edit is an op
// in its JSON wire form ([5, "hi", -2, 10]) or a splice
// ({"splice": [pos, deleted, "inserted"]}), made against the document as it
// was at revision Rev. Apply transforms it against every op committed after
// Rev, in log order, with the incoming op first at insert ties (see
// Transform), applies it, appends it to the document's op log as revision
// current+1, and answers {"rev": new revision, "op": the op as applied}.
//
//   - A repeated (Client, Seq) on a document answers with the first result
//     and changes nothing, whatever the rest of the command says.
//   - Rev above the current revision is CodeConflict.
//   - Rev more than MaxBehind revisions behind (Config.MaxBehind) is
//     CodeConflict: the client must fetch the document and rebase its
//     pending edit (resync).
//   - An op whose length does not match the document at Rev is
//     CodeInvalid; the message gives the length expected.
//   - A document comes into being with its first op, which must be made
//     against revision 0 (the empty document). A document with no ops does
//     not exist (storage.ErrNotFound from the read functions).
//
// # Limits
//
//   - document id: 1 to 256 bytes of valid UTF-8, no '/' and no control
//     characters (MaxDocIDLen); '/' is what separates the id from the rest
//     of a storage key, and ids appear in URLs and Redis channel names.
//   - client id: 1 to 128 bytes of valid UTF-8, no control characters
//     (MaxClientLen).
//   - seq: 1 or more.
//   - edit: at most 512 KiB of JSON (MaxEditBytes).
//   - document: at most 8 Mi code points (MaxDocLen); an edit that would
//     make it longer is CodeTooLarge.
//
// Lengths and positions count Unicode code points, as the OT engine does.
//
// # Cost of an edit
//
// Applying an edit costs time in proportion to the edit, to the log of the
// document's length and to the number of ops it is transformed against; it
// never rewrites the document. The domain keeps each hot document as a
// Rope in memory on the apply goroutine (an LRU cache, rebuilt from
// storage on a miss and dropped by Reset). In Pebble it keeps the op log
// and, from time to time, a snapshot of the whole text (see
// snapshotDue): amortized over the ops between two snapshots, writing one
// costs a small constant per byte of log. Readers on other goroutines
// rebuild the text from a consistent storage view (the latest snapshot
// plus the ops after it) and never touch the apply goroutine's ropes.
//
// # Retention
//
// The op log does not grow forever: with each applied op, Apply drops a
// few of the oldest entries that no edit can be transformed against any
// more (more than MaxBehind revisions old) and that no read of the text
// replays (at or below the latest snapshot), with their (client, seq)
// records; pruneBatch bounds the work per op. Ops and CheckFrom answer a
// read of the ops after a pruned revision with CodeHistoryTruncated.
//
// # Events
//
// Each applied op yields one fsm.Event with Domain fsm.DomainText, Key the
// document id, Revision the new revision and Data the JSON object
// {"rev", "op", "client"} (see EventData).
package text

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// OpSubmit submits an edit to a document.
const OpSubmit uint8 = 1

// Limits on commands and documents. They are part of the state machine's
// rules: every node must use the same values.
const (
	// MaxDocIDLen is the most bytes of a document id.
	MaxDocIDLen = 256

	// MaxClientLen is the most bytes of a client id.
	MaxClientLen = 128

	// MaxEditBytes is the most bytes of an edit's JSON.
	MaxEditBytes = 512 << 10

	// MaxDocLen is the most code points a document may hold.
	MaxDocLen = 8 << 20

	// MaxBehind is how many revisions an edit's base revision may lag the
	// document's by default (see Config.MaxBehind); an older edit must be
	// rebased by its client, and the op log keeps no more than this many
	// revisions before the latest snapshot. Transforming
	// over the ops in between holds up the apply goroutine, every domain's
	// writes with it: measured on a loaded 2-core machine, 3 ms for 1,000
	// ops, 38 ms for 10,000 and 670 ms for 100,000.
	MaxBehind = 10_000
)

// SubmitCommand is the payload of OpSubmit.
type SubmitCommand struct {
	Doc    string          `json:"doc"`
	Rev    uint64          `json:"rev"`
	Client string          `json:"client"`
	Seq    uint64          `json:"seq"`
	Edit   json.RawMessage `json:"op"`
}

// SubmitResult is the reply to an applied (or repeated) submit.
type SubmitResult struct {
	Rev uint64 `json:"rev"`
	Op  Op     `json:"op"`
}

// ValidDocID returns nil if id is a valid document id, else a *fsm.Error
// with CodeInvalid that says why.
func ValidDocID(id string) error {
	return checkName("document id", id, MaxDocIDLen, true)
}

// ValidClientID returns nil if id is a valid client id, else a *fsm.Error
// with CodeInvalid that says why.
func ValidClientID(id string) error {
	return checkName("client id", id, MaxClientLen, false)
}

func checkName(what, s string, maxLen int, noSlash bool) error {
	switch {
	case s == "":
		return fsm.Errorf(fsm.CodeInvalid, "%s is empty", what)
	case len(s) > maxLen:
		return fsm.Errorf(fsm.CodeInvalid, "%s is %d bytes, at most %d allowed", what,
			len(s), maxLen)
	case !utf8.ValidString(s):
		return fsm.Errorf(fsm.CodeInvalid, "%s is not valid UTF-8", what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fsm.Errorf(fsm.CodeInvalid, "%s %q contains a control character", what, s)
		}
		if noSlash && r == '/' {
			return fsm.Errorf(fsm.CodeInvalid, "%s %q contains '/'", what, s)
		}
	}
	return nil
}

// Validate checks everything about the command that does not depend on the
// document, and returns its edit parsed. Errors are *fsm.Error values.
func (c SubmitCommand) Validate() (Edit, error) {
	if err := ValidDocID(c.Doc); err != nil {
		return Edit{}, err
	}
	if err := ValidClientID(c.Client); err != nil {
		return Edit{}, err
	}
	if c.Seq == 0 {
		return Edit{}, fsm.Errorf(fsm.CodeInvalid, "seq must be 1 or more")
	}
	if len(c.Edit) == 0 || string(c.Edit) == "null" {
		return Edit{}, fsm.Errorf(fsm.CodeInvalid,
			`"op" is required: an op such as [5, "hi", -2, 10] or {"splice": [5, 2, "hi"]}`)
	}
	if len(c.Edit) > MaxEditBytes {
		return Edit{}, fsm.Errorf(fsm.CodeTooLarge, "op is %d bytes of JSON, at most %d allowed",
			len(c.Edit), MaxEditBytes)
	}
	edit, err := ParseEdit(c.Edit)
	if err != nil {
		return Edit{}, fsm.Errorf(fsm.CodeInvalid, "%v", err)
	}
	return edit, nil
}

// Command wraps c in the state machine's envelope.
func (c SubmitCommand) Command() fsm.Command {
	raw, _ := json.Marshal(c)
	return fsm.Command{Domain: fsm.DomainText, Op: OpSubmit, Payload: raw}
}

// Config tunes a Domain. The cache fields change how fast edits apply,
// never what they do; MaxBehind is part of the state machine's rules and
// must be the same on every node.
type Config struct {
	// CacheDocs is the most documents kept as ropes in memory.
	CacheDocs int

	// CacheLen is the most code points kept in memory over all cached
	// documents. The document being edited is kept even if it alone is
	// larger.
	CacheLen int

	// MaxBehind is how many revisions an edit's base revision may lag the
	// document's, and so how many revisions the op log keeps at least
	// (see Retention in the package doc). Every node must use the same
	// value. Zero means the constant MaxBehind; tests set it small.
	MaxBehind uint64
}

// DefaultConfig caches up to 1,024 documents and 64 Mi code points and
// allows edits up to MaxBehind revisions behind.
func DefaultConfig() Config {
	return Config{CacheDocs: 1024, CacheLen: 64 << 20, MaxBehind: MaxBehind}
}

// Domain applies text commands. Apply and Reset run on the state machine's
// apply goroutine only, which owns the cache of ropes; the read functions
// of this package (Get, Head, Ops) are safe from any goroutine.
type Domain struct {
	cache     *ropeCache
	maxBehind uint64
}

// NewDomain returns a Domain with an empty cache. Zero fields of cfg take
// their defaults.
func NewDomain(cfg Config) *Domain {
	def := DefaultConfig()
	if cfg.CacheDocs <= 0 {
		cfg.CacheDocs = def.CacheDocs
	}
	if cfg.CacheLen <= 0 {
		cfg.CacheLen = def.CacheLen
	}
	if cfg.MaxBehind == 0 {
		cfg.MaxBehind = def.MaxBehind
	}
	return &Domain{cache: newRopeCache(cfg.CacheDocs, cfg.CacheLen), maxBehind: cfg.MaxBehind}
}

// Reset implements fsm.Resetter: the whole state was replaced, so every
// cached rope is dropped.
func (d *Domain) Reset() { d.cache.clear() }

// Apply implements fsm.Domain.
func (d *Domain) Apply(tx storage.ReadWriter, req fsm.Request) (fsm.Output, error) {
	if req.Op != OpSubmit {
		return fsm.Output{}, fsm.Errorf(fsm.CodeInvalid, "unknown text op %d", req.Op)
	}
	var cmd SubmitCommand
	if err := json.Unmarshal(req.Payload, &cmd); err != nil {
		return fsm.Output{}, fsm.Errorf(fsm.CodeInvalid, "bad text payload: %v", err)
	}
	edit, err := cmd.Validate()
	if err != nil {
		return fsm.Output{}, err
	}

	m, _, err := readMeta(tx, cmd.Doc)
	if err != nil {
		return fsm.Output{}, err
	}

	// A repeated (client, seq) gets the first answer.
	if rev, ok, err := seenRev(tx, cmd.Doc, cmd.Client, cmd.Seq); err != nil {
		return fsm.Output{}, err
	} else if ok {
		entry, err := readEntry(tx, cmd.Doc, rev)
		if err != nil {
			return fsm.Output{}, fmt.Errorf("text: op %d of %q, seen for %q/%d: %w",
				rev, cmd.Doc, cmd.Client, cmd.Seq, err)
		}
		raw, err := json.Marshal(SubmitResult{Rev: rev, Op: entry.Op})
		return fsm.Output{Value: raw}, err
	}

	switch {
	case cmd.Rev > m.rev:
		return fsm.Output{}, fsm.Errorf(fsm.CodeConflict,
			"revision %d is ahead of document %q, which is at revision %d",
			cmd.Rev, cmd.Doc, m.rev)
	case m.rev-cmd.Rev > d.maxBehind:
		return fsm.Output{}, fsm.Errorf(fsm.CodeConflict,
			"revision %d is too far behind document %q, which is at revision %d "+
				"(at most %d behind): resync by fetching the document and rebasing the edit",
			cmd.Rev, cmd.Doc, m.rev, d.maxBehind)
	}

	op, err := d.rebase(tx, cmd, edit, m)
	if err != nil {
		return fsm.Output{}, err
	}
	if op.TargetLen() > MaxDocLen {
		return fsm.Output{}, fsm.Errorf(fsm.CodeTooLarge,
			"the edit would make document %q %d code points long, at most %d allowed",
			cmd.Doc, op.TargetLen(), MaxDocLen)
	}
	return d.commit(tx, req, cmd, op, m)
}

// rebase turns the edit into an op on the document at cmd.Rev and
// transforms it over every op committed since.
func (d *Domain) rebase(tx storage.Reader, cmd SubmitCommand, edit Edit, m meta) (Op, error) {
	var later []Op
	if cmd.Rev < m.rev {
		err := scanEntries(tx, cmd.Doc, cmd.Rev, func(e LogEntry) error {
			later = append(later, e.Op)
			return nil
		})
		if err != nil {
			return Op{}, err
		}
		if uint64(len(later)) != m.rev-cmd.Rev {
			return Op{}, fmt.Errorf("text: document %q at revision %d has %d ops after %d",
				cmd.Doc, m.rev, len(later), cmd.Rev)
		}
	}

	lenAtRev := int(m.length)
	if len(later) > 0 {
		lenAtRev = later[0].BaseLen()
	}
	op, err := edit.Op(lenAtRev)
	switch {
	case errors.Is(err, ErrLengthMismatch):
		return Op{}, fsm.Errorf(fsm.CodeInvalid, "%v (document %q at revision %d has %d "+
			"code points)", err, cmd.Doc, cmd.Rev, lenAtRev)
	case err != nil:
		return Op{}, fsm.Errorf(fsm.CodeInvalid, "%v", err)
	}

	for i, b := range later {
		if op, _, err = Transform(op, b); err != nil {
			return Op{}, fmt.Errorf("text: transform over op %d of %q: %w",
				cmd.Rev+uint64(i)+1, cmd.Doc, err)
		}
	}
	return op, nil
}

// commit applies op, which fits the document's current length, to the
// cached rope and writes the op log entry, the (client, seq) record, the
// metadata and, when due, a snapshot; and it prunes the oldest entries
// the log no longer needs.
func (d *Domain) commit(
	tx storage.ReadWriter, req fsm.Request, cmd SubmitCommand, op Op, m meta,
) (fsm.Output, error) {
	doc, err := d.cachedRope(tx, cmd.Doc, m)
	if err != nil {
		return fsm.Output{}, err
	}
	if err := doc.rope.Apply(op); err != nil {
		d.cache.drop(cmd.Doc)
		return fsm.Output{}, fmt.Errorf("text: apply to %q at revision %d: %w",
			cmd.Doc, m.rev, err)
	}

	rev := m.rev + 1
	entry := LogEntry{Rev: rev, Op: op, Client: cmd.Client, Seq: cmd.Seq,
		Time: req.Time, Index: req.Index}
	encoded := entry.appendBinary(nil)
	next := meta{rev: rev, length: uint64(op.TargetLen()), snapRev: m.snapRev,
		sinceSnap: m.sinceSnap + uint64(len(encoded)), pruned: m.pruned}
	var snapshot string
	if snapshotDue(next) {
		snapshot = doc.rope.String()
		next.snapRev, next.sinceSnap = rev, 0
	}
	d.cache.applied(doc, rev)

	err = d.prune(tx, cmd.Doc, &next)
	if err == nil {
		err = writeCommit(tx, cmd, entry, encoded, next, snapshot)
	}
	if err != nil {
		// The rope is ahead of what was written: forget it.
		d.cache.drop(cmd.Doc)
		return fsm.Output{}, err
	}

	value, err := json.Marshal(SubmitResult{Rev: rev, Op: op})
	if err != nil {
		return fsm.Output{}, err
	}
	return fsm.Output{
		Value: value,
		Events: []fsm.Event{{
			Domain:   fsm.DomainText,
			Key:      cmd.Doc,
			Revision: rev,
			Data:     EventData(rev, op, cmd.Client),
		}},
	}, nil
}

func writeCommit(tx storage.ReadWriter, cmd SubmitCommand, entry LogEntry, encoded []byte,
	next meta, snapshot string) error {
	if err := tx.Set(logKey(cmd.Doc, entry.Rev), encoded); err != nil {
		return err
	}
	if err := tx.Set(seenKey(cmd.Doc, cmd.Client, cmd.Seq), be64(entry.Rev)); err != nil {
		return err
	}
	if next.snapRev == entry.Rev {
		if err := tx.Set(snapKey(cmd.Doc), append(be64(entry.Rev), snapshot...)); err != nil {
			return err
		}
	}
	return tx.Set(metaKey(cmd.Doc), next.appendBinary(nil))
}

// pruneBatch is the most op log entries Apply drops per applied op. More
// than one, so that the log catches up after the prune revision jumps to
// a new snapshot; few, so that no op pays for many. One op adds one entry,
// so a backlog of n entries is gone after about n/(pruneBatch-1) ops.
const pruneBatch = 4

// pruneTarget returns the highest revision the log of a document at m may
// drop: none that an edit within maxBehind may be transformed against, and
// none after the latest snapshot, which reads of the text replay.
func pruneTarget(m meta, maxBehind uint64) uint64 {
	if m.rev <= maxBehind {
		return 0
	}
	return min(m.snapRev, m.rev-maxBehind)
}

// prune drops up to pruneBatch of the oldest log entries at or below the
// prune target of next, each with the (client, seq) record that points at
// it, and advances next.pruned past them. It depends on stored state
// only, so every node drops the same entries with the same op.
func (d *Domain) prune(tx storage.ReadWriter, id string, next *meta) error {
	target := pruneTarget(*next, d.maxBehind)
	for n := 0; n < pruneBatch && next.pruned < target; n++ {
		rev := next.pruned + 1
		e, err := readEntry(tx, id, rev)
		if err != nil {
			return fmt.Errorf("text: prune op %d of %q: %w", rev, id, err)
		}
		switch at, ok, err := seenRev(tx, id, e.Client, e.Seq); {
		case err != nil:
			return fmt.Errorf("text: prune op %d of %q: %w", rev, id, err)
		case ok && at == rev:
			if err := tx.Delete(seenKey(id, e.Client, e.Seq)); err != nil {
				return err
			}
		}
		if err := tx.Delete(logKey(id, rev)); err != nil {
			return err
		}
		next.pruned = rev
	}
	return nil
}

// cachedRope returns the cached rope of a document at revision m.rev,
// building it from storage if it is not cached or is at another revision.
func (d *Domain) cachedRope(r storage.Reader, id string, m meta) (*cachedDoc, error) {
	if doc := d.cache.get(id); doc != nil && doc.rev == m.rev {
		return doc, nil
	}
	d.cache.drop(id)

	rope := &Rope{}
	if m.rev > 0 {
		var err error
		if rope, err = materialize(r, id, m); err != nil {
			return nil, err
		}
	}
	return d.cache.put(id, rope, m.rev), nil
}

// EventData returns the JSON body of the event of an applied op, which
// server-sent events and Redis subscribers receive:
// {"rev": 13, "op": [...], "client": "c1"}.
func EventData(rev uint64, op Op, client string) json.RawMessage {
	raw, _ := json.Marshal(struct {
		Rev    uint64 `json:"rev"`
		Op     Op     `json:"op"`
		Client string `json:"client"`
	}{rev, op, client})
	return raw
}
