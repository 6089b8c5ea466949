package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Values of a vote, for Vote.
const (
	VoteUp   = "up"
	VoteDown = "down"
	VoteNone = "none"
)

// Listing orders, for ListOptions.Sort. Every order breaks ties by comment
// id, ascending; see the server's documentation for each score.
const (
	SortNew           = "new"
	SortOld           = "old"
	SortTop           = "top"
	SortReplies       = "replies"
	SortBest          = "best"
	SortControversial = "controversial"
)

// Comment is one comment of a thread.
type Comment struct {
	// ID is the comment's id, a decimal number assigned by the cluster,
	// increasing with creation order.
	ID string `json:"id"`
	// Thread is the thread the comment belongs to.
	Thread string `json:"thread"`
	// Parent is the id of the comment this one replies to, empty for a
	// top-level comment.
	Parent string `json:"parent,omitempty"`
	// Author and Body are empty once the comment is deleted.
	Author string `json:"author"`
	Body   string `json:"body"`
	// Created is the leader's clock when the comment was created; Edited
	// that of its last edit, nil if never edited.
	Created time.Time  `json:"created"`
	Edited  *time.Time `json:"edited,omitempty"`
	// Depth is 0 for a top-level comment, its parent's plus one for a
	// reply.
	Depth     int   `json:"depth"`
	Upvotes   int64 `json:"upvotes"`
	Downvotes int64 `json:"downvotes"`
	Likes     int64 `json:"likes"`
	// ReplyCount counts direct replies, DescendantCount all replies below;
	// both include deleted comments, which are still listed.
	ReplyCount      int64 `json:"reply_count"`
	DescendantCount int64 `json:"descendant_count"`
	// Score is Upvotes - Downvotes (the "top" order); Best the lower bound
	// of the Wilson score interval (the "best" order).
	Score int64   `json:"score"`
	Best  float64 `json:"best"`
	// Deleted is set once the author deleted the comment.
	Deleted bool `json:"deleted"`
	// Replies holds the first nested replies when a listing asked for
	// them (ListOptions.Replies), nil otherwise.
	Replies *CommentPage `json:"replies,omitempty"`
	// Index is the Raft index of the write that returned the comment, or
	// for a read the index the answering node's state reflects. Nested
	// comments of a listing leave it zero.
	Index uint64 `json:"index,omitempty"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// CommentPage is one page of a listing.
type CommentPage struct {
	// Comments are the page's comments in listing order.
	Comments []Comment `json:"comments"`
	// NextCursor continues the listing in ListOptions.Cursor; it is empty
	// at the end of the listing.
	NextCursor string `json:"next_cursor"`
	// Index is the applied Raft index the whole page reflects; zero for a
	// nested page.
	Index uint64 `json:"index,omitempty"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// ThreadInfo describes a thread.
type ThreadInfo struct {
	// Thread is the thread's name.
	Thread string `json:"thread"`
	// Comments counts every comment, deleted ones included; TopLevel those
	// that are not replies.
	Comments int64 `json:"comments"`
	TopLevel int64 `json:"top_level"`
	// Index is the applied Raft index the answer reflects.
	Index uint64 `json:"index"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// NewComment is what CreateComment writes.
type NewComment struct {
	// Parent is the id of the comment to reply to; empty for a top-level
	// comment.
	Parent string `json:"parent,omitempty"`
	// Author names the writer. The server also accepts it empty when the
	// request carries an identity (X-Shoal-User), which takes its place;
	// send such requests with Do.
	Author string `json:"author,omitempty"`
	// Body is the text, 1 to 10,000 bytes of UTF-8.
	Body string `json:"body"`
}

// ListOptions selects a page of a listing and where it is read.
type ListOptions struct {
	// Sort is one of the Sort constants; empty means the server's default
	// ("best").
	Sort string
	// Limit is the page size, 1 to 100; zero means the server's default
	// (25).
	Limit int
	// Cursor is the previous page's NextCursor; empty for the first page.
	Cursor string
	// Replies, if positive, nests up to that many replies under each
	// comment, down to Depth levels (zero means one level).
	Replies int
	Depth   int
	// ReadOptions chooses the node and the freshness of the read.
	ReadOptions
}

// requestOptions returns the options of Do for a listing.
func (o ListOptions) requestOptions() RequestOptions {
	opts := o.ReadOptions.requestOptions()
	if o.Sort != "" {
		opts.Query.Set("sort", o.Sort)
	}
	if o.Limit != 0 {
		opts.Query.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		opts.Query.Set("cursor", o.Cursor)
	}
	if o.Replies != 0 {
		opts.Query.Set("replies", strconv.Itoa(o.Replies))
	}
	if o.Depth != 0 {
		opts.Query.Set("depth", strconv.Itoa(o.Depth))
	}
	return opts
}

// CreateComment adds a comment to thread (a top-level comment, or a reply
// when c.Parent is set) and returns it with the index of the write. The
// thread comes into being with its first comment. Like every write it is
// retried under one idempotency key, so it is created at most once.
func (c *Client) CreateComment(ctx context.Context, thread string, nc NewComment) (Comment,
	error) {
	if thread == "" {
		return Comment{}, errors.New("client: empty thread")
	}
	return c.commentWrite(ctx, http.MethodPost, threadPath(thread)+"/comments", nc)
}

// GetComment reads one comment. An unknown id is an *APIError with status
// 404 (see IsNotFound).
func (c *Client) GetComment(ctx context.Context, id string, opts ReadOptions) (Comment, error) {
	if id == "" {
		return Comment{}, errors.New("client: empty comment id")
	}
	var out Comment
	info, err := c.Do(ctx, http.MethodGet, commentPath(id), nil, &out, opts.requestOptions())
	if err != nil {
		return Comment{}, err
	}
	out.Node = info.Node
	return out, nil
}

// GetThread reads what is known of a thread: how many comments it has.
// A thread without comments is an *APIError with status 404.
func (c *Client) GetThread(ctx context.Context, thread string, opts ReadOptions) (ThreadInfo,
	error) {
	if thread == "" {
		return ThreadInfo{}, errors.New("client: empty thread")
	}
	var out ThreadInfo
	info, err := c.Do(ctx, http.MethodGet, threadPath(thread), nil, &out, opts.requestOptions())
	if err != nil {
		return ThreadInfo{}, err
	}
	out.Node = info.Node
	return out, nil
}

// EditComment replaces the body of comment id; only its author may.
func (c *Client) EditComment(ctx context.Context, id, author, body string) (Comment, error) {
	payload := struct {
		Author string `json:"author,omitempty"`
		Body   string `json:"body"`
	}{author, body}
	return c.commentWrite(ctx, http.MethodPatch, commentPath(id), payload)
}

// DeleteComment deletes comment id; only its author may. The deleted
// comment keeps its place and its replies but loses its body and author.
// Deleting it again returns it unchanged.
func (c *Client) DeleteComment(ctx context.Context, id, author string) (Comment, error) {
	payload := struct {
		Author string `json:"author,omitempty"`
	}{author}
	return c.commentWrite(ctx, http.MethodDelete, commentPath(id), payload)
}

// Vote sets user's vote on comment id to VoteUp, VoteDown or VoteNone and
// returns the comment with its new counts. Voting the same way twice
// changes nothing.
func (c *Client) Vote(ctx context.Context, id, user, vote string) (Comment, error) {
	payload := struct {
		User string `json:"user,omitempty"`
		Vote string `json:"vote"`
	}{user, vote}
	return c.commentWrite(ctx, http.MethodPost, commentPath(id)+"/votes", payload)
}

// Like sets whether user likes comment id and returns the comment with its
// new counts.
func (c *Client) Like(ctx context.Context, id, user string, like bool) (Comment, error) {
	payload := struct {
		User string `json:"user,omitempty"`
		Like bool   `json:"like"`
	}{user, like}
	return c.commentWrite(ctx, http.MethodPost, commentPath(id)+"/likes", payload)
}

// ListComments reads one page of the top-level comments of thread. Follow
// NextCursor, with the same Sort, for the next page; a cursor works on any
// node, and a comment whose position did not change meanwhile is neither
// repeated nor skipped.
func (c *Client) ListComments(ctx context.Context, thread string, opts ListOptions) (
	CommentPage, error) {
	if thread == "" {
		return CommentPage{}, errors.New("client: empty thread")
	}
	return c.listPage(ctx, threadPath(thread)+"/comments", opts)
}

// ListReplies reads one page of the direct replies of comment id, as
// ListComments does for a thread.
func (c *Client) ListReplies(ctx context.Context, id string, opts ListOptions) (CommentPage,
	error) {
	if id == "" {
		return CommentPage{}, errors.New("client: empty comment id")
	}
	return c.listPage(ctx, commentPath(id)+"/replies", opts)
}

func (c *Client) listPage(ctx context.Context, path string, opts ListOptions) (CommentPage,
	error) {
	var page CommentPage
	info, err := c.Do(ctx, http.MethodGet, path, nil, &page, opts.requestOptions())
	if err != nil {
		return CommentPage{}, err
	}
	page.Node = info.Node
	if page.Index == 0 {
		page.Index = info.Index
	}
	return page, nil
}

// commentWrite sends a write whose reply is a comment.
func (c *Client) commentWrite(ctx context.Context, method, path string, body any) (Comment,
	error) {
	var out Comment
	info, err := c.Do(ctx, method, path, body, &out, RequestOptions{})
	if err != nil {
		return Comment{}, err
	}
	out.Node = info.Node
	return out, nil
}

// threadPath returns the path of a thread. The names "." and ".." are
// escaped by hand: url.PathEscape leaves them, and the server's router
// would resolve them as path steps.
func threadPath(thread string) string {
	escaped := url.PathEscape(thread)
	switch thread {
	case ".":
		escaped = "%2E"
	case "..":
		escaped = "%2E%2E"
	}
	return "/v1/threads/" + escaped
}

// commentPath returns the path of a comment.
func commentPath(id string) string {
	return "/v1/comments/" + url.PathEscape(id)
}
