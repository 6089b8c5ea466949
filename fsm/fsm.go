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
	"math"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/internal/lock"
	"github.com/shoal-db/shoal/storage"
)

// Keys the state machine keeps for itself, under the system prefix:
//
//	sys/applied                   applied index: 8-byte big-endian
//	sys/idem/<key>                remembered result of the first command
//	                              carried out under an idempotency key:
//	                              JSON with its expiry deadline
//	sys/idem-clock                idempotency clock: the latest leader time
//	                              (Unix ns, 8-byte big-endian) of a command
//	                              carried out; it never moves backwards
//	sys/idem-expiry/<d><key>      empty; one per remembered key, where <d>
//	                              is its deadline as 8-byte big-endian Unix
//	                              ns, so expiry is a scan from the start
//	sys/member/<id>               a member's addresses: JSON
//
// "sys/idem-" sorts before "sys/idem/", so no idempotency key can reach
// into the clock or the expiry index.
var (
	keyApplied       = []byte("sys/applied")
	prefixIdem       = []byte("sys/idem/")
	keyIdemClock     = []byte("sys/idem-clock")
	prefixIdemExpiry = []byte("sys/idem-expiry/")
	prefixMember     = []byte("sys/member/")
)

// DefaultIdempotencyWindow is how long, in leader time, a remembered result
// answers retries when Config.IdempotencyWindow is zero: a day, as common
// idempotency-key APIs do.
const DefaultIdempotencyWindow = 24 * time.Hour

// maxExpirePerCommand bounds how many expired remembered results one
// carried-out command deletes. The bound is per command rather than per
// Raft batch because batch boundaries differ between nodes (and across a
// restart) while the log does not; with at most MaxAppendEntries commands
// in a batch, a batch deletes at most that many times this. Deleting more
// than one per command lets a backlog drain even when every write carries
// a key.
const maxExpirePerCommand = 2

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

	// IdempotencyWindow is how long, in leader time, the result of a
	// command with an idempotency key answers retries of it; zero means
	// DefaultIdempotencyWindow. It is measured against the idempotency
	// clock, the latest leader time of a command carried out, so it only
	// depends on the log. It is part of the state machine: every node of a
	// cluster must use the same window, or their states drift apart.
	IdempotencyWindow time.Duration
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

	// window is Config.IdempotencyWindow in nanoseconds.
	window int64

	// expiry is only touched on the apply goroutine (ApplyBatch, Restore).
	expiry expiryCursor

	mu      lock.Mutex
	applied uint64
	advance chan struct{} // closed and replaced whenever applied moves

	// snapshots are the Raft snapshots taken and not yet released; Restore
	// retires them (see Restore).
	snapshotsMu lock.Mutex
	snapshots   map[*snapshot]struct{}
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
	window := cfg.IdempotencyWindow
	if window == 0 {
		window = DefaultIdempotencyWindow
	}
	if window < 0 {
		return nil, fmt.Errorf("fsm: Config.IdempotencyWindow is %v, want zero or more",
			cfg.IdempotencyWindow)
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
		window:  int64(window),
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
	clock := readIdemClock(batch)
	startClock := clock

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
		result, evs := f.applyCommand(batch, entry, &clock)
		results[i] = result
		events = append(events, evs...)
	}
	if last == applied {
		return results
	}

	// The applied index goes in the same batch as the changes, so a crash
	// can never separate them.
	if clock != startClock {
		if err := batch.Set(keyIdemClock, binary.BigEndian.AppendUint64(nil,
			uint64(clock))); err != nil {
			panic(fmt.Sprintf("fsm: write idempotency clock: %v", err))
		}
	}
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

// applyCommand applies one command entry into batch. clock is the
// idempotency clock, which a command carried out moves up to its Time. A
// command that is rejected, or answered with a remembered result, writes
// nothing; one carried out also remembers its result under its
// idempotency key and deletes a few remembered results that expired.
func (f *FSM) applyCommand(batch *storage.Batch, entry *raft.Log, clock *int64,
) (*Result, []Event) {
	var cmd Command
	if err := cmd.UnmarshalBinary(entry.Data); err != nil {
		// The leader validates before proposing, so only a newer build
		// can produce this; every node rejects it the same way.
		return &Result{Index: entry.Index, Err: Errorf(CodeInvalid, "%v", err)}, nil
	}

	// now never goes below the clock, so a command stamped earlier (a
	// leader whose clock is behind, or no stamp at all) cannot bring an
	// expired result back.
	now := max(*clock, cmd.Time)
	var expired *remembered
	if cmd.IdempotencyKey != "" {
		if first, ok := lookupRemembered(batch, cmd.IdempotencyKey); ok {
			if first.live(now) {
				return first.answer(&cmd), nil
			}
			expired = first
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

	// Only a command that was carried out moves the clock or is
	// remembered: a rejected one changed nothing, and its writer may fix
	// it and send it again.
	if result.Err != nil {
		return result, events
	}
	*clock = now
	if cmd.IdempotencyKey != "" {
		f.rememberResult(batch, &cmd, result, now, expired)
	}
	f.expire(batch, now)
	return result, events
}

// remembered is what the state machine keeps under an idempotency key:
// the first result, a fingerprint of the command that produced it, and
// the idempotency clock reading after which it no longer answers.
type remembered struct {
	Fingerprint []byte `json:"fingerprint"`
	Result      Result `json:"result"`

	// Deadline is in Unix nanoseconds; zero in a result remembered by a
	// build that kept them forever, which is kept forever still.
	Deadline int64 `json:"deadline,omitempty"`
}

// live reports whether r still answers retries when the idempotency clock
// reads now.
func (r *remembered) live(now int64) bool {
	return r.Deadline == 0 || now <= r.Deadline
}

// answer returns what to reply to cmd, which carries r's key: the first
// result for a retry, a conflict for a different request.
func (r *remembered) answer(cmd *Command) *Result {
	if !bytes.Equal(r.Fingerprint, fingerprint(cmd)) {
		return &Result{Err: Errorf(CodeConflict,
			"Idempotency-Key %q was already used for a different request; "+
				"use a new key for each distinct write", cmd.IdempotencyKey)}
	}
	return &r.Result
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
//
// A result is remembered for the FSM's idempotency window of leader time
// (Config.IdempotencyWindow), counted on the idempotency clock: the latest
// leader time of a command carried out, or cmd.Time if that is later. A
// client that retries after the window gets a fresh apply, and the key is
// then free for any request. r may still hold expired results, which are
// deleted a few per write; Remembered never answers with one.
//
// NB: a caller that answers from a node's state before proposing, with
// cmd.Time unset, counts on that node's clock, which only moves when a
// write is applied; it may answer a retry a little past the window with
// the first result, never a retry within it with anything else.
func Remembered(r storage.Reader, cmd *Command) (*Result, bool) {
	first, ok := lookupRemembered(r, cmd.IdempotencyKey)
	if !ok || !first.live(max(readIdemClock(r), cmd.Time)) {
		return nil, false
	}
	return first.answer(cmd), true
}

// lookupRemembered returns what r remembers under key, live or expired.
func lookupRemembered(r storage.Reader, key string) (*remembered, bool) {
	raw, err := r.Get(idemKey(key))
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
	return &first, true
}

// rememberResult stores the result of cmd, carried out when the
// idempotency clock read now, with its entry in the expiry index. expired
// is the record it replaces, if any, whose index entry goes.
func (f *FSM) rememberResult(w storage.ReadWriter, cmd *Command, result *Result, now int64,
	expired *remembered) {
	deadline := now + f.window
	if deadline < now {
		deadline = math.MaxInt64 // a clock near the end of time
	}
	raw, err := json.Marshal(remembered{
		Fingerprint: fingerprint(cmd),
		Result:      *result,
		Deadline:    deadline,
	})
	if err == nil && expired != nil && expired.Deadline != 0 {
		err = w.Delete(idemExpiryKey(expired.Deadline, cmd.IdempotencyKey))
	}
	if err == nil {
		err = w.Set(idemKey(cmd.IdempotencyKey), raw)
	}
	if err == nil {
		err = w.Set(idemExpiryKey(deadline, cmd.IdempotencyKey), nil)
	}
	if err != nil {
		panic(fmt.Sprintf("fsm: remember result: %v", err))
	}
	f.expiry.added(deadline)
}

// expiryCursor lets expire skip work without changing what it deletes. It
// lives in memory, is touched only on the apply goroutine, and starts
// empty on New and after Restore.
type expiryCursor struct {
	// floor is the last index key expire deleted: no index key below it
	// exists, so a scan starts there instead of wading through the
	// tombstones of everything deleted before. Nil: the prefix.
	floor []byte

	// next, when known, is a deadline no index entry is below.
	next  int64
	known bool
}

// added notes a new index entry with deadline d.
func (c *expiryCursor) added(d int64) {
	if c.known && d < c.next {
		c.next = d
	}
}

// expire deletes up to maxExpirePerCommand remembered results whose
// deadline is before now, oldest first, with their index entries.
//
// Skipping with the cursor is exact: entries come in with deadlines of at
// least now, which never goes down, so nothing lands below the floor, and
// added keeps next a true lower bound.
func (f *FSM) expire(batch *storage.Batch, now int64) {
	if f.expiry.known && now <= f.expiry.next {
		return
	}
	lower := f.expiry.floor
	if lower == nil {
		lower = prefixIdemExpiry
	}

	var doomed [][]byte
	f.expiry.known, f.expiry.next = false, 0
	err := batch.Scan(lower, storage.PrefixEnd(prefixIdemExpiry), false,
		func(key, _ []byte) error {
			deadline, _, ok := parseIdemExpiryKey(key)
			if !ok {
				return fmt.Errorf("malformed expiry index key %q", key)
			}
			if deadline >= now {
				f.expiry.known, f.expiry.next = true, deadline
				return storage.ErrStopScan
			}
			if len(doomed) == maxExpirePerCommand {
				// More are due: the next command goes on from here.
				f.expiry.known, f.expiry.next = true, deadline
				return storage.ErrStopScan
			}
			doomed = append(doomed, append([]byte(nil), key...))
			return nil
		})
	if err != nil {
		panic(fmt.Sprintf("fsm: scan idempotency expiry index: %v", err))
	}
	if !f.expiry.known {
		// The scan went to the end, so once doomed is deleted the index is
		// empty, and whatever comes into it is due later than now.
		f.expiry.known, f.expiry.next = true, now
	}

	for _, key := range doomed {
		_, idem, _ := parseIdemExpiryKey(key)
		if err := batch.Delete(idemKey(string(idem))); err != nil {
			panic(fmt.Sprintf("fsm: expire idempotency key: %v", err))
		}
		if err := batch.Delete(key); err != nil {
			panic(fmt.Sprintf("fsm: expire idempotency key: %v", err))
		}
	}
	if len(doomed) > 0 {
		f.expiry.floor = doomed[len(doomed)-1]
	}
}

// idemKey is where the result remembered under key lives.
func idemKey(key string) []byte {
	return append(append([]byte(nil), prefixIdem...), key...)
}

// idemExpiryKey is the expiry index entry of key, remembered until deadline.
func idemExpiryKey(deadline int64, key string) []byte {
	k := make([]byte, 0, len(prefixIdemExpiry)+8+len(key))
	k = append(k, prefixIdemExpiry...)
	k = binary.BigEndian.AppendUint64(k, uint64(deadline))
	return append(k, key...)
}

// parseIdemExpiryKey splits an expiry index key; the key aliases k.
func parseIdemExpiryKey(k []byte) (deadline int64, key []byte, ok bool) {
	rest, ok := bytes.CutPrefix(k, prefixIdemExpiry)
	if !ok || len(rest) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(rest)), rest[8:], true
}

// readIdemClock returns the idempotency clock stored in r, zero if no
// command was carried out yet.
func readIdemClock(r storage.Reader) int64 {
	raw, err := r.Get(keyIdemClock)
	if errors.Is(err, storage.ErrNotFound) {
		return 0
	}
	if err == nil && len(raw) != 8 {
		err = fmt.Errorf("%d bytes, want 8", len(raw))
	}
	if err != nil {
		panic(fmt.Sprintf("fsm: read idempotency clock: %v", err))
	}
	return int64(binary.BigEndian.Uint64(raw))
}

// Snapshot captures the state at the current applied index. The state
// database is synced first, so that a node restarting from this snapshot's
// metadata never finds its own state behind it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.db.Sync(); err != nil {
		return nil, fmt.Errorf("fsm: sync before snapshot: %w", err)
	}
	snap := &snapshot{snap: f.db.NewSnapshot(), owner: f}
	f.snapshotsMu.Lock()
	if f.snapshots == nil {
		f.snapshots = make(map[*snapshot]struct{})
	}
	f.snapshots[snap] = struct{}{}
	f.snapshotsMu.Unlock()
	return snap, nil
}

// Restore replaces the whole state with a snapshot stream.
//
// The state database swaps in the restored data only once no view of the
// old data is open, and a Raft snapshot taken earlier is such a view. Raft
// may hold one unpersisted while it waits for its main goroutine, the very
// goroutine that waits here for the restore (a follower installing the
// leader's snapshot while taking its own), so Restore first retires every
// unpersisted snapshot: its Persist fails and Raft drops it. A snapshot
// being persisted is waited for; that needs nothing from Raft.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.retireSnapshots()
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
	f.expiry = expiryCursor{}
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

// errSnapshotRetired is what Persist returns for a snapshot that Restore
// retired before it was persisted.
var errSnapshotRetired = errors.New("fsm: snapshot retired: the state was restored from another snapshot first")

// snapshot streams a consistent Pebble snapshot to Raft's snapshot sink.
type snapshot struct {
	owner *FSM

	// mu is held while the snapshot is persisted, so that retiring it
	// waits for a Persist under way; snap is nil once released.
	mu   sync.Mutex
	snap *storage.Snapshot
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.snap == nil {
		_ = sink.Cancel()
		return errSnapshotRetired
	}
	if _, err := s.snap.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {
	s.close()
	s.owner.snapshotsMu.Lock()
	delete(s.owner.snapshots, s)
	s.owner.snapshotsMu.Unlock()
}

// close releases the Pebble snapshot, after any Persist under way.
func (s *snapshot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil {
		_ = s.snap.Close()
		s.snap = nil
	}
}

// retireSnapshots closes every Raft snapshot not yet released. The order
// does not matter: nothing here reaches the state.
func (f *FSM) retireSnapshots() {
	f.snapshotsMu.Lock()
	open := make([]*snapshot, 0, len(f.snapshots))
	for snap := range f.snapshots {
		open = append(open, snap)
	}
	f.snapshotsMu.Unlock()

	for _, snap := range open {
		snap.close()
	}
	if len(open) > 0 {
		f.logger.Info("retired raft snapshots not yet persisted before a restore", "count", len(open))
	}
}
