package api

// The threaded-comments endpoints. The rules (who may edit, what a vote
// does, how a deleted comment counts, the listing orders and cursors) are
// in package fsm/comments; this file turns HTTP into its commands and
// queries and back.
//
// Decisions of the HTTP layer:
//
//   - Thread names are any UTF-8 string of 1 to 256 bytes without
//     control characters (fsm/comments checks names of new writes), sent
//     path-escaped as one segment: "a b" as a%20b, "a/b" as a%2Fb. The
//     mux matches the escaped path, so an escaped '/' stays in the
//     segment and PathValue unescapes it. The names "." and ".." must be
//     sent as %2E and %2E%2E (unescaped, the mux cleans them away with a
//     redirect). Two names cannot be addressed at all: "" and "/" (the
//     mux takes a segment that is exactly %2F for a trailing slash).
//   - Who acts is named in the body: "author" to create, edit or delete,
//     "user" to vote or like. When the request carries an identity
//     (X-Shoal-User today, authentication later) the named user must be
//     that identity (403 otherwise), and the field may be left out.
//   - DELETE takes the author from a JSON body {"author": ...} or from
//     ?author=...; a request naming two different authors is a 400.
//   - A write the state machine would certainly reject, judging by what
//     this node has applied, is rejected before it reaches the log (see
//     precheck); the rest are rejected when applied, which changes no
//     comment but takes a log index.
//   - Every reply that carries a comment carries "index": the Raft index
//     of the write for a write, the index the read reflects for a read.
//   - A listing reads one consistent snapshot of the node's state: every
//     comment of a page, its nested replies and its next_cursor reflect
//     the same index, which is the reply's "index" and X-Shoal-Index.
//   - Query parameters are checked strictly: an unknown or repeated one,
//     limit=0, an empty sort and a depth without replies are 400s.
//   - Statuses: 201 for a create, 200 for every other success (a repeated
//     vote, like or delete included); 400 for bad input and a parent in
//     another thread; 403 when the named author or user is not the
//     comment's author or not the caller; 404 for an unknown comment,
//     parent or thread (a thread exists from its first comment on); 409
//     for a write to a deleted comment or a reply to one; 413 for a body
//     over the server's limit; 503 while there is no leader.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/comments"
	"github.com/shoal-db/shoal/hottier"
	"github.com/shoal-db/shoal/node"
)

// commentReply is a comment as a reply carries it: the comment and the
// index of the write that produced it, or of the state a read reflects.
type commentReply struct {
	comments.Comment
	Index uint64 `json:"index"`
}

// pageReply is one page of a listing and the index it reflects.
type pageReply struct {
	comments.Page
	Index uint64 `json:"index"`
}

// threadReply describes a thread at an index.
type threadReply struct {
	comments.ThreadInfo
	Index uint64 `json:"index"`
}

// createCommentBody is the body of POST /v1/threads/{thread}/comments.
type createCommentBody struct {
	Parent *string `json:"parent"` // absent for a top-level comment
	Author string  `json:"author"`
	Body   string  `json:"body"`
}

// editCommentBody is the body of PATCH /v1/comments/{id}.
type editCommentBody struct {
	Author string `json:"author"`
	Body   string `json:"body"`
}

// deleteCommentBody is the optional body of DELETE /v1/comments/{id}.
type deleteCommentBody struct {
	Author string `json:"author"`
}

// voteBody is the body of POST /v1/comments/{id}/votes.
type voteBody struct {
	User string `json:"user"`
	Vote string `json:"vote"`
}

// likeBody is the body of POST /v1/comments/{id}/likes.
type likeBody struct {
	User string `json:"user"`
	Like *bool  `json:"like"`
}

func (s *Server) createComment(w http.ResponseWriter, r *http.Request) {
	var body createCommentBody
	if err := s.decodeBody(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	if body.Parent != nil && *body.Parent == "" {
		writeError(w, badRequest(`"parent" is empty; leave it out for a top-level comment`))
		return
	}
	author, err := actingUser(r, "author", body.Author)
	if err != nil {
		writeError(w, err)
		return
	}
	var parent string
	if body.Parent != nil {
		parent = *body.Parent
	}
	cmd := comments.CreateCommand{
		Thread: r.PathValue("thread"),
		Parent: parent,
		Author: author,
		Body:   body.Body,
	}
	s.writeComment(w, r, cmd, http.StatusCreated)
}

func (s *Server) editComment(w http.ResponseWriter, r *http.Request) {
	var body editCommentBody
	if err := s.decodeBody(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	author, err := actingUser(r, "author", body.Author)
	if err != nil {
		writeError(w, err)
		return
	}
	cmd := comments.EditCommand{ID: r.PathValue("id"), Author: author, Body: body.Body}
	s.writeComment(w, r, cmd, http.StatusOK)
}

func (s *Server) deleteComment(w http.ResponseWriter, r *http.Request) {
	// The author comes from ?author=, a JSON body, or both if they agree.
	author := r.URL.Query().Get("author")
	var body deleteCommentBody
	if err := s.decodeBody(w, r, &body); err != nil && !isEmptyBody(err) {
		writeError(w, err)
		return
	}
	switch {
	case body.Author == "":
	case author == "":
		author = body.Author
	case author != body.Author:
		writeError(w, badRequest("author %q in the query and %q in the body differ",
			author, body.Author))
		return
	}
	author, err := actingUser(r, "author", author)
	if err != nil {
		writeError(w, err)
		return
	}
	cmd := comments.DeleteCommand{ID: r.PathValue("id"), Author: author}
	s.writeComment(w, r, cmd, http.StatusOK)
}

func (s *Server) voteComment(w http.ResponseWriter, r *http.Request) {
	var body voteBody
	if err := s.decodeBody(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	user, err := actingUser(r, "user", body.User)
	if err != nil {
		writeError(w, err)
		return
	}
	if body.Vote == "" {
		writeError(w, badRequest(`"vote" is required: "up", "down" or "none"`))
		return
	}
	cmd := comments.VoteCommand{ID: r.PathValue("id"), User: user, Vote: body.Vote}
	s.writeComment(w, r, cmd, http.StatusOK)
}

func (s *Server) likeComment(w http.ResponseWriter, r *http.Request) {
	var body likeBody
	if err := s.decodeBody(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	user, err := actingUser(r, "user", body.User)
	if err != nil {
		writeError(w, err)
		return
	}
	if body.Like == nil {
		writeError(w, badRequest(`"like" is required: true or false`))
		return
	}
	cmd := comments.LikeCommand{ID: r.PathValue("id"), User: user, Like: *body.Like}
	s.writeComment(w, r, cmd, http.StatusOK)
}

// actingUser returns who a write acts as: the user named in field of the
// body, which must be the request's identity when it has one, or the
// identity alone when the body names nobody.
func actingUser(r *http.Request, field, named string) (string, error) {
	identity := IdentityFrom(r.Context()).User
	switch {
	case identity == "":
		return named, nil
	case named == "":
		return identity, nil
	case named != identity:
		return "", errorf(http.StatusForbidden, fsm.CodeForbidden,
			"%s %q is not the caller %q (%s)", field, named, identity, HeaderUser)
	}
	return named, nil
}

// writeComment validates cmd, proposes it and answers with status and the
// comment the state machine returned, with the write's index.
func (s *Server) writeComment(w http.ResponseWriter, r *http.Request, cmd comments.Command,
	status int) {
	op, payload, err := comments.Encode(cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.precheck(r, cmd); err != nil {
		writeError(w, err)
		return
	}
	result, err := s.propose(r, fsm.Command{Domain: fsm.DomainComments, Op: op,
		Payload: payload})
	if err != nil {
		writeError(w, err)
		return
	}
	var reply commentReply
	if err := json.Unmarshal(result.Value, &reply.Comment); err != nil {
		writeError(w, err)
		return
	}
	reply.Index = result.Index
	setIndex(w, result.Index)
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/comments/"+url.PathEscape(reply.ID))
	}
	writeJSON(w, status, reply)
}

// precheck rejects a write that the state machine would certainly reject,
// judging by facts about a comment that never change once true: that it
// exists, its thread, its author while it is not deleted, and that it is
// deleted. Such a write is answered without a log entry, so it leaves even
// the applied index alone. A comment this node has not applied may exist
// at the leader all the same: a linearizable barrier settles that before a
// 404. Whatever precheck cannot settle (a race with another write, the
// author of a deleted comment, no leader) is left to the state machine.
func (s *Server) precheck(r *http.Request, cmd comments.Command) error {
	var id string
	switch c := cmd.(type) {
	case comments.CreateCommand:
		id = c.Parent
	case comments.EditCommand:
		id = c.ID
	case comments.DeleteCommand:
		id = c.ID
	case comments.VoteCommand:
		id = c.ID
	case comments.LikeCommand:
		id = c.ID
	}
	if id == "" {
		return nil
	}
	existing, err := comments.Get(s.node.State(), id)
	if isNotFound(err) {
		if _, barrierErr := s.node.ReadBarrier(r.Context(), node.Strong, 0); barrierErr != nil {
			return nil
		}
		existing, err = comments.Get(s.node.State(), id)
	}
	if err != nil {
		return err
	}

	switch c := cmd.(type) {
	case comments.CreateCommand:
		switch {
		case existing.Thread != c.Thread:
			return fsm.Errorf(fsm.CodeInvalid, "parent comment %s is in another thread", id)
		case existing.Deleted:
			return fsm.Errorf(fsm.CodeConflict, "parent comment %s is deleted", id)
		}
	case comments.EditCommand:
		// TODO(comments): a deleted comment shows no author, so an edit or
		// delete of one is rejected only when applied, taking a log index;
		// fsm/comments could export an author check for it.
		if !existing.Deleted && existing.Author != c.Author {
			return fsm.Errorf(fsm.CodeForbidden, "only the author may edit comment %s", id)
		}
	case comments.DeleteCommand:
		if !existing.Deleted && existing.Author != c.Author {
			return fsm.Errorf(fsm.CodeForbidden, "only the author may delete comment %s", id)
		}
	case comments.VoteCommand, comments.LikeCommand:
		if existing.Deleted {
			return fsm.Errorf(fsm.CodeConflict, "comment %s is deleted", id)
		}
	}
	return nil
}

// isNotFound reports whether err is the state machine's not-found error.
func isNotFound(err error) bool {
	var fe *fsm.Error
	return errors.As(err, &fe) && fe.Code == fsm.CodeNotFound
}

func (s *Server) getComment(w http.ResponseWriter, r *http.Request) {
	s.withSnapshot(w, r, func(snap *snapshotView) (any, error) {
		c, err := comments.Get(snap.reader, r.PathValue("id"))
		return commentReply{Comment: c, Index: snap.index}, err
	})
}

func (s *Server) getThread(w http.ResponseWriter, r *http.Request) {
	s.withSnapshot(w, r, func(snap *snapshotView) (any, error) {
		info, err := comments.GetThread(snap.reader, r.PathValue("thread"))
		return threadReply{ThreadInfo: info, Index: snap.index}, err
	})
}

func (s *Server) listThread(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q.Thread = r.PathValue("thread")
	if s.cfg.HotTier != nil && hotPage(q) {
		s.listThreadHot(w, r, q)
		return
	}
	s.list(w, r, q)
}

func (s *Server) listReplies(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q.Parent = r.PathValue("id")
	s.list(w, r, q)
}

// list answers one page of a listing from one snapshot.
func (s *Server) list(w http.ResponseWriter, r *http.Request, q comments.Query) {
	s.withSnapshot(w, r, func(snap *snapshotView) (any, error) {
		page, err := comments.List(snap.reader, q)
		return pageReply{Page: page, Index: snap.index}, err
	})
}

// listQuery parses the query parameters of a listing; the route has
// checked their names (see query).
func listQuery(r *http.Request) (comments.Query, error) {
	params := r.URL.Query()
	q := comments.Query{Cursor: params.Get("cursor")}
	var err error
	if params.Has("sort") {
		// Checked here as well as by List, so that a bad sort never
		// becomes a hot-tier key.
		q.Sort = params.Get("sort")
		if !slices.Contains(comments.Sorts(), q.Sort) {
			return q, badRequest("sort %q: want one of %v", truncate(q.Sort, 32),
				comments.Sorts())
		}
	}
	if q.Limit, err = intParam(params, "limit", 1, comments.MaxLimit); err != nil {
		return q, err
	}
	if q.Replies, err = intParam(params, "replies", 0, comments.MaxLimit); err != nil {
		return q, err
	}
	if q.Depth, err = intParam(params, "depth", 1, comments.MaxNestDepth); err != nil {
		return q, err
	}
	if q.Depth > 0 && q.Replies == 0 {
		return q, badRequest("depth needs replies=N (replies nested per comment)")
	}
	return q, nil
}

// intParam parses the integer parameter name in [lo, hi]; 0 when absent.
func intParam(params url.Values, name string, lo, hi int) (int, error) {
	if !params.Has(name) {
		return 0, nil
	}
	v := params.Get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		if len(v) > 32 {
			v = v[:32] + "..."
		}
		return 0, badRequest("%s %q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// Hot first pages.
//
// The first page of a thread's top-level listing in each order, at the
// default limit and without nested replies, is what most readers of a busy
// thread ask for. With a hot tier it is read through the tier under the
// key CommentPageHotKey(thread, sort). Its version is the index of the
// snapshot it was read from: the page holds every change of the thread up
// to that index, so the version is at least the thread's latest change
// and the tier's rule (never older than what this node applied for the
// key) is the rule for the thread. Every change of a thread moves all of
// its first pages: CommentPagesObserver turns each applied comments event
// into one change per order, and CommentPageChange maps those to keys.

// hotPage reports whether q asks for a page the hot tier holds.
//
// TODO(comments): only top-level first pages at the default limit go
// through the tier; the first page of a busy comment's replies and pages
// with nested replies are read from the state every time.
func hotPage(q comments.Query) bool {
	return q.Parent == "" && q.Cursor == "" && q.Replies == 0 &&
		(q.Limit == 0 || q.Limit == comments.DefaultLimit)
}

// CommentPageHotKey is the hot-tier key of the first page of thread in the
// order sort (at the default limit, without nested replies).
func CommentPageHotKey(thread, sort string) string {
	return "comments/page/" + sort + "/" + thread
}

// listThreadHot answers a first page through the hot tier. The barrier has
// run first, so consistency=strong and min_index keep their meaning.
func (s *Server) listThreadHot(w http.ResponseWriter, r *http.Request, q comments.Query) {
	index, err := s.readBarrier(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if q.Sort == "" {
		q.Sort = comments.DefaultSort
	}
	value, tier, err := s.cfg.HotTier.Get(r.Context(), CommentPageHotKey(q.Thread, q.Sort),
		func() (hottier.Value, error) {
			snap, index, err := s.node.Snapshot()
			if err != nil {
				return hottier.Value{}, err
			}
			defer snap.Close()
			page, err := comments.List(snap, q)
			if err != nil {
				return hottier.Value{}, err
			}
			raw, err := json.Marshal(page)
			return hottier.Value{Data: raw, Index: index}, err
		})
	if err != nil {
		writeError(w, err)
		return
	}

	// A value from Redis may be newer than this node's state: the reply
	// reflects the newer of the two.
	index = max(index, value.Index)
	setIndex(w, index)
	w.Header().Set(HeaderTier, tier)
	writeCachedPage(w, value.Data, index)
}

// writeCachedPage answers with a page that the loader of listThreadHot
// encoded, {"comments":[...],"next_cursor":...}, and its index, without
// decoding it again: the index goes in before the closing brace.
func writeCachedPage(w http.ResponseWriter, page []byte, index uint64) {
	if len(page) < 2 || page[len(page)-1] != '}' {
		writeError(w, errorf(http.StatusInternalServerError, "internal",
			"corrupt cached comment page"))
		return
	}
	body := make([]byte, 0, len(page)+32)
	body = append(body, page[:len(page)-1]...)
	body = append(body, `,"index":`...)
	body = strconv.AppendUint(body, index, 10)
	body = append(body, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// hotPageSeparator separates the order from the thread in the Key of the
// events CommentPagesObserver makes; no order name contains it.
const hotPageSeparator = "\x00"

// CommentPageChange maps the per-order events of CommentPagesObserver to
// the hot-tier keys of first pages. Register it with the tier for
// fsm.DomainComments.
func CommentPageChange(e fsm.Event) (hottier.Change, bool) {
	for i := 0; i < len(e.Key); i++ {
		if e.Key[i] == hotPageSeparator[0] {
			return hottier.Change{Key: CommentPageHotKey(e.Key[i+1:], e.Key[:i]),
				Index: e.Index}, true
		}
	}
	return hottier.Change{}, false
}

// CommentPagesObserver returns an apply observer that passes every batch
// to next, with each comments event (whose Key is a thread) replaced by one
// event per listing order, keyed order + "\x00" + thread, so that one
// vote invalidates the thread's first page in every order.
func CommentPagesObserver(next node.ApplyObserver) node.ApplyObserver {
	return pagesObserver{next: next, sorts: comments.Sorts()}
}

type pagesObserver struct {
	next  node.ApplyObserver
	sorts []string
}

// Applied implements node.ApplyObserver.
func (o pagesObserver) Applied(events []fsm.Event, first, last uint64) {
	n := 0
	for _, e := range events {
		if e.Domain == fsm.DomainComments {
			n++
		}
	}
	if n == 0 {
		o.next.Applied(events, first, last)
		return
	}
	out := make([]fsm.Event, 0, len(events)+n*(len(o.sorts)-1))
	for _, e := range events {
		if e.Domain != fsm.DomainComments {
			out = append(out, e)
			continue
		}
		for _, sort := range o.sorts {
			out = append(out, fsm.Event{Domain: e.Domain, Index: e.Index,
				Key: sort + hotPageSeparator + e.Key})
		}
	}
	o.next.Applied(out, first, last)
}
