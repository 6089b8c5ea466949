package comments

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// Limits of a Query.
const (
	DefaultLimit      = 25   // comments per page when Query.Limit is 0
	MaxLimit          = 100  // comments per page, and nested replies per comment
	MaxNestDepth      = 10   // levels of nested replies
	MaxNestedComments = 1000 // nested replies in one page, all levels together
)

// Comment is a comment as readers see it, ready to be sent as JSON.
type Comment struct {
	ID     string `json:"id"`
	Thread string `json:"thread"`

	// Parent is the id of the comment this one replies to; empty for a
	// top-level comment.
	Parent string `json:"parent,omitempty"`

	// Author and Body are empty once the comment is deleted.
	Author string `json:"author"`
	Body   string `json:"body"`

	// Created is the leader's time when the comment was created, in UTC;
	// Edited that of its last edit, nil if it was never edited.
	Created time.Time  `json:"created"`
	Edited  *time.Time `json:"edited,omitempty"`

	// Depth is 0 for a top-level comment and its parent's plus one for a
	// reply.
	Depth int `json:"depth"`

	Upvotes   int64 `json:"upvotes"`
	Downvotes int64 `json:"downvotes"`
	Likes     int64 `json:"likes"`

	// ReplyCount counts direct replies and DescendantCount all replies
	// below, deleted ones included (they are listed as deleted).
	ReplyCount      int64 `json:"reply_count"`
	DescendantCount int64 `json:"descendant_count"`

	// Score is Upvotes - Downvotes, the "top" order.
	Score int64 `json:"score"`

	// Best is the lower bound of the Wilson score interval, the "best"
	// order; 0 with no votes.
	Best float64 `json:"best"`

	// Deleted is set once the author deleted the comment.
	Deleted bool `json:"deleted"`

	// Replies holds the first replies of the comment when a Query asked for
	// nested replies and the comment was expanded; nil otherwise.
	Replies *Page `json:"replies,omitempty"`
}

// Page is one page of a listing.
type Page struct {
	// Comments are the comments of the page in listing order; never nil,
	// so that it is sent as [] when empty.
	Comments []Comment `json:"comments"`

	// NextCursor continues the listing after the last comment of the page,
	// in a Query with the same scope and sort (for a nested page: Parent set
	// to the comment that holds it). It is nil at the end of the listing.
	NextCursor *string `json:"next_cursor"`
}

// Query selects a page of a listing.
type Query struct {
	// Thread lists the top-level comments of a thread. Parent, if set
	// instead, lists the direct replies of that comment; if both are set
	// the parent must be in the thread.
	Thread string
	Parent string

	// Sort is one of Sorts(); empty means DefaultSort.
	Sort string

	// Limit is the number of comments in the page, 1 to MaxLimit; 0 means
	// DefaultLimit. The API layer rejects an explicit limit=0 itself.
	Limit int

	// Cursor is the NextCursor of the previous page, empty for the first.
	Cursor string

	// Replies, if positive, nests up to that many replies (at most
	// MaxLimit) under each listed comment, and as many under each of those,
	// down to Depth levels below the listed comments (1 to MaxNestDepth;
	// 0 means 1). Every nested list is in the same order and has its own
	// NextCursor. Once MaxNestedComments are nested in the page, further
	// comments are left without a Replies page.
	Replies int
	Depth   int
}

// Get returns comment id. An id that names no comment gives an *fsm.Error
// with CodeNotFound. Get may be called from any goroutine with any Reader.
func Get(r storage.Reader, id string) (Comment, error) {
	rec, err := readCommentID(r, id)
	if err != nil {
		return Comment{}, err
	}
	return rec.view(), nil
}

// ThreadInfo describes a thread.
type ThreadInfo struct {
	Thread string `json:"thread"`

	// Comments counts every comment of the thread, deleted ones included;
	// TopLevel those of them that are not replies.
	Comments int64 `json:"comments"`
	TopLevel int64 `json:"top_level"`
}

// GetThread returns what is known of a thread, or an *fsm.Error with
// CodeNotFound if it has no comment.
func GetThread(r storage.Reader, thread string) (ThreadInfo, error) {
	if err := checkThread(thread); err != nil {
		return ThreadInfo{}, err
	}
	t, ok, err := readThread(r, thread)
	if err != nil {
		return ThreadInfo{}, err
	}
	if !ok {
		return ThreadInfo{}, errNoThread(thread)
	}
	return ThreadInfo{
		Thread:   thread,
		Comments: int64(t.comments),
		TopLevel: int64(t.topLevel),
	}, nil
}

func errNoThread(thread string) error {
	return fsm.Errorf(fsm.CodeNotFound, "no thread %q", thread)
}

// List returns a page of a listing: the top-level comments of q.Thread or
// the direct replies of q.Parent, in the order q.Sort. It reads one range of
// an index per listed page, never the whole thread. Errors meant for the
// reader are *fsm.Error values: CodeNotFound for an unknown thread or
// parent, CodeInvalid for a bad sort, limit, nesting or cursor. List may be
// called from any goroutine with any Reader; use a snapshot for a page that
// is consistent with itself.
func List(r storage.Reader, q Query) (Page, error) {
	// Check the query.
	sortName := q.Sort
	if sortName == "" {
		sortName = DefaultSort
	}
	o, ok := parseSort(sortName)
	if !ok {
		if len(sortName) > 32 || !utf8.ValidString(sortName) {
			return Page{}, fsm.Errorf(fsm.CodeInvalid, "unknown sort")
		}
		return Page{}, fsm.Errorf(fsm.CodeInvalid, "unknown sort %q", sortName)
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > MaxLimit {
		return Page{}, fsm.Errorf(fsm.CodeInvalid, "limit must be 1 to %d, not %d",
			MaxLimit, q.Limit)
	}
	replies, depth := q.Replies, q.Depth
	if replies < 0 || replies > MaxLimit {
		return Page{}, fsm.Errorf(fsm.CodeInvalid, "replies must be 0 to %d, not %d",
			MaxLimit, replies)
	}
	if depth < 0 || depth > MaxNestDepth {
		return Page{}, fsm.Errorf(fsm.CodeInvalid, "depth must be 0 to %d, not %d",
			MaxNestDepth, depth)
	}
	if replies == 0 {
		depth = 0
	} else if depth == 0 {
		depth = 1
	}

	// Find the scope.
	thread, parent := q.Thread, uint64(0)
	if q.Parent != "" {
		rec, err := readCommentID(r, q.Parent)
		if err != nil {
			return Page{}, err
		}
		if q.Thread != "" && q.Thread != rec.thread {
			return Page{}, fsm.Errorf(fsm.CodeInvalid,
				"comment %s is not in thread %q", q.Parent, q.Thread)
		}
		thread, parent = rec.thread, rec.id
	} else if thread == "" {
		return Page{}, fsm.Errorf(fsm.CodeInvalid, "a listing needs a thread or a parent")
	} else if _, err := GetThread(r, thread); err != nil {
		return Page{}, err
	}
	scope := scopeKey(thread, parent, o)
	var after []byte
	if q.Cursor != "" {
		pos, err := decodeCursor(q.Cursor, scope)
		if err != nil {
			return Page{}, err
		}
		after = pos
	}

	// Read the page, then nest replies.
	l := lister{r: r, order: o, replies: replies, budget: MaxNestedComments}
	return l.page(thread, parent, after, limit, depth)
}

// lister reads the pages of one List call.
type lister struct {
	r       storage.Reader
	order   order
	replies int // nested replies per comment
	budget  int // nested comments left
}

// page reads up to limit comments of scope (thread, parent) after position
// after (nil: from the start), and nests replies depth levels below them.
func (l *lister) page(thread string, parent uint64, after []byte, limit, depth int) (Page, error) {
	scope := scopeKey(thread, parent, l.order)
	lower := scope
	if after != nil {
		// Strictly after: every key of the scope has the same length, so
		// none lies between after and after+"\x00".
		lower = append(append(append([]byte(nil), scope...), after...), 0)
	}
	upper := storage.PrefixEnd(scope)

	// Read one entry more than the limit to learn whether there is a next
	// page.
	var ids []uint64
	var last []byte
	more := false
	err := l.r.Scan(lower, upper, false, func(key, _ []byte) error {
		if len(ids) == limit {
			more = true
			return storage.ErrStopScan
		}
		pos := key[len(scope):]
		if len(pos) != positionLen {
			return errors.New("comments: corrupt index key")
		}
		ids = append(ids, binary.BigEndian.Uint64(pos[8:]))
		last = append(last[:0], pos...)
		return nil
	})
	if err != nil {
		return Page{}, err
	}

	p := Page{Comments: make([]Comment, 0, len(ids))}
	if more {
		c := encodeCursor(scope, last)
		p.NextCursor = &c
	}
	for _, id := range ids {
		rec, err := readComment(l.r, id)
		if err != nil {
			return Page{}, brokenIfNotFound(err)
		}
		if !bytes.Equal(scopeKey(rec.thread, rec.parent, l.order), scope) {
			return Page{}, errors.New("comments: index entry in the wrong scope")
		}
		c := rec.view()
		if depth > 0 && l.budget > 0 {
			n := min(l.replies, l.budget)
			l.budget -= n
			var sub Page
			if rec.replies == 0 {
				sub = Page{Comments: []Comment{}}
			} else if sub, err = l.page(thread, rec.id, nil, n, depth-1); err != nil {
				return Page{}, err
			}
			l.budget += n - len(sub.Comments)
			c.Replies = &sub
		}
		p.Comments = append(p.Comments, c)
	}
	return p, nil
}
