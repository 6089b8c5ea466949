package api

// The document endpoints (the rules are package text's):
//
//	POST /v1/docs/{id}/ops    {"rev", "client", "seq", "op"} → 200
//	                          {"rev", "op" as applied, "index"}; 400 for a
//	                          bad body, id or op (an op that does not fit
//	                          the document at rev says the length it
//	                          expected), 409 for a rev ahead of the
//	                          document or more than text.MaxBehind behind
//	                          it, 413 for an op over text.MaxEditBytes
//	GET  /v1/docs/{id}        {"id", "text", "rev", "index"}; 404 without
//	                          ops; consistency and min_index apply
//	GET  /v1/docs/{id}/ops    ?from=REV (default 0) &limit=N (1 to 10000,
//	                          default 1000; outside that a 400) →
//	                          {"ops": [{"rev", "op", "client", "seq",
//	                          "time"}...], "rev": current}, the ops after
//	                          REV in order; none if REV is at or past the
//	                          current revision; 404 without ops; 410
//	                          history_truncated if the log no longer
//	                          holds the ops after REV (see text's
//	                          Retention; the message names the revision
//	                          the log starts after): read the document
//	                          and follow it from its revision instead
//	GET  /v1/docs/{id}/events server-sent events, see docEvents
//
// A document id is 1 to 256 bytes of UTF-8 without '/' or control
// characters; in a URL it is one path segment, escaped as usual.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/text"
	"github.com/shoal-db/shoal/storage"
)

// Paging of GET /v1/docs/{id}/ops.
const (
	defaultOpsLimit = 1000
	maxOpsLimit     = 10000
)

// Tuning of the event streams of GET /v1/docs/{id}/events. Variables so
// that tests can shorten them.
var (
	// sseHeartbeat is how often an idle stream gets a comment line, which
	// keeps proxies from closing it and lets the server notice a client
	// that went away.
	sseHeartbeat = 15 * time.Second

	// sseWriteTimeout bounds one write to a stream's client; a client
	// that does not read for this long is cut off.
	sseWriteTimeout = 30 * time.Second

	// sseBuffer is the events a stream's subscription holds before the
	// node drops it; the stream then catches up from the op log.
	sseBuffer = 512

	// ssePage is the most ops read from the log under one storage
	// snapshot while a stream catches up.
	ssePage = 1000
)

// submitDocBody is the body of POST /v1/docs/{id}/ops. Pointers tell a
// missing field from a zero one.
type submitDocBody struct {
	Rev    *uint64         `json:"rev"`
	Client *string         `json:"client"`
	Seq    *uint64         `json:"seq"`
	Op     json.RawMessage `json:"op"`
}

// submitDocReply is the reply to POST /v1/docs/{id}/ops.
type submitDocReply struct {
	Rev   uint64          `json:"rev"`
	Op    json.RawMessage `json:"op"`
	Index uint64          `json:"index"`
}

func (s *Server) submitDocOp(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := text.ValidDocID(id); err != nil {
		writeError(w, err)
		return
	}
	var body submitDocBody
	if err := s.decodeBody(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case body.Rev == nil:
		writeError(w, badRequest(`"rev" is required: the revision the op was made against`))
		return
	case body.Client == nil:
		writeError(w, badRequest(`"client" is required: the id of the editing client`))
		return
	case body.Seq == nil:
		writeError(w, badRequest(`"seq" is required: the client's sequence number, from 1`))
		return
	}
	cmd := text.SubmitCommand{Doc: id, Rev: *body.Rev, Client: *body.Client, Seq: *body.Seq,
		Edit: body.Op}
	if _, err := cmd.Validate(); err != nil {
		writeError(w, err)
		return
	}

	result, err := s.propose(r, cmd.Command())
	if err != nil {
		writeError(w, err)
		return
	}
	var reply submitDocReply
	if err := json.Unmarshal(result.Value, &reply); err != nil {
		writeError(w, err)
		return
	}
	reply.Index = result.Index
	setIndex(w, result.Index)
	writeJSON(w, http.StatusOK, reply)
}

func (s *Server) getDoc(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := text.ValidDocID(id); err != nil {
		writeError(w, err)
		return
	}
	if _, err := s.readBarrier(r); err != nil {
		writeError(w, err)
		return
	}
	snap, index, err := s.node.Snapshot()
	if err != nil {
		writeError(w, err)
		return
	}
	doc, err := text.Get(snap, id)
	snap.Close()
	if err != nil {
		writeError(w, notFound(err, "document %q has no ops", id))
		return
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, struct {
		text.Document
		Index uint64 `json:"index"`
	}{doc, index})
}

func (s *Server) listDocOps(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := text.ValidDocID(id); err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	from, err := parseRev(q.Get("from"), "from")
	if err != nil {
		writeError(w, err)
		return
	}
	limit := defaultOpsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxOpsLimit {
			writeError(w, badRequest("limit %q: want a whole number from 1 to %d",
				truncate(v, 32), maxOpsLimit))
			return
		}
		limit = n
	}
	if _, err := s.readBarrier(r); err != nil {
		writeError(w, err)
		return
	}

	snap, index, err := s.node.Snapshot()
	if err != nil {
		writeError(w, err)
		return
	}
	entries, rev, err := text.Ops(snap, id, from, limit)
	snap.Close()
	if err != nil {
		writeError(w, notFound(err, "document %q has no ops", id))
		return
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, map[string]any{"ops": entries, "rev": rev})
}

// parseRev parses a revision from a query parameter or header; empty is 0.
func parseRev(v, name string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest("%s %q: want a revision, a whole number from 0", name, v)
	}
	return n, nil
}

// streams lets the server end its long-lived responses on shutdown. The
// zero value is ready to use.
type streams struct {
	init    sync.Once
	closing sync.Once
	done    chan struct{}
}

// closed returns a channel that is closed once the streams are to end.
func (st *streams) closed() <-chan struct{} {
	st.init.Do(func() { st.done = make(chan struct{}) })
	return st.done
}

// CloseStreams ends every open server-sent event stream, and refuses new
// ones with 503. Call it when the HTTP server shuts down, for example with
// http.Server.RegisterOnShutdown: Shutdown waits for handlers, and a
// stream's handler runs until its client leaves. Safe to call more than
// once and from any goroutine.
func (s *Server) CloseStreams() {
	s.streams.closed()
	s.streams.closing.Do(func() { close(s.streams.done) })
}

// docEvents serves GET /v1/docs/{id}/events: a server-sent event per op
// committed to the document, with id the op's revision and data
// {"rev", "op", "client"}. The stream starts after the revision in the
// Last-Event-ID header, else the from query parameter, else the
// document's current revision; a document without ops yet is streamed
// from its first op.
//
// No op is skipped or sent twice: the handler subscribes to the node's
// committed events first, then sends the ops after the start revision
// from the op log, then the live events whose revision is above the last
// one sent. If the node drops the subscription (the stream fell too far
// behind) or a revision is missing, it resubscribes and reads the log
// again.
//
// A start revision whose next ops the log no longer holds is answered
// like GET .../ops: 410 with code history_truncated, before the stream
// starts. If the stream falls that far behind once started, it sends one
// event of type "error" whose data is the same JSON error body,
// {"error": {"code": "history_truncated", "message"}}, and ends. Either
// way the client is to read the document's current text and stream from
// its revision.
func (s *Server) docEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := text.ValidDocID(id); err != nil {
		writeError(w, err)
		return
	}
	from, resume, err := streamStart(r)
	if err != nil {
		writeError(w, err)
		return
	}
	select {
	case <-s.streams.closed():
		writeError(w, errorf(http.StatusServiceUnavailable, "shutting_down",
			"the node is shutting down; reconnect to another node"))
		return
	default:
	}
	if _, err := s.readBarrier(r); err != nil {
		writeError(w, err)
		return
	}

	// Subscribe before reading where to start, so nothing committed in
	// between is missed.
	events, cancel := s.node.Subscribe(fsm.DomainText, sseBuffer)
	defer func() { cancel() }()
	if !resume {
		if from, err = s.docHead(id); err != nil {
			writeError(w, err)
			return
		}
	} else if err := text.CheckFrom(s.node.State(), id, from); err != nil {
		writeError(w, err)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	stream := &eventStream{w: w, rc: http.NewResponseController(w), sent: from}
	if err := stream.comment(fmt.Sprintf("document %s after revision %d", id, from)); err != nil {
		return
	}

	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	for {
		if err := s.sendLogged(stream, id); err != nil {
			s.logger.Debug("event stream ended", "doc", id, "err", err)
			return
		}

		// Live events until the subscription ends or skips a revision.
		received := false
	live:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					if !received {
						// Closed before delivering anything: the node is
						// shutting down, not dropping a slow stream.
						return
					}
					s.logger.Debug("event stream fell behind; catching up from the log",
						"doc", id, "rev", stream.sent)
					events, cancel = s.node.Subscribe(fsm.DomainText, sseBuffer)
					break live
				}
				received = true
				if ev.Key != id || ev.Revision <= stream.sent {
					continue
				}
				if ev.Revision != stream.sent+1 {
					break live // the log has what is missing, and this one
				}
				if err := stream.event(ev.Revision, ev.Data, len(events) == 0); err != nil {
					return
				}
			case <-heartbeat.C:
				if err := stream.comment("heartbeat"); err != nil {
					return
				}
			case <-r.Context().Done():
				return
			case <-s.streams.closed():
				return
			}
		}
	}
}

// streamStart returns the revision a stream resumes after, and whether the
// request named one.
//
// Last-Event-ID given twice is a 400; given empty it is ignored, as an
// event source whose last event id was reset to "" may send it so.
func streamStart(r *http.Request) (uint64, bool, error) {
	v, err := singleHeader(r, "Last-Event-ID", true)
	if err != nil {
		return 0, false, err
	}
	if v != "" {
		rev, err := parseRev(v, "Last-Event-ID")
		return rev, true, err
	}
	if v := r.URL.Query().Get("from"); v != "" {
		rev, err := parseRev(v, "from")
		return rev, true, err
	}
	return 0, false, nil
}

// docHead returns a document's current revision on this node, 0 if it has
// no ops.
func (s *Server) docHead(id string) (uint64, error) {
	rev, err := text.Head(s.node.State(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	return rev, err
}

// sendLogged sends the document's ops after the stream's last revision
// from the op log, a page per storage snapshot so that none stays open
// while a client is slow, until the revision the last snapshot reflects.
func (s *Server) sendLogged(stream *eventStream, id string) error {
	for {
		snap, _, err := s.node.Snapshot()
		if err != nil {
			return err
		}
		entries, rev, err := text.Ops(snap, id, stream.sent, ssePage)
		snap.Close()
		var fe *fsm.Error
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil
		case errors.As(err, &fe) && fe.Code == text.CodeHistoryTruncated:
			// Tell the client, which cannot go on from here, and end.
			if err := stream.error(fe); err != nil {
				return err
			}
			return err
		case err != nil:
			return err
		}

		for i, e := range entries {
			last := i == len(entries)-1
			if err := stream.event(e.Rev, text.EventData(e.Rev, e.Op, e.Client), last); err != nil {
				return err
			}
		}
		if stream.sent >= rev || len(entries) == 0 {
			return nil
		}
	}
}

// eventStream writes server-sent events to one client.
type eventStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	sent uint64 // revision of the last op sent
}

// event sends one op event and, if flush is set, flushes it and what was
// buffered before it to the client.
func (es *eventStream) event(rev uint64, data json.RawMessage, flush bool) error {
	if err := es.write(fmt.Sprintf("id: %d\ndata: %s\n\n", rev, data), flush); err != nil {
		return err
	}
	es.sent = rev
	return nil
}

// error sends an event of type "error" with the JSON error body of fe, as
// a reply would carry it, and flushes.
func (es *eventStream) error(fe *fsm.Error) error {
	data, _ := json.Marshal(map[string]any{
		"error": map[string]string{"code": fe.Code, "message": fe.Message},
	})
	return es.write(fmt.Sprintf("event: error\ndata: %s\n\n", data), true)
}

// comment sends a comment line, which clients ignore, and flushes.
func (es *eventStream) comment(text string) error {
	return es.write(": "+text+"\n\n", true)
}

func (es *eventStream) write(chunk string, flush bool) error {
	// Not every ResponseWriter supports deadlines (a test recorder does
	// not); the stream then relies on the request's context alone.
	_ = es.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := es.w.Write([]byte(chunk)); err != nil {
		return err
	}
	if !flush {
		return nil
	}
	return es.rc.Flush()
}
