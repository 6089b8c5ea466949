package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/internal/addr"
)

// checkReply fails unless rec is a 2xx, or a 4xx in the API's error shape
// that left the applied index and the state digest as they were.
func checkReply(t *testing.T, in *inputNode, status int, body []byte, before [2]any,
	what string) bool {
	t.Helper()
	switch {
	case status >= 500:
		t.Fatalf("%s: server error %d: %s", what, status, body)
	case status >= 400:
		var reply struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &reply); err != nil || reply.Error.Code == "" {
			t.Fatalf("%s: %d without a JSON error body: %q", what, status, body)
		}
		index, digest := in.state(t)
		if index != before[0] || digest != before[1] {
			t.Fatalf("%s: rejected with %d but the state changed", what, status)
		}
		return false
	case status < 200 || status > 299:
		t.Fatalf("%s: unexpected status %d", what, status)
	}
	return true
}

func stateOf(t *testing.T, in *inputNode) [2]any {
	index, digest := in.state(t)
	return [2]any{index, digest}
}

// FuzzPutStock sends arbitrary symbols, bodies and idempotency keys to
// PUT /v1/stocks/{symbol} on a real node: never a 5xx or a panic; a
// rejection is a 4xx that changes nothing; an acceptance stores the
// canonical form of the price it was sent. Seeds are in
// testdata/fuzz/FuzzPutStock.
func FuzzPutStock(f *testing.F) {
	f.Add("AAPL", []byte(`{"price": "116.03"}`), "")
	f.Add("BRK.B", []byte(`{"price": 574.0, "time": "2020-11-25T00:00:00Z"}`), "key-1")
	f.Add("TSLA", []byte(`{"price": "1", "time": "2020-11-25T00:00:00.123456789+01:00"}`), "")
	f.Add("aapl", []byte(`{"price": "1"}`), "")
	f.Add("AAPL", []byte(`{"price": "1", "volume": 3}`), "")
	f.Add("AAPL", []byte(`{"price": 1e400}`), "")
	f.Add("AAPL", []byte("{\"price\": \"1\xff\"}"), "")
	f.Add("AAPL", []byte(`{"price": "1", "time": "0001-01-01T00:00:00Z"}`), "")
	f.Add("X", []byte(`{"price": "0.00000001"}`), "k")
	in := startInputNode(f)

	f.Fuzz(func(t *testing.T, symbol string, body []byte, key string) {
		req, err := http.NewRequest(http.MethodPut,
			"http://shoal/v1/stocks/"+url.PathEscape(symbol), bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request URL")
		}
		if key != "" {
			if strings.ContainsAny(key, "\r\n\x00") || !isToken(key) {
				t.Skip("not a header value")
			}
			req.Header.Set("Idempotency-Key", key)
		}
		before := stateOf(t, in)
		rec := in.serve(req)
		if !checkReply(t, in, rec.Code, rec.Body.Bytes(), before, "PUT "+symbol) {
			return
		}

		// Accepted: the reply and the stored quote carry the canonical
		// price of the body, unless an idempotency key replayed an
		// earlier write or an explicit older time left the newer quote.
		var sent struct {
			Price json.RawMessage `json:"price"`
			Time  *string         `json:"time"`
		}
		if err := json.Unmarshal(body, &sent); err != nil {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		want, err := stocks.ParsePrice(sent.Price)
		if err != nil {
			t.Fatalf("accepted price %s that ParsePrice rejects: %v", sent.Price, err)
		}
		var got stocks.Quote
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("reply %q is not a quote", rec.Body)
		}
		if key == "" && got.Symbol != symbol {
			t.Fatalf("reply %q does not describe %s", rec.Body, symbol)
		}
		if key == "" && sent.Time == nil && got.Price != want {
			t.Fatalf("sent %s, the reply holds %s", want, got.Price)
		}
	})
}

// isToken reports whether a header value is printable ASCII.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// FuzzClusterBodies sends arbitrary bodies to the admin endpoints that
// take one, POST /v1/cluster/nodes and POST /v1/cluster/leader, on a real
// one-node cluster: never a 5xx or a panic, and a rejection changes
// nothing. A join body naming a well-formed new member is skipped, not
// sent: adding a voter that does not exist would (correctly) leave the
// one-node cluster without a quorum. Seeds are in
// testdata/fuzz/FuzzClusterBodies.
func FuzzClusterBodies(f *testing.F) {
	f.Add(false, []byte(`{"id": "n2", "http": "127.0.0.1:8082", "raft": "127.0.0.1:9082"}`))
	f.Add(false, []byte(`{"id": "n 2", "http": "127.0.0.1:8082", "raft": "h"}`))
	f.Add(false, []byte(`{"id": "n2", "http": "https://h:1", "raft": "h:2", "x": 1}`))
	f.Add(false, []byte(`{"id": "n1"}`))
	f.Add(true, []byte(`{"id": "n9"}`))
	f.Add(true, []byte(`{"id": 9}`))
	f.Add(true, []byte(`{"name": "n2"}`))
	f.Add(true, []byte("{\"id\": \"\xff\"}"))
	in := startInputNode(f)

	f.Fuzz(func(t *testing.T, leader bool, body []byte) {
		path := "/v1/cluster/nodes"
		if leader {
			path = "/v1/cluster/leader"
		} else if wouldJoin(body) {
			t.Skip("a well-formed join of a node that does not exist")
		}
		req, _ := http.NewRequest(http.MethodPost, "http://shoal"+path, bytes.NewReader(body))
		before := stateOf(t, in)
		rec := in.serve(req)
		if checkReply(t, in, rec.Code, rec.Body.Bytes(), before, "POST "+path) && !leader {
			var m fsm.Member
			_ = json.Unmarshal(body, &m)
			if m.ID != "n1" {
				t.Fatalf("joined %q without being asked to skip it", body)
			}
		}
	})
}

// wouldJoin reports whether a body names a valid member other than the
// node itself, which the join handler would add as a voter.
func wouldJoin(body []byte) bool {
	var m fsm.Member
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if dec.Decode(&m) != nil || m.ID == "n1" || m.ID == "" {
		return false
	}
	_, errHTTP := addr.Normalize(m.HTTP)
	_, errRaft := addr.Normalize(m.Raft)
	return errHTTP == nil && errRaft == nil
}
