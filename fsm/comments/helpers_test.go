package comments

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// testEnv is one node's state database with the comments domain, applying
// commands as the FSM would: one batch per command, committed on success.
//
// NB: a batch is committed even when Apply fails. Apply promises to write
// nothing before an error, so committing must change nothing; any test
// built on testEnv therefore checks that promise as well.
type testEnv struct {
	tb    testing.TB
	db    *storage.StateDB
	d     *Domain
	index uint64
	now   time.Time
}

var testStart = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestEnv(tb testing.TB, dir string) *testEnv {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.OpenState(dir, logger)
	if err != nil {
		tb.Fatalf("OpenState: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return &testEnv{tb: tb, db: db, d: New(), now: testStart}
}

// close closes the database early (rapid runs many envs in one test).
func (e *testEnv) close() { e.db.Close() }

// apply encodes and applies cmd at the env's clock, which then advances by
// one second.
func (e *testEnv) apply(cmd Command) (Comment, error) {
	e.tb.Helper()
	op, payload, err := Encode(cmd)
	if err != nil {
		return Comment{}, err
	}
	out, err := e.applyRaw(op, payload, e.now)
	e.now = e.now.Add(time.Second)
	if err != nil {
		return Comment{}, err
	}
	var c Comment
	if err := json.Unmarshal(out.Value, &c); err != nil {
		e.tb.Fatalf("reply %s: %v", out.Value, err)
	}
	return c, nil
}

// applyRaw applies one request in its own batch. Errors that are not
// *fsm.Error fail the test.
func (e *testEnv) applyRaw(op uint8, payload []byte, at time.Time) (fsm.Output, error) {
	e.tb.Helper()
	e.index++
	b := e.db.NewBatch()
	defer b.Close()
	out, err := e.d.Apply(b, fsm.Request{Index: e.index, Time: at, Op: op, Payload: payload})
	var fe *fsm.Error
	if err != nil && !errors.As(err, &fe) {
		e.tb.Fatalf("Apply: broken invariant: %v", err)
	}
	if cerr := b.Commit(false); cerr != nil {
		e.tb.Fatalf("Commit: %v", cerr)
	}
	return out, err
}

// must applies cmd and fails the test on error.
func (e *testEnv) must(cmd Command) Comment {
	e.tb.Helper()
	c, err := e.apply(cmd)
	if err != nil {
		e.tb.Fatalf("%#v: %v", cmd, err)
	}
	return c
}

func (e *testEnv) digest() [32]byte {
	e.tb.Helper()
	d, err := storage.Digest(e.db)
	if err != nil {
		e.tb.Fatalf("Digest: %v", err)
	}
	return d
}

// listAll pages through a listing with the given limit and returns the
// comments in order; it fails the test on error or on a page that is
// longer than the limit or short before the end.
func (e *testEnv) listAll(q Query) []Comment {
	e.tb.Helper()
	var all []Comment
	for pages := 0; ; pages++ {
		if pages > 100000 {
			e.tb.Fatalf("listing %+v does not end", q)
		}
		p, err := List(e.db, q)
		if err != nil {
			e.tb.Fatalf("List(%+v): %v", q, err)
		}
		limit := q.Limit
		if limit == 0 {
			limit = DefaultLimit
		}
		if len(p.Comments) > limit || (p.NextCursor != nil && len(p.Comments) != limit) {
			e.tb.Fatalf("List(%+v): %d comments with cursor %v", q, len(p.Comments), p.NextCursor)
		}
		all = append(all, p.Comments...)
		if p.NextCursor == nil {
			return all
		}
		q.Cursor = *p.NextCursor
	}
}

// errCode returns the code of an *fsm.Error, "" for nil and "other" for
// anything else.
func errCode(err error) string {
	if err == nil {
		return ""
	}
	var fe *fsm.Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return "other"
}

func ids(cs []Comment) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}
