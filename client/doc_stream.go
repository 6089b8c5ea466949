package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/shoal-db/shoal/fsm/text"
)

// newEventRequest returns the request for a document's event stream on
// the node at base URL addr, resuming after revision from. It names the
// revision both ways the server accepts, Last-Event-ID and ?from=.
func newEventRequest(ctx context.Context, addr, id string, from uint64) (*http.Request, error) {
	rev := strconv.FormatUint(from, 10)
	target := addr + docPath(id, "/events") + "?from=" + rev
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("client: build event request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("Last-Event-ID", rev)
	return req, nil
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id   string
	kind string // the event field; empty means "message"
	data string // the data lines joined with newlines
}

// eventReader parses a text/event-stream body as the HTML standard
// describes it: lines of field: value, events ended by a blank line,
// comments starting with a colon. Lines may be of any length.
type eventReader struct {
	r *bufio.Reader
}

func newEventReader(body io.Reader) *eventReader {
	return &eventReader{r: bufio.NewReaderSize(body, 64<<10)}
}

// next returns the next event with a data field or an id; comments and
// retry hints are skipped. It returns the read's error, io.EOF when the
// stream ends.
func (er *eventReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	hasData := false
	for {
		// A last line without its newline ends no event: drop it.
		line, err := er.r.ReadString('\n')
		if err != nil {
			return sseEvent{}, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")

		if line == "" {
			if hasData || ev.id != "" {
				ev.data = strings.Join(data, "\n")
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment, often a heartbeat
		}

		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.kind = value
		case "data":
			data = append(data, value)
			hasData = true
		}
	}
}

// eventData is the data of one event of a document stream.
type eventData struct {
	Rev    uint64          `json:"rev"`
	Op     json.RawMessage `json:"op"`
	Client string          `json:"client"`
	Seq    uint64          `json:"seq"`
}

// parseEventOp decodes the data of one op event. The revision comes from
// the data, or from the event id when the data leaves it out.
func parseEventOp(ev sseEvent) (DocOp, error) {
	var data eventData
	dec := json.NewDecoder(strings.NewReader(ev.data))
	if err := dec.Decode(&data); err != nil {
		return DocOp{}, fmt.Errorf("bad event data: %w", err)
	}
	if data.Rev == 0 && ev.id != "" {
		rev, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil {
			return DocOp{}, fmt.Errorf("bad event id %q", ev.id)
		}
		data.Rev = rev
	}
	if data.Rev == 0 {
		return DocOp{}, errors.New("event without a revision")
	}
	if len(bytes.TrimSpace(data.Op)) == 0 {
		return DocOp{}, fmt.Errorf("event of revision %d without an op", data.Rev)
	}

	op, err := text.ParseOp(data.Op)
	if err != nil {
		return DocOp{}, fmt.Errorf("event of revision %d: %w", data.Rev, err)
	}
	return DocOp{Rev: data.Rev, Op: op, Client: data.Client, Seq: data.Seq}, nil
}

// parseEventError turns an event of type "error", whose data is an error
// body as replies carry it, into an *APIError; one of code
// history_truncated gets the status a reply of that code has, 410.
func parseEventError(ev sseEvent, addr string) error {
	var wire struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(ev.data), &wire); err != nil || wire.Error == nil {
		return fmt.Errorf("client: event stream from %s: bad error event %q", addr, ev.data)
	}
	status := http.StatusInternalServerError
	if wire.Error.Code == text.CodeHistoryTruncated {
		status = http.StatusGone
	}
	return &APIError{Status: status, Code: wire.Error.Code, Message: wire.Error.Message,
		Addr: addr}
}
