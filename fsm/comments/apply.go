package comments

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// Domain applies the commands of the comments domain. It keeps no state of
// its own: everything is in the database, so it needs no reset after a
// snapshot restore. The zero value is ready to use.
type Domain struct{}

var _ fsm.Domain = (*Domain)(nil)

// New returns the comments domain.
func New() *Domain { return &Domain{} }

// Event is the JSON body of the fsm.Event that Apply emits for a command
// that changed something. The event's Key is the comment's thread.
type Event struct {
	// Op is "create", "edit", "delete", "vote" or "like".
	Op string `json:"op"`

	// Comment is the comment after the change.
	Comment Comment `json:"comment"`
}

// Apply applies one committed command to tx, implementing fsm.Domain. It
// reads and checks everything before its first write, so an error leaves
// tx as it was. A command rejected for the writer's sake returns an
// *fsm.Error; any other error is a broken invariant (a corrupt record, a
// failing store). The reply is the JSON of the affected Comment; a command
// that changed something also yields one Event for its thread.
func (d *Domain) Apply(tx storage.ReadWriter, req fsm.Request) (fsm.Output, error) {
	cmd, err := Decode(req.Op, req.Payload)
	if err != nil {
		return fsm.Output{}, err
	}

	var rec *record
	var changed bool
	var opName string
	switch c := cmd.(type) {
	case CreateCommand:
		opName = "create"
		rec, err = applyCreate(tx, req, c)
		changed = err == nil
	case EditCommand:
		opName = "edit"
		rec, err = applyEdit(tx, req, c)
		changed = err == nil
	case DeleteCommand:
		opName = "delete"
		rec, changed, err = applyDelete(tx, c)
	case VoteCommand:
		opName = "vote"
		rec, changed, err = applyVote(tx, c)
	case LikeCommand:
		opName = "like"
		rec, changed, err = applyLike(tx, c)
	default:
		panic(fmt.Sprintf("comments: Decode returned %T", cmd))
	}
	if err != nil {
		return fsm.Output{}, err
	}

	view := rec.view()
	out := fsm.Output{Value: mustJSON(view)}
	if changed {
		out.Events = []fsm.Event{{
			Domain: fsm.DomainComments,
			Key:    rec.thread,
			Data:   mustJSON(Event{Op: opName, Comment: view}),
		}}
	}
	return out, nil
}

// applyCreate adds the comment of c with the next id.
func applyCreate(tx storage.ReadWriter, req fsm.Request, c CreateCommand) (*record, error) {
	// Read and check everything first.
	seq, err := readSeq(tx)
	if err != nil {
		return nil, err
	}
	thread, _, err := readThread(tx, c.Thread)
	if err != nil {
		return nil, err
	}
	rec := &record{
		id:      seq + 1,
		thread:  c.Thread,
		author:  c.Author,
		body:    c.Body,
		created: req.Time.UnixNano(),
	}
	var ancestors []*record // parent first
	if c.Parent != "" {
		parentID, err := parseID(c.Parent)
		if err != nil {
			return nil, err
		}
		parent, err := readComment(tx, parentID)
		if err != nil {
			return nil, err
		}
		if parent.thread != c.Thread {
			return nil, fsm.Errorf(fsm.CodeInvalid,
				"parent comment %s is in another thread", c.Parent)
		}
		if parent.deleted {
			return nil, fsm.Errorf(fsm.CodeConflict,
				"parent comment %s is deleted", c.Parent)
		}
		rec.parent = parent.id
		rec.depth = parent.depth + 1
		ancestors = append(ancestors, parent)
		for a := parent; a.parent != 0; {
			if a, err = readComment(tx, a.parent); err != nil {
				return nil, brokenIfNotFound(err)
			}
			ancestors = append(ancestors, a)
		}
	}

	// Write: counter, thread, the comment and its index entries, then the
	// counts of its ancestors; the parent moves in the "replies" order.
	if err := tx.Set(seqKey, binary.BigEndian.AppendUint64(nil, rec.id)); err != nil {
		return nil, err
	}
	thread.comments++
	if rec.parent == 0 {
		thread.topLevel++
	}
	if err := tx.Set(threadKey(rec.thread), thread.encode()); err != nil {
		return nil, err
	}
	if err := writeComment(tx, rec); err != nil {
		return nil, err
	}
	for _, o := range orders {
		if err := tx.Set(indexKey(rec, o), nil); err != nil {
			return nil, err
		}
	}
	for i, a := range ancestors {
		before := *a
		a.descendants++
		if i == 0 {
			a.replies++
			if err := moveIndex(tx, &before, a, orderReplies); err != nil {
				return nil, err
			}
		}
		if err := writeComment(tx, a); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// applyEdit replaces the body of a comment.
func applyEdit(tx storage.ReadWriter, req fsm.Request, c EditCommand) (*record, error) {
	rec, err := readCommentID(tx, c.ID)
	if err != nil {
		return nil, err
	}
	if rec.author != c.Author {
		return nil, fsm.Errorf(fsm.CodeForbidden, "only the author may edit comment %s", c.ID)
	}
	if rec.deleted {
		return nil, fsm.Errorf(fsm.CodeConflict, "comment %s is deleted", c.ID)
	}

	rec.body = c.Body
	rec.edited = req.Time.UnixNano()
	return rec, writeComment(tx, rec)
}

// applyDelete marks a comment deleted and erases its body. It keeps its
// place in every listing and in the counts of its ancestors.
func applyDelete(tx storage.ReadWriter, c DeleteCommand) (*record, bool, error) {
	rec, err := readCommentID(tx, c.ID)
	if err != nil {
		return nil, false, err
	}
	if rec.author != c.Author {
		return nil, false, fsm.Errorf(fsm.CodeForbidden,
			"only the author may delete comment %s", c.ID)
	}
	if rec.deleted {
		return rec, false, nil
	}

	rec.deleted = true
	rec.body = ""
	return rec, true, writeComment(tx, rec)
}

// applyVote sets a user's vote and moves the comment in the orders that
// depend on votes.
func applyVote(tx storage.ReadWriter, c VoteCommand) (*record, bool, error) {
	rec, err := readCommentID(tx, c.ID)
	if err != nil {
		return nil, false, err
	}
	if rec.deleted {
		return nil, false, fsm.Errorf(fsm.CodeConflict, "comment %s is deleted", c.ID)
	}
	key := voteKey(rec.id, c.User)
	old, err := readVote(tx, key)
	if err != nil {
		return nil, false, err
	}
	v, _ := parseVote(c.Vote) // validated by Decode
	if v == old {
		return rec, false, nil
	}

	before := *rec
	switch old {
	case voteUp:
		rec.ups--
	case voteDown:
		rec.downs--
	}
	switch v {
	case voteUp:
		rec.ups++
	case voteDown:
		rec.downs++
	}
	if v == voteNone {
		err = tx.Delete(key)
	} else {
		err = tx.Set(key, []byte{byte(v)})
	}
	if err != nil {
		return nil, false, err
	}
	if err := writeComment(tx, rec); err != nil {
		return nil, false, err
	}
	for _, o := range [...]order{orderTop, orderBest, orderControversial} {
		if err := moveIndex(tx, &before, rec, o); err != nil {
			return nil, false, err
		}
	}
	return rec, true, nil
}

// applyLike sets whether a user likes a comment. No order depends on likes.
func applyLike(tx storage.ReadWriter, c LikeCommand) (*record, bool, error) {
	rec, err := readCommentID(tx, c.ID)
	if err != nil {
		return nil, false, err
	}
	if rec.deleted {
		return nil, false, fsm.Errorf(fsm.CodeConflict, "comment %s is deleted", c.ID)
	}
	key := likeKey(rec.id, c.User)
	_, err = tx.Get(key)
	liked := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, false, err
	}
	if liked == c.Like {
		return rec, false, nil
	}

	if c.Like {
		rec.likes++
		err = tx.Set(key, nil)
	} else {
		rec.likes--
		err = tx.Delete(key)
	}
	if err != nil {
		return nil, false, err
	}
	return rec, true, writeComment(tx, rec)
}

// moveIndex replaces the index entry of before by that of after in order
// o, if it changed.
func moveIndex(tx storage.ReadWriter, before, after *record, o order) error {
	oldKey, newKey := indexKey(before, o), indexKey(after, o)
	if bytes.Equal(oldKey, newKey) {
		return nil
	}
	if err := tx.Delete(oldKey); err != nil {
		return err
	}
	return tx.Set(newKey, nil)
}

func writeComment(tx storage.ReadWriter, rec *record) error {
	return tx.Set(commentKey(rec.id), rec.encode())
}

// readSeq returns the last assigned comment id, 0 before the first.
func readSeq(r storage.Reader) (uint64, error) {
	v, err := r.Get(seqKey)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("comments: corrupt id counter of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// readThread returns the record of a thread and whether it exists.
func readThread(r storage.Reader, thread string) (threadRecord, bool, error) {
	v, err := r.Get(threadKey(thread))
	if errors.Is(err, storage.ErrNotFound) {
		return threadRecord{}, false, nil
	}
	if err != nil {
		return threadRecord{}, false, err
	}
	t, err := decodeThreadRecord(thread, v)
	return t, err == nil, err
}

// readCommentID reads the comment named by a user-supplied id.
func readCommentID(r storage.Reader, id string) (*record, error) {
	n, err := parseID(id)
	if err != nil {
		return nil, err
	}
	return readComment(r, n)
}

// readComment reads a comment, returning an *fsm.Error with CodeNotFound if
// there is none.
func readComment(r storage.Reader, id uint64) (*record, error) {
	v, err := r.Get(commentKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNoComment(formatID(id))
	}
	if err != nil {
		return nil, err
	}
	return decodeRecord(id, v)
}

// brokenIfNotFound turns the not-found error of a comment that must exist
// (an ancestor, an indexed comment) into a broken invariant.
func brokenIfNotFound(err error) error {
	var fe *fsm.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("comments: broken invariant: %s", fe.Message)
	}
	return err
}

// readVote returns the vote stored under key.
func readVote(r storage.Reader, key []byte) (vote, error) {
	v, err := r.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return voteNone, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 1 || (vote(v[0]) != voteUp && vote(v[0]) != voteDown) {
		return 0, fmt.Errorf("comments: corrupt vote %q", v)
	}
	return vote(v[0]), nil
}

// mustJSON marshals values that cannot fail to marshal.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("comments: encoding %T: %v", v, err))
	}
	return b
}
