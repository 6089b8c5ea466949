package fsm

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/shoal-db/shoal/storage"
)

// DomainID names the part of the state machine a command belongs to. It is
// part of the log format: never renumber one.
type DomainID uint8

// The domains of the state machine.
const (
	DomainSystem   DomainID = 0 // cluster membership records
	DomainStocks   DomainID = 1 // latest quote per symbol
	DomainText     DomainID = 2 // collaborative text documents
	DomainComments DomainID = 3 // threaded comments, votes and likes
)

// String returns the domain's name for logs and metrics.
func (d DomainID) String() string {
	switch d {
	case DomainSystem:
		return "system"
	case DomainStocks:
		return "stocks"
	case DomainText:
		return "text"
	case DomainComments:
		return "comments"
	}
	return fmt.Sprintf("domain(%d)", uint8(d))
}

// Request is one committed command as a domain sees it.
type Request struct {
	// Index is the Raft log index of the command.
	Index uint64

	// Time is the leader's clock when it proposed the command. It is the
	// only clock a domain may read.
	Time time.Time

	// Op is the domain's own operation code.
	Op uint8

	// Payload is the domain's encoding of the operation.
	Payload []byte
}

// Output is what a domain returns for a command it applied.
type Output struct {
	// Value is the JSON reply to the writer.
	Value json.RawMessage

	// Events are published to subscribers once the batch that holds the
	// command is committed, in order.
	Events []Event
}

// Event is a change that subscribers (server-sent events, Redis pub/sub,
// the hot tier) learn about after it is committed.
type Event struct {
	// Domain is the domain that produced the event.
	Domain DomainID

	// Key names what changed within the domain: a document id, a symbol, a
	// thread.
	Key string

	// Index is the Raft index of the command that produced the event. The
	// FSM fills it in.
	Index uint64

	// Revision orders events of one Key, where the domain has such an
	// order (a document's revision); zero otherwise.
	Revision uint64

	// Data is the event's JSON body.
	Data json.RawMessage
}

// Domain applies the commands of one domain. Apply is only ever called from
// the FSM's single apply goroutine, so a domain needs no locking for its
// writes; reads from other goroutines go through storage.Reader views.
//
// Apply must be deterministic: it may read tx and req only, never the
// clock, random numbers or the order of a Go map. It must check everything
// that could make it fail before it writes anything to tx: an error return
// means the command changed nothing. Errors meant for the writer are
// *Error values; any other error is treated as a broken invariant.
type Domain interface {
	Apply(tx storage.ReadWriter, req Request) (Output, error)
}

// Resetter is implemented by domains that keep in-memory state derived from
// the database (a cache of hot documents). Reset is called, on the apply
// goroutine, after the whole state was replaced by a snapshot restore.
type Resetter interface {
	Reset()
}

// Error is a command rejected by the state machine for a reason the writer
// can act on. It crosses the network between nodes as JSON.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Codes of Error, mapped to HTTP statuses by the api package.
const (
	CodeInvalid   = "invalid_argument" // 400
	CodeNotFound  = "not_found"        // 404
	CodeForbidden = "forbidden"        // 403
	CodeConflict  = "conflict"         // 409
	CodeTooLarge  = "too_large"        // 413
)

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
