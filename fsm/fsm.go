// Package fsm is shoal's replicated state machine: it decodes each
// committed Raft entry, hands it to the domain it names (stocks, text,
// comments, cluster membership) and writes every change of one Raft batch,
// the applied index included, in one Pebble batch.
//
// Everything reachable from Apply is deterministic: the leader stamps time
// into each command before proposing it, and no domain reads the clock,
// draws random numbers or depends on the order of a Go map. Two nodes that
// apply the same log hold byte-identical state.
package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/internal/lock"
	"github.com/shoal-db/shoal/storage"
)

// Keys the state machine keeps for itself, under the system prefix.
var (
	keyApplied   = []byte("sys/applied")
	prefixIdem   = []byte("sys/idem/")
	prefixMember = []byte("sys/member/")
)

// Result is the outcome of one command: its Raft index, and either the
// domain's JSON reply or the reason it was rejected. It is what
// raft.ApplyFuture.Response returns on the leader and what crosses the
// network when a follower forwards a write.
type Result struct {
	Index uint64          `json:"index"`
	Value json.RawMessage `json:"value,omitempty"`
	Err   *Error          `json:"error,omitempty"`
}

// Config holds what an FSM needs.
type Config struct {
	// DB is the state database the FSM owns and writes into.
	DB *storage.StateDB

	// Domains maps each domain id to its handler. DomainSystem is
	// provided by the FSM itself and must not be set.
	Domains map[DomainID]Domain

	// Logger receives state changes (restores) at Info.
	Logger *slog.Logger

	// ObserveApply, if set, is told how long each batch took to apply.
	ObserveApply func(entries int, took time.Duration)
}

// FSM implements raft.BatchingFSM over a Pebble state database. Raft calls
// ApplyBatch, Snapshot and Restore from its single FSM goroutine; the
// read-side methods (AppliedIndex, WaitApplied) are safe from any
// goroutine.
type FSM struct {
	db       *storage.StateDB
	domains  map[DomainID]Domain
	logger   *slog.Logger
	observe  func(int, time.Duration)
	onEvents func([]Event)

	mu      lock.Mutex
	applied uint64
	advance chan struct{} // closed and replaced whenever applied moves
}

// New returns an FSM over cfg.DB, resuming from the applied index stored
// in it.
func New(cfg Config) (*FSM, error) {
	if cfg.DB == nil {
		return nil, errors.New("fsm: Config.DB is required")
	}
	if _, ok := cfg.Domains[DomainSystem]; ok {
		return nil, errors.New("fsm: DomainSystem is reserved")
	}
	domains := map[DomainID]Domain{DomainSystem: systemDomain{}}
	for id, d := range cfg.Domains {
		domains[id] = d
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{
		db:      cfg.DB,
		domains: domains,
		logger:  logger.With("component", "fsm"),
		observe: cfg.ObserveApply,
		advance: make(chan struct{}),
	}
	applied, err := readApplied(cfg.DB)
	if err != nil {
		return nil, err
	}
	f.applied = applied
	return f, nil
}

// OnEvents registers fn to receive the events of every committed batch, in
// log order. fn runs on the apply goroutine and must not block; set it
// before Raft starts.
func (f *FSM) OnEvents(fn func([]Event)) { f.onEvents = fn }

// AppliedIndex returns the index of the last entry whose effects are in
// the state database.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// WaitApplied blocks until the applied index reaches index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		applied, advance := f.applied, f.advance
		f.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-advance:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *FSM) setApplied(index uint64) {
	f.mu.Lock()
	f.applied = index
	close(f.advance)
	f.advance = make(chan struct{})
	f.mu.Unlock()
}

// Apply applies a single entry; raft uses ApplyBatch instead, this is here
// to satisfy raft.FSM.
func (f *FSM) Apply(entry *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{entry})[0]
}

// ApplyBatch applies a batch of committed entries in one Pebble batch and
// returns a *Result per command entry (nil for other entries and for
// entries applied before a restart, which are skipped).
func (f *FSM) ApplyBatch(entries []*raft.Log) []interface{} {
	start := time.Now() // metrics only; never reaches the state
	results := make([]interface{}, len(entries))
	applied := f.AppliedIndex()

	batch := f.db.NewBatch()
	defer batch.Close()

	last := applied
	var events []Event
	for i, entry := range entries {
		if entry.Index <= applied {
			continue
		}
		last = entry.Index
		if entry.Type != raft.LogCommand {
			continue
		}
		result, evs := f.applyCommand(batch, entry)
		results[i] = result
		events = append(events, evs...)
	}
	if last == applied {
		return results
	}

	// The applied index goes in the same batch as the changes, so a crash
	// can never separate them.
	if err := batch.Set(keyApplied, binary.BigEndian.AppendUint64(nil, last)); err != nil {
		panic(fmt.Sprintf("fsm: write applied index: %v", err))
	}
	if err := batch.Commit(false); err != nil {
		panic(fmt.Sprintf("fsm: commit batch ending at %d: %v", last, err))
	}
	f.setApplied(last)

	if f.onEvents != nil && len(events) > 0 {
		f.onEvents(events)
	}
	if f.observe != nil {
		f.observe(len(entries), time.Since(start))
	}
	return results
}

// applyCommand applies one command entry into batch. A command the
// domain rejects yields a Result with Err and writes nothing except the
// remembered result of an idempotent command.
func (f *FSM) applyCommand(batch *storage.Batch, entry *raft.Log) (*Result, []Event) {
	var cmd Command
	if err := cmd.UnmarshalBinary(entry.Data); err != nil {
		// The leader validates before proposing, so only a newer build
		// can produce this; every node rejects it the same way.
		return &Result{Index: entry.Index, Err: Errorf(CodeInvalid, "%v", err)}, nil
	}

	if cmd.IdempotencyKey != "" {
		if first, ok := Remembered(batch, &cmd); ok {
			return first, nil
		}
	}

	result := &Result{Index: entry.Index}
	var events []Event
	domain, ok := f.domains[cmd.Domain]
	if !ok {
		result.Err = Errorf(CodeInvalid, "unknown domain %d", cmd.Domain)
	} else {
		out, err := domain.Apply(batch, Request{
			Index:   entry.Index,
			Time:    cmd.Stamp(),
			Op:      cmd.Op,
			Payload: cmd.Payload,
		})
		var rejected *Error
		switch {
		case errors.As(err, &rejected):
			result.Err = rejected
		case err != nil:
			panic(fmt.Sprintf("fsm: %s op %d at index %d: %v", cmd.Domain, cmd.Op,
				entry.Index, err))
		default:
			result.Value = out.Value
			events = out.Events
		}
	}
	for i := range events {
		events[i].Index = entry.Index
	}

	// Only a command that was carried out is remembered: a rejected one
	// changed nothing, and its writer may fix it and send it again.
	if cmd.IdempotencyKey != "" && result.Err == nil {
		f.rememberResult(batch, &cmd, result)
	}
	return result, events
}

// TODO(fsm): idempotency keys are kept forever; expire them by leader time
// (say after a day) with a time-ordered index so the table stays bounded.

// remembered is what the state machine keeps under an idempotency key:
// the first result, and a fingerprint of the command that produced it.
type remembered struct {
	Fingerprint []byte `json:"fingerprint"`
	Result      Result `json:"result"`
}

// fingerprint identifies what a command asks for, whatever leader stamped
// it, so a key reused for a different request can be told from a retry.
func fingerprint(cmd *Command) []byte {
	h := sha256.New()
	h.Write([]byte{byte(cmd.Domain), cmd.Op})
	h.Write(cmd.Payload)
	return h.Sum(nil)[:16]
}

// Remembered returns the result to answer cmd with when its idempotency
// key was used before in the state r: the first result for a retry, a
// conflict for a different request under the same key. Callers may use it
// to answer without proposing; the FSM applies the same rule to every
// committed command.
func Remembered(r storage.Reader, cmd *Command) (*Result, bool) {
	raw, err := r.Get(append(append([]byte(nil), prefixIdem...), cmd.IdempotencyKey...))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		panic(fmt.Sprintf("fsm: read idempotency key: %v", err))
	}
	var first remembered
	if err := json.Unmarshal(raw, &first); err != nil {
		panic(fmt.Sprintf("fsm: decode remembered result: %v", err))
	}
	if !bytes.Equal(first.Fingerprint, fingerprint(cmd)) {
		return &Result{Err: Errorf(CodeConflict,
			"Idempotency-Key %q was already used for a different request; "+
				"use a new key for each distinct write", cmd.IdempotencyKey)}, true
	}
	return &first.Result, true
}

func (f *FSM) rememberResult(w storage.ReadWriter, cmd *Command, result *Result) {
	raw, err := json.Marshal(remembered{Fingerprint: fingerprint(cmd), Result: *result})
	if err == nil {
		err = w.Set(append(append([]byte(nil), prefixIdem...), cmd.IdempotencyKey...), raw)
	}
	if err != nil {
		panic(fmt.Sprintf("fsm: remember result: %v", err))
	}
}

// Snapshot captures the state at the current applied index. The state
// database is synced first, so that a node restarting from this snapshot's
// metadata never finds its own state behind it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.db.Sync(); err != nil {
		return nil, fmt.Errorf("fsm: sync before snapshot: %w", err)
	}
	return &snapshot{snap: f.db.NewSnapshot()}, nil
}

// Restore replaces the whole state with a snapshot stream.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.db.Restore(rc); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	applied, err := readApplied(f.db)
	if err != nil {
		return err
	}
	for _, d := range f.domains {
		if r, ok := d.(Resetter); ok {
			r.Reset()
		}
	}
	f.setApplied(applied)
	f.logger.Info("restored state from snapshot", "applied_index", applied)
	return nil
}

func readApplied(r storage.Reader) (uint64, error) {
	raw, err := r.Get(keyApplied)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fsm: read applied index: %w", err)
	}
	if len(raw) != 8 {
		return 0, fmt.Errorf("fsm: applied index is %d bytes, want 8", len(raw))
	}
	return binary.BigEndian.Uint64(raw), nil
}

// AppliedIndexIn returns the applied index recorded in a view of the state,
// so a reader holding a snapshot knows exactly which index it reflects.
func AppliedIndexIn(r storage.Reader) (uint64, error) { return readApplied(r) }

// snapshot streams a consistent Pebble snapshot to Raft's snapshot sink.
type snapshot struct {
	snap *storage.Snapshot
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { _ = s.snap.Close() }
