package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/text"
	"github.com/shoal-db/shoal/node"
	"github.com/shoal-db/shoal/storage"
)

// apiError is an error with the HTTP status and code it is answered with.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, fsm.CodeInvalid, format, args...)
}

// statusOf maps every error a handler can meet to its reply, in one place.
func statusOf(err error) *apiError {
	var ae *apiError
	var fe *fsm.Error
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fe):
		status := map[string]int{
			fsm.CodeInvalid:   http.StatusBadRequest,
			fsm.CodeNotFound:  http.StatusNotFound,
			fsm.CodeForbidden: http.StatusForbidden,
			fsm.CodeConflict:  http.StatusConflict,
			fsm.CodeTooLarge:  http.StatusRequestEntityTooLarge,

			text.CodeHistoryTruncated: http.StatusGone, // ops the log no longer holds
		}[fe.Code]
		if status == 0 {
			status = http.StatusBadRequest
		}
		return &apiError{status: status, code: fe.Code, message: fe.Message}
	case errors.As(err, &tooLarge):
		return errorf(http.StatusRequestEntityTooLarge, fsm.CodeTooLarge,
			"request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, storage.ErrNotFound):
		return errorf(http.StatusNotFound, fsm.CodeNotFound, "not found")
	case errors.Is(err, node.ErrNoLeader):
		return errorf(http.StatusServiceUnavailable, "no_leader",
			"no leader is available (an election may be in progress); retry shortly")
	case errors.Is(err, node.ErrTimeout):
		return errorf(http.StatusServiceUnavailable, "timeout", "%v", err)
	case errors.Is(err, node.ErrUnknownOutcome):
		return errorf(http.StatusServiceUnavailable, "unknown_outcome",
			"leadership changed while the write was in flight; it may or may not have "+
				"been applied: retry with the same Idempotency-Key")
	case errors.Is(err, node.ErrUnknownMember):
		return errorf(http.StatusNotFound, fsm.CodeNotFound, "%v", err)
	}
	return errorf(http.StatusInternalServerError, "internal", "%v", err)
}

// writeError answers with the JSON error body for err.
func writeError(w http.ResponseWriter, err error) {
	ae := statusOf(err)
	if ae.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, ae.status, map[string]any{
		"error": map[string]string{"code": ae.code, "message": ae.message},
	})
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"cannot encode reply"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// setIndex sets the X-Shoal-Index header to the index a reply reflects.
func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
}

// readBody reads the whole request body. It is the one place the API reads
// a body, so its limits hold for every route: a body that does not arrive
// within BodyReadTimeout is a 408, one over MaxBodyBytes a 413 (the
// middleware's MaxBytesReader), and one that is cut short or badly framed
// (a bad chunk, fewer bytes than its Content-Length) a 400. After any of
// these the middleware closes the connection, as it does after every reply
// to a request whose body was not read to its end (closeIfBodyUnread).
// A body whose declared Content-Length is already over MaxBodyBytes is a 413
// before anything is read, so a client that sent Expect: 100-continue gets
// no 100 Continue and need not send the body.
// A body in a content coding other than identity is a 415: the API does not
// decode compressed bodies, and reading one as plain JSON would be wrong.
// Content-Encoding is a list (RFC 9110): its empty elements are ignored, so
// an empty Content-Encoding, like "identity", means no coding.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ce := r.Header.Values("Content-Encoding"); !identityCoding(ce) {
		return nil, errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Encoding %q is not supported; send the body uncompressed",
			truncate(strings.Join(ce, ", "), 64))
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, fsm.CodeTooLarge,
			"request body is larger than %d bytes (Content-Length is %d)",
			s.cfg.MaxBodyBytes, r.ContentLength)
	}

	// Not every ResponseWriter supports deadlines (a test recorder does
	// not); the body is then read without one.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout))
	body, err := io.ReadAll(r.Body)
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
		return body, nil
	}

	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errorf(http.StatusRequestTimeout, "request_timeout",
			"the request body did not arrive within %v", s.cfg.BodyReadTimeout)
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) && r.ContentLength >= 0:
		return nil, badRequest("the request body ended before its Content-Length (%d bytes)",
			r.ContentLength)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, badRequest("the request body ended before its last chunk")
	}
	return nil, badRequest("cannot read the request body (bad chunked encoding?): %v", err)
}

// singleHeader returns the value of the request header name, "" when it is
// absent. A header given more than once is a 400, as is one present with
// an empty value unless emptyOK: a client that sends an empty
// Idempotency-Key or X-Shoal-User most likely meant one, and is told to
// leave the header out rather than have it silently ignored. (net/http
// gives a header sent as "Name: " as the value "", and trims the blanks
// around a value.)
func singleHeader(r *http.Request, name string, emptyOK bool) (string, error) {
	values := r.Header.Values(name)
	switch {
	case len(values) > 1:
		return "", badRequest("%s is given %d times; give it once", name, len(values))
	case len(values) == 0:
		return "", nil
	case values[0] == "" && !emptyOK:
		return "", badRequest("%s must not be empty; leave the header out instead", name)
	}
	return values[0], nil
}

// identityCoding reports whether the Content-Encoding header values ce name
// no content coding: every element of the list is "identity" or empty.
func identityCoding(ce []string) bool {
	for _, v := range ce {
		for _, coding := range strings.Split(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return false
			}
		}
	}
	return true
}

// decodeBody reads the request body (see readBody) and decodes it as a
// JSON object strictly: valid UTF-8, an object and not another JSON value,
// no unknown fields, nothing after the object. Every handler that takes a
// body decodes it here.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return badRequest("request body is empty; want a JSON object")
	}
	if !utf8.Valid(body) {
		return badRequest("request body is not valid UTF-8")
	}
	if trimmed[0] != '{' {
		return badRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return badRequest("field %q: want %s, got JSON %s", typeErr.Field, typeErr.Type,
				typeErr.Value)
		}
		return badRequest("bad JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("bad JSON body: unexpected data after the object")
	}
	return nil
}

// readBarrier applies the request's consistency and min_index query
// parameters and returns the applied index the read reflects.
func (s *Server) readBarrier(r *http.Request) (uint64, error) {
	q := r.URL.Query()
	level := node.Local
	switch c := q.Get("consistency"); c {
	case "", "local", "default":
	case "strong", "linearizable":
		level = node.Strong
	default:
		return 0, badRequest("consistency %q: want local or strong", c)
	}
	var minIndex uint64
	if v := q.Get("min_index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, badRequest("min_index %q: want a non-negative integer", v)
		}
		minIndex = n
	}
	if level == node.Local && minIndex == 0 && s.node.Recovered() {
		return s.node.AppliedIndex(), nil
	}
	return s.node.ReadBarrier(r.Context(), level, minIndex)
}

// propose commits cmd with the request's idempotency key and returns the
// state machine's result; a rejection comes back as an error.
func (s *Server) propose(r *http.Request, cmd fsm.Command) (*fsm.Result, error) {
	// The middleware has refused the key given twice or empty.
	cmd.IdempotencyKey = r.Header.Get(HeaderIdempotencyKey)
	if len(cmd.IdempotencyKey) > 128 {
		return nil, badRequest("Idempotency-Key is longer than 128 bytes")
	}
	if cmd.IdempotencyKey != "" {
		// A retry this node has already applied, or a key reused for
		// another request, is answered without a trip through the log.
		if first, ok := fsm.Remembered(s.node.State(), &cmd); ok {
			if first.Err != nil {
				return first, first.Err
			}
			return first, nil
		}
	}
	result, err := s.node.Propose(r.Context(), cmd)
	if err != nil {
		return nil, err
	}
	if result.Err != nil {
		return result, result.Err
	}
	return result, nil
}

// snapshotView is a consistent view of the state for one read and the
// applied index it reflects.
type snapshotView struct {
	reader storage.Reader
	index  uint64
}

// withSnapshot applies the request's read barrier, takes a snapshot at or
// after it, and answers with what read returns from it, setting
// X-Shoal-Index to the snapshot's index.
func (s *Server) withSnapshot(w http.ResponseWriter, r *http.Request,
	read func(*snapshotView) (any, error)) {
	if _, err := s.readBarrier(r); err != nil {
		writeError(w, err)
		return
	}
	snap, index, err := s.node.Snapshot()
	if err != nil {
		writeError(w, err)
		return
	}
	defer snap.Close()
	reply, err := read(&snapshotView{reader: snap, index: index})
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, reply)
}
