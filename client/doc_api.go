package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/shoal-db/shoal/fsm/text"
)

// DocSubmit is the body of POST /v1/docs/{id}/ops: Op was made against
// revision Rev of the document, and (Client, Seq) names it so that a
// resend is answered with the first result instead of applying twice.
type DocSubmit struct {
	// Rev is the revision the op was made against.
	Rev uint64 `json:"rev"`
	// Client identifies the author; it must be unique per editing session.
	Client string `json:"client"`
	// Seq numbers the author's ops, from 1.
	Seq uint64 `json:"seq"`
	// Op is the edit, whose base length is the length of revision Rev.
	Op text.Op `json:"op"`
}

// DocSubmitResult is the reply to a submit: the op as the server applied
// it, after transforming it against every op committed after its Rev.
type DocSubmitResult struct {
	// Rev is the revision the op produced.
	Rev uint64 `json:"rev"`
	// Op is the op as applied.
	Op text.Op `json:"op"`
	// Index is the Raft index of the write; a read with min_index = Index
	// on any node reflects it.
	Index uint64 `json:"index"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// Document is a document's text at one revision, as one node holds it.
type Document struct {
	// ID is the document id.
	ID string `json:"id"`
	// Text is the whole text.
	Text string `json:"text"`
	// Rev is the number of ops applied to produce Text.
	Rev uint64 `json:"rev"`
	// Index is the applied Raft index the answer reflects.
	Index uint64 `json:"index"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// DocOp is one committed op of a document's log, as GET .../ops lists it
// and as the event stream carries it (the stream leaves out Seq and Time).
type DocOp struct {
	// Rev is the revision the op produced: the first op has Rev 1.
	Rev uint64 `json:"rev"`
	// Op is the op as applied to revision Rev-1.
	Op text.Op `json:"op"`
	// Client is the author's client id.
	Client string `json:"client"`
	// Seq is the author's sequence number; zero when unknown.
	Seq uint64 `json:"seq,omitempty"`
	// Time is the leader's clock when the op was committed; zero when
	// unknown.
	Time time.Time `json:"time,omitzero"`
}

// DocOpList is a page of a document's op log.
type DocOpList struct {
	// Ops are the ops after the requested revision, in order.
	Ops []DocOp `json:"ops"`
	// Rev is the document's current revision on the answering node.
	Rev uint64 `json:"rev"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// docPath returns the path of a document, with an optional suffix such as
// "/ops".
func docPath(id, suffix string) string {
	return "/v1/docs/" + url.PathEscape(id) + suffix
}

// SubmitDocOp sends one op of a document. The request carries an
// idempotency key derived from (document, client, seq), and the server
// also deduplicates on (client, seq), so resending the same submit after a
// failure never applies it twice. A rev above the server's current
// revision is an *APIError with status 409; an op that does not fit the
// document is a 4xx *APIError. opts.Node pins the request to one node.
func (c *Client) SubmitDocOp(
	ctx context.Context, id string, s DocSubmit, opts RequestOptions,
) (DocSubmitResult, error) {
	if id == "" {
		return DocSubmitResult{}, errors.New("client: empty document id")
	}
	if opts.IdempotencyKey == "" {
		opts.IdempotencyKey = docIdempotencyKey(id, s.Client, s.Seq)
	}

	var res DocSubmitResult
	info, err := c.Do(ctx, http.MethodPost, docPath(id, "/ops"), s, &res, opts)
	if err != nil {
		return DocSubmitResult{}, err
	}
	res.Node = info.Node
	if res.Index == 0 {
		res.Index = info.Index
	}
	return res, nil
}

// GetDoc reads a document's text and revision. A document without ops is
// an *APIError with status 404 (see IsNotFound).
func (c *Client) GetDoc(ctx context.Context, id string, opts ReadOptions) (Document, error) {
	if id == "" {
		return Document{}, errors.New("client: empty document id")
	}

	var doc Document
	info, err := c.Do(ctx, http.MethodGet, docPath(id, ""), nil, &doc, opts.requestOptions())
	if err != nil {
		return Document{}, err
	}
	doc.Node = info.Node
	if doc.Index == 0 {
		doc.Index = info.Index
	}
	return doc, nil
}

// DocOps reads up to limit ops of a document's log after revision from
// (limit <= 0 leaves the page size to the server). If the server no
// longer keeps the ops after from, the error is an *APIError with status
// 410 (see IsHistoryTruncated): read the document with GetDoc and go on
// from its revision.
func (c *Client) DocOps(
	ctx context.Context, id string, from uint64, limit int, opts ReadOptions,
) (DocOpList, error) {
	if id == "" {
		return DocOpList{}, errors.New("client: empty document id")
	}

	reqOpts := opts.requestOptions()
	reqOpts.Query.Set("from", strconv.FormatUint(from, 10))
	if limit > 0 {
		reqOpts.Query.Set("limit", strconv.Itoa(limit))
	}
	var list DocOpList
	info, err := c.Do(ctx, http.MethodGet, docPath(id, "/ops"), nil, &list, reqOpts)
	if err != nil {
		return DocOpList{}, err
	}
	list.Node = info.Node
	return list, nil
}

// maxIdempotencyKey is the longest key the server accepts.
const maxIdempotencyKey = 128

// docIdempotencyKey names one submit of one client to one document. Long
// document or client ids are hashed so the key stays within the server's
// limit.
func docIdempotencyKey(id, clientID string, seq uint64) string {
	key := "doc:" + id + ":" + clientID + ":" + strconv.FormatUint(seq, 10)
	if len(key) <= maxIdempotencyKey {
		return key
	}
	sum := sha256.Sum256([]byte(id + "\x00" + clientID))
	return "doc:" + hex.EncodeToString(sum[:]) + ":" + strconv.FormatUint(seq, 10)
}

// IsHistoryTruncated reports whether err is (or wraps) the answer of a
// node whose op log no longer holds the ops after the revision asked for:
// a 410 reply or an error event of a document stream, both with code
// history_truncated.
func IsHistoryTruncated(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Code == text.CodeHistoryTruncated
}
