package clienttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-db/shoal/fsm/text"
)

// DocCluster is an in-memory stand-in for the document API of a shoal
// cluster, built on the OT engine of fsm/text: n fake nodes over real HTTP
// share one store of documents, each with its text, revision and op log.
// It speaks POST /v1/docs/{id}/ops, GET /v1/docs/{id}, GET .../ops and the
// server-sent events of GET .../events as the issue describes them,
// deduplicates submits on (client, seq), and can inject the failures a
// real cluster has: dropped replies, refused submits, nodes that are down,
// streams that break, lag or skip revisions. Its methods are safe for
// concurrent use.
type DocCluster struct {
	nodes []*httptest.Server

	mu       sync.Mutex
	index    uint64 // stands in for the Raft index
	docs     map[string]*fakeDoc
	down     []bool
	held     []bool          // streams of the node deliver nothing
	cut      []chan struct{} // closed to break the node's open streams
	changed  chan struct{}   // closed and replaced on every commit or setting
	drop     int             // submits to apply whose reply is then lost
	refuse   int             // submits to answer 503 without applying
	hideNext int             // commits the streams skip
	hook     func(node int, w http.ResponseWriter, r *http.Request) bool

	submits, duplicates int
}

// fakeDoc is one document of a DocCluster.
type fakeDoc struct {
	text    *text.Rope
	log     []fakeOp
	lens    []int // lens[r] is the length in code points at revision r
	replies map[string]docReply
	hidden  map[uint64]bool // revisions the streams skip
}

type fakeOp struct {
	Rev    uint64    `json:"rev"`
	Op     text.Op   `json:"op"`
	Client string    `json:"client"`
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
}

type docReply struct {
	Rev   uint64  `json:"rev"`
	Op    text.Op `json:"op"`
	Index uint64  `json:"index"`
}

// NewDocCluster starts n fake nodes with ids n1, n2, ... on local ports.
// Call Close when done.
func NewDocCluster(n int) *DocCluster {
	c := &DocCluster{
		docs:    make(map[string]*fakeDoc),
		down:    make([]bool, n),
		held:    make([]bool, n),
		cut:     make([]chan struct{}, n),
		changed: make(chan struct{}),
	}
	for i := range n {
		c.cut[i] = make(chan struct{})
		c.nodes = append(c.nodes, httptest.NewServer(http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) { c.serve(i, w, r) })))
	}
	return c
}

// Close breaks every stream and stops every node.
func (c *DocCluster) Close() {
	c.mu.Lock()
	for i := range c.cut {
		close(c.cut[i])
		c.cut[i] = make(chan struct{})
	}
	c.mu.Unlock()
	for _, node := range c.nodes {
		node.CloseClientConnections()
		node.Close()
	}
}

// Addrs returns the nodes' base URLs.
func (c *DocCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, node := range c.nodes {
		addrs[i] = node.URL
	}
	return addrs
}

// SetHook installs fn in front of every request: when it returns true it
// has answered the request itself.
func (c *DocCluster) SetHook(fn func(node int, w http.ResponseWriter, r *http.Request) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = fn
}

// SetDown takes node (0-based) down or brings it back: a down node drops
// every request without a reply, and its open streams break.
func (c *DocCluster) SetDown(node int, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down[node] = down
	if down {
		c.cutLocked(node)
	}
	c.notifyLocked()
}

// CutStreams breaks the event streams open on node; clients reconnect.
func (c *DocCluster) CutStreams(node int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutLocked(node)
}

// HoldStreams makes the streams of node deliver nothing until released,
// like a node that lags; they stay open.
func (c *DocCluster) HoldStreams(node int, hold bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held[node] = hold
	c.notifyLocked()
}

// DropReplies makes the next n submits apply and then lose their reply
// (the connection breaks), as when a node dies after committing.
func (c *DocCluster) DropReplies(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop = n
}

// RefuseSubmits makes the next n submits fail with 503 without applying.
func (c *DocCluster) RefuseSubmits(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = n
}

// HideFromStreams makes the streams skip the next n committed ops; they
// stay in the op log, where a client finds them by their revision.
func (c *DocCluster) HideFromStreams(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hideNext = n
}

// Text returns a document's text and revision.
func (c *DocCluster) Text(id string) (string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.docs[id]
	if d == nil {
		return "", 0
	}
	return d.text.String(), uint64(len(d.log))
}

// Submits returns the number of submits applied and of duplicates that
// were answered with their first result.
func (c *DocCluster) Submits() (applied, duplicates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.submits, c.duplicates
}

func (c *DocCluster) cutLocked(node int) {
	close(c.cut[node])
	c.cut[node] = make(chan struct{})
}

func (c *DocCluster) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *DocCluster) serve(node int, w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	hook, down := c.hook, c.down[node]
	c.mu.Unlock()
	if hook != nil && hook(node, w, r) {
		return
	}
	if down {
		panic(http.ErrAbortHandler) // the client sees a broken connection
	}

	w.Header().Set("X-Shoal-Node", fmt.Sprintf("n%d", node+1))
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/docs/")
	if !ok || rest == "" {
		WriteError(w, http.StatusNotFound, "not_found", "no route "+r.URL.Path)
		return
	}
	id, suffix, _ := strings.Cut(rest, "/")
	switch {
	case r.Method == http.MethodPost && suffix == "ops":
		c.submit(w, r, id)
	case r.Method == http.MethodGet && suffix == "":
		c.get(w, id)
	case r.Method == http.MethodGet && suffix == "ops":
		c.ops(w, r, id)
	case r.Method == http.MethodGet && suffix == "events":
		c.events(node, w, r, id)
	default:
		WriteError(w, http.StatusNotFound, "not_found", "no route "+r.URL.Path)
	}
}

func (c *DocCluster) submit(w http.ResponseWriter, r *http.Request, id string) {
	var body struct {
		Rev    uint64          `json:"rev"`
		Client string          `json:"client"`
		Seq    uint64          `json:"seq"`
		Op     json.RawMessage `json:"op"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	edit, err := text.ParseEdit(body.Op)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "invalid_op", err.Error())
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse > 0 {
		c.refuse--
		w.Header().Set("Retry-After", "0")
		WriteError(w, http.StatusServiceUnavailable, "no_leader", "refused by the test")
		return
	}
	d := c.docs[id]
	if d == nil {
		d = &fakeDoc{text: text.NewRope(""), lens: []int{0},
			replies: make(map[string]docReply), hidden: make(map[uint64]bool)}
		c.docs[id] = d
	}

	// A repeated (client, seq) gets the first result.
	key := body.Client + "\x00" + strconv.FormatUint(body.Seq, 10)
	if reply, ok := d.replies[key]; ok {
		c.duplicates++
		c.replyLocked(w, reply)
		return
	}
	if body.Rev > uint64(len(d.log)) {
		WriteError(w, http.StatusConflict, "rev_ahead", fmt.Sprintf(
			"rev %d is ahead of the document's revision %d", body.Rev, len(d.log)))
		return
	}

	// Transform the op past everything committed since its revision.
	op, err := edit.Op(d.lens[body.Rev])
	if err != nil {
		WriteError(w, http.StatusUnprocessableEntity, "length_mismatch", err.Error())
		return
	}
	for _, applied := range d.log[body.Rev:] {
		if op, _, err = text.Transform(op, applied.Op); err != nil {
			WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
	}
	if err := d.text.Apply(op); err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}

	c.index++
	c.submits++
	rev := uint64(len(d.log)) + 1
	d.log = append(d.log, fakeOp{Rev: rev, Op: op, Client: body.Client, Seq: body.Seq,
		Time: time.Now().UTC()})
	d.lens = append(d.lens, d.text.Len())
	if c.hideNext > 0 {
		c.hideNext--
		d.hidden[rev] = true
	}
	reply := docReply{Rev: rev, Op: op, Index: c.index}
	d.replies[key] = reply
	c.notifyLocked()

	if c.drop > 0 {
		c.drop--
		panic(http.ErrAbortHandler)
	}
	c.replyLocked(w, reply)
}

func (c *DocCluster) get(w http.ResponseWriter, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.docs[id]
	if d == nil {
		WriteError(w, http.StatusNotFound, "not_found", "no document "+id)
		return
	}
	c.replyLocked(w, map[string]any{
		"id": id, "text": d.text.String(), "rev": len(d.log), "index": c.index,
	})
}

func (c *DocCluster) ops(w http.ResponseWriter, r *http.Request, id string) {
	from, err := parseRev(r.URL.Query().Get("from"))
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	limit := 1000
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			WriteError(w, http.StatusBadRequest, "bad_request", "bad limit")
			return
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	list := struct {
		Ops []fakeOp `json:"ops"`
		Rev uint64   `json:"rev"`
	}{Ops: []fakeOp{}}
	if d := c.docs[id]; d != nil {
		list.Rev = uint64(len(d.log))
		if from < list.Rev {
			list.Ops = d.log[from:min(list.Rev, from+uint64(limit))]
		}
	}
	c.replyLocked(w, list)
}

// events streams a document's ops after the requested revision, then
// every new one, until the client leaves or the test breaks the stream.
func (c *DocCluster) events(node int, w http.ResponseWriter, r *http.Request, id string) {
	fromText := r.URL.Query().Get("from")
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		fromText = last
	}
	from, err := parseRev(fromText)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		WriteError(w, http.StatusInternalServerError, "internal", "no flusher")
		return
	}

	c.mu.Lock()
	cut := c.cut[node]
	c.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, ": stream\n\n")
	flusher.Flush()

	for {
		// Collect what is new, unless the node holds its streams.
		c.mu.Lock()
		var batch []fakeOp
		var hidden map[uint64]bool
		if d := c.docs[id]; d != nil && !c.held[node] && from < uint64(len(d.log)) {
			batch = d.log[from:]
			hidden = d.hidden
			from = uint64(len(d.log))
		}
		var payloads [][]byte
		for _, op := range batch {
			if hidden[op.Rev] {
				continue
			}
			data, _ := json.Marshal(map[string]any{
				"rev": op.Rev, "op": op.Op, "client": op.Client,
			})
			payloads = append(payloads, fmt.Appendf(nil, "id: %d\ndata: %s\n\n", op.Rev, data))
		}
		changed := c.changed
		c.mu.Unlock()

		for _, p := range payloads {
			if _, err := w.Write(p); err != nil {
				return
			}
		}
		if len(payloads) > 0 {
			flusher.Flush()
		}

		select {
		case <-r.Context().Done():
			return
		case <-cut:
			panic(http.ErrAbortHandler)
		case <-changed:
		}
	}
}

// replyLocked sends a 200 JSON reply; the caller holds c.mu.
func (c *DocCluster) replyLocked(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Shoal-Index", strconv.FormatUint(c.index, 10))
	_ = json.NewEncoder(w).Encode(body)
}

// parseRev reads a revision; empty means 0.
func parseRev(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	rev, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("bad revision " + strconv.Quote(s))
	}
	return rev, nil
}
