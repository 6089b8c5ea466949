package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/fsm/text"
)

// The document workload. Editors insert markers no other edit uses
// ("[3.17]" is editor 3's 17th edit) into one document through every node:
// each reads the document from some node (a local read: any revision
// will do), inserts its marker at a random place of that revision's text
// and submits the op against that revision, with its (client, seq) pair
// and an idempotency key. Once the cluster is whole again, every edit of
// unknown outcome is sent again unchanged: the state machine answers a
// repeated (client, seq) with the first result, so the resend applies it
// if and only if it had not been applied. Then every node must hold the
// same text, that text must be what its op log rebuilds (what a client
// following the deltas holds), and every acknowledged marker must be in
// it exactly once.

const chaosDoc = "chaos-doc"

// docEdit is one edit as its editor saw it.
type docEdit struct {
	client string
	seq    uint64
	rev    uint64
	op     json.RawMessage
	marker string
	acked  bool
	err    string
}

// docWorkload drives concurrent editors of one document.
type docWorkload struct {
	addrs   []string
	editors int
	seed    uint64

	mu    sync.Mutex
	edits []docEdit
}

// docReply is GET /v1/docs/{id}.
type docReply struct {
	Text string `json:"text"`
	Rev  uint64 `json:"rev"`
}

// setup creates the document. It returns errNoDocs when the binary has
// no documents endpoints.
func (w *docWorkload) setup(ctx context.Context) error {
	cl, err := newChaosClient(w.addrs, 0)
	if err != nil {
		return err
	}
	first := docEdit{client: "setup", seq: 1, op: json.RawMessage(`["chaos "]`)}
	err = w.send(ctx, cl, first)
	if noRoute(err) {
		return errNoDocs
	}
	return err
}

// noRoute reports whether err is a node's answer that it has no such
// endpoint (a binary older than the workload).
func noRoute(err error) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && (apiErr.Status == http.StatusMethodNotAllowed ||
		apiErr.Status == http.StatusNotFound && strings.HasPrefix(apiErr.Message, "no route"))
}

// errNoDocs means the nodes have no documents API.
var errNoDocs = errors.New("cluster: the nodes do not serve the documents API")

func (w *docWorkload) send(ctx context.Context, cl *client.Client, e docEdit) error {
	body := map[string]any{"rev": e.rev, "client": e.client, "seq": e.seq, "op": e.op}
	_, err := cl.Do(ctx, http.MethodPost, "/v1/docs/"+chaosDoc+"/ops", body, nil,
		client.RequestOptions{IdempotencyKey: "chaos-doc-" + e.client + "-" +
			strconv.FormatUint(e.seq, 10)})
	return err
}

// run drives the editors until ctx ends.
func (w *docWorkload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < w.editors; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runEditor(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *docWorkload) runEditor(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(w.seed, 2000+uint64(id)))
	cl, err := newChaosClient(w.addrs, id)
	if err != nil {
		return
	}
	var local []docEdit
	for seq := uint64(1); ctx.Err() == nil; {
		opCtx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		var doc docReply
		_, err := cl.Do(opCtx, http.MethodGet, "/v1/docs/"+chaosDoc, nil, &doc,
			client.RequestOptions{})
		if err != nil {
			cancel()
			continue // a read changed nothing; try again
		}
		e := docEdit{client: "editor-" + strconv.Itoa(id), seq: seq, rev: doc.Rev,
			marker: fmt.Sprintf("[%d.%d]", id, seq)}
		e.op = insertOp([]rune(doc.Text), rng, e.marker)
		err = w.send(opCtx, cl, e)
		cancel()
		e.acked = err == nil
		if err != nil {
			e.err = err.Error()
		}
		local = append(local, e)
		seq++
	}
	w.mu.Lock()
	w.edits = append(w.edits, local...)
	w.mu.Unlock()
}

// insertOp returns the op that inserts s at a random place of doc that
// is not inside another marker.
func insertOp(doc []rune, rng *rand.Rand, s string) json.RawMessage {
	var places []int
	inside := false
	for i, r := range doc {
		if !inside {
			places = append(places, i)
		}
		switch r {
		case '[':
			inside = true
		case ']':
			inside = false
		}
	}
	n := len(doc)
	places = append(places, n)
	at := places[rng.IntN(len(places))]
	var parts []any
	if at > 0 {
		parts = append(parts, at)
	}
	parts = append(parts, s)
	if n-at > 0 {
		parts = append(parts, n-at)
	}
	raw, _ := json.Marshal(parts)
	return raw
}

// settle resends every edit of unknown outcome unchanged until the cluster
// answers it; an edit it now refuses had never been applied.
func (w *docWorkload) settle(ctx context.Context) (resent int, err error) {
	cl, err := newChaosClient(w.addrs, 0)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.edits {
		e := &w.edits[i]
		if e.acked {
			continue
		}
		resent++
		for {
			err := w.send(ctx, cl, *e)
			var apiErr *client.APIError
			if err == nil {
				e.acked = true
				break
			}
			if errors.As(err, &apiErr) && !apiErr.Temporary() {
				break // refused now, so never applied before either
			}
			if ctx.Err() != nil {
				return resent, fmt.Errorf("edit %s/%d could not be settled: %v", e.client,
					e.seq, err)
			}
		}
	}
	return resent, nil
}

// check compares every node's document with its op log and with the
// acknowledged edits.
func (w *docWorkload) check(ctx context.Context) (edits int, anomalies []string) {
	w.mu.Lock()
	all := append([]docEdit(nil), w.edits...)
	w.mu.Unlock()
	cl, err := newChaosClient(w.addrs, 0)
	if err != nil {
		return len(all), []string{err.Error()}
	}

	var first string
	for i, addr := range w.addrs {
		strong := url.Values{"consistency": {"strong"}}
		var doc docReply
		_, err := cl.Do(ctx, http.MethodGet, "/v1/docs/"+chaosDoc, nil, &doc,
			client.RequestOptions{Node: addr, Query: strong})
		if err != nil {
			anomalies = append(anomalies, fmt.Sprintf("read the document on %s: %v", addr, err))
			continue
		}
		if i == 0 {
			first = doc.Text
		} else if doc.Text != first {
			anomalies = append(anomalies, fmt.Sprintf("the document on %s differs from the "+
				"one on %s", addr, w.addrs[0]))
		}
		rebuilt, err := rebuildDoc(ctx, cl, addr, doc.Rev)
		switch {
		case err != nil:
			anomalies = append(anomalies, fmt.Sprintf("rebuild from the op log of %s: %v",
				addr, err))
		case rebuilt != doc.Text:
			anomalies = append(anomalies, fmt.Sprintf("on %s the op log up to rev %d does "+
				"not rebuild the document", addr, doc.Rev))
		}
	}
	for _, e := range all {
		n := strings.Count(first, e.marker)
		switch {
		case e.acked && n != 1:
			anomalies = append(anomalies, fmt.Sprintf("acknowledged edit %s/%d is in the "+
				"document %d times", e.client, e.seq, n))
		case !e.acked && n != 0:
			anomalies = append(anomalies, fmt.Sprintf("edit %s/%d, refused on resend, is "+
				"in the document %d times", e.client, e.seq, n))
		}
	}
	return len(all), anomalies
}

// rebuildDoc replays a node's op log from revision 0 to rev, as a client
// following the deltas would.
func rebuildDoc(ctx context.Context, cl *client.Client, addr string, rev uint64) (string,
	error) {
	doc := ""
	for from := uint64(0); from < rev; {
		var page struct {
			Ops []struct {
				Rev uint64          `json:"rev"`
				Op  json.RawMessage `json:"op"`
			} `json:"ops"`
		}
		q := url.Values{"from": {strconv.FormatUint(from, 10)}, "limit": {"10000"}}
		_, err := cl.Do(ctx, http.MethodGet, "/v1/docs/"+chaosDoc+"/ops", nil, &page,
			client.RequestOptions{Node: addr, Query: q})
		if err != nil {
			return "", err
		}
		if len(page.Ops) == 0 {
			return "", fmt.Errorf("no ops after rev %d", from)
		}
		for _, entry := range page.Ops {
			if entry.Rev <= from || entry.Rev > rev {
				continue
			}
			edit, err := text.ParseEdit(entry.Op)
			if err != nil {
				return "", fmt.Errorf("rev %d: %w", entry.Rev, err)
			}
			op, err := edit.Op(len([]rune(doc)))
			if err != nil {
				return "", fmt.Errorf("rev %d: %w", entry.Rev, err)
			}
			if doc, err = text.Apply(doc, op); err != nil {
				return "", fmt.Errorf("rev %d: %w", entry.Rev, err)
			}
			from = entry.Rev
		}
	}
	return doc, nil
}
