package comments

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// recordVersion is the first byte of an encoded record.
const recordVersion = 1

// record is a comment as stored under commentKey(id). The id is the key's,
// not part of the value.
type record struct {
	id          uint64
	thread      string
	parent      uint64 // 0 for a top-level comment
	author      string // kept after delete, for the author check
	body        string // empty once deleted
	created     int64  // Unix nanoseconds, from the leader's stamp
	edited      int64  // Unix nanoseconds of the last edit; 0 if never
	depth       uint64 // 0 for a top-level comment
	ups         uint64
	downs       uint64
	likes       uint64
	replies     uint64 // direct replies, deleted ones included
	descendants uint64 // all replies below, deleted ones included
	deleted     bool
}

// score is the "top" score: upvotes minus downvotes.
func (r *record) score() int64 { return int64(r.ups) - int64(r.downs) }

const flagDeleted = 1

// encode returns the stored form of r:
//
//	version parent created edited depth ups downs likes replies
//	descendants flags len(thread) thread len(author) author len(body) body
//
// with unsigned varints, a signed varint for the times and a byte for the
// version and the flags.
func (r *record) encode() []byte {
	b := make([]byte, 0, 48+len(r.thread)+len(r.author)+len(r.body))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.parent)
	b = binary.AppendVarint(b, r.created)
	b = binary.AppendVarint(b, r.edited)
	for _, v := range [...]uint64{r.depth, r.ups, r.downs, r.likes, r.replies, r.descendants} {
		b = binary.AppendUvarint(b, v)
	}
	var flags byte
	if r.deleted {
		flags |= flagDeleted
	}
	b = append(b, flags)
	for _, s := range [...]string{r.thread, r.author, r.body} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// errCorrupt is wrapped by the errors of decodeRecord: a broken invariant.
var errCorrupt = errors.New("comments: corrupt record")

// decodeRecord parses the stored form of comment id.
func decodeRecord(id uint64, b []byte) (*record, error) {
	d := decoder{b: b}
	if v := d.byte(); v != recordVersion {
		return nil, fmt.Errorf("%w %d: version %d", errCorrupt, id, v)
	}
	r := &record{id: id}
	r.parent = d.uvarint()
	r.created = d.varint()
	r.edited = d.varint()
	counts := [...]*uint64{&r.depth, &r.ups, &r.downs, &r.likes, &r.replies, &r.descendants}
	for _, p := range counts {
		*p = d.uvarint()
	}
	r.deleted = d.byte()&flagDeleted != 0
	r.thread = d.string()
	r.author = d.string()
	r.body = d.string()
	if d.err || len(d.b) != 0 {
		return nil, fmt.Errorf("%w %d", errCorrupt, id)
	}
	return r, nil
}

// decoder reads the fields of a record; err is set once any read fails.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// threadRecord is what is stored under threadKey(thread): a thread exists
// once its first comment was created, and forever after.
type threadRecord struct {
	comments uint64 // all comments ever created, deleted ones included
	topLevel uint64 // top-level comments among them
}

func (t threadRecord) encode() []byte {
	b := binary.AppendUvarint(nil, t.comments)
	return binary.AppendUvarint(b, t.topLevel)
}

func decodeThreadRecord(thread string, b []byte) (threadRecord, error) {
	d := decoder{b: b}
	t := threadRecord{comments: d.uvarint(), topLevel: d.uvarint()}
	if d.err || len(d.b) != 0 {
		return threadRecord{}, fmt.Errorf("comments: corrupt thread record %q", thread)
	}
	return t, nil
}

// view returns the comment as readers see it, without nested replies.
func (r *record) view() Comment {
	c := Comment{
		ID:              formatID(r.id),
		Thread:          r.thread,
		Created:         time.Unix(0, r.created).UTC(),
		Depth:           int(r.depth),
		Upvotes:         int64(r.ups),
		Downvotes:       int64(r.downs),
		Likes:           int64(r.likes),
		ReplyCount:      int64(r.replies),
		DescendantCount: int64(r.descendants),
		Score:           r.score(),
		Best:            wilsonLowerBound(r.ups, r.downs),
		Deleted:         r.deleted,
	}
	if r.parent != 0 {
		c.Parent = formatID(r.parent)
	}
	if !r.deleted {
		c.Author = r.author
		c.Body = r.body
	}
	if r.edited != 0 {
		t := time.Unix(0, r.edited).UTC()
		c.Edited = &t
	}
	return c
}
