// Package node runs one member of a shoal cluster: Raft over TCP, the
// state machine, the Pebble stores, and the rules for proposing writes
// (forwarded to the leader when this node follows) and for reading at a
// chosen consistency. It speaks no HTTP of its own; the api package does.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/internal/logging"
	"github.com/shoal-db/shoal/storage"
	"github.com/shoal-db/shoal/transport"
)

// Errors callers branch on. The api package maps them to HTTP statuses.
var (
	// ErrNoLeader means no leader could be reached in time; retry later.
	ErrNoLeader = transport.ErrNoLeader

	// ErrNotLeader means a leader-only operation reached a follower.
	ErrNotLeader = transport.ErrNotLeader

	// ErrTimeout means the wait for an index or a commit ran out.
	ErrTimeout = errors.New("node: timed out")

	// ErrUnknownOutcome means leadership was lost while a write was in
	// flight: it may or may not have been applied. Retrying with the same
	// idempotency key is safe.
	ErrUnknownOutcome = errors.New("node: leadership lost, outcome unknown")
)

// Consistency is the level a read is served at.
type Consistency string

// Read consistency levels.
const (
	// Local answers from this node's applied state, whatever its lag.
	Local Consistency = "local"

	// Strong is linearizable: the read reflects every write acknowledged
	// before it started, on any node.
	Strong Consistency = "strong"
)

// Node is one running member. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	logger *slog.Logger

	state *storage.StateDB
	logs  *storage.RaftStore
	snaps raft.SnapshotStore
	trans *raft.NetworkTransport
	fsm   *fsm.FSM
	raft  *raft.Raft
	peers *transport.Client

	events *broker

	// applyObserver and pendingEvents feed the hot tier; observedLast
	// and restored let it tell a snapshot restore from log entries that
	// never reach the state; see applied.go.
	applyObserver atomic.Pointer[observerBox]
	pendingEvents []fsm.Event
	observedLast  uint64
	restored      bool

	// readyTerm is the term in which this node, as leader, has applied
	// everything committed by earlier leaders; reads at Strong wait for it.
	readyTerm atomic.Uint64

	// leaderChange is closed and replaced whenever the known leader
	// changes, so a forwarded write can give up on a leader that died.
	leaderMu     sync.Mutex
	leaderChange chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup

	// restartFloor is the last index of the node's own Raft log when it
	// started. Before a restart the node may have answered reads at up to
	// that index, and its state database, written without fsync, can come
	// back behind it after a kill. Until recovered, a local read is served
	// as a strong one, so that a node never answers older than it did
	// before it restarted; see Recovered.
	restartFloor uint64
	recovered    atomic.Bool

	// closeOnce makes a second Close return the first one's error.
	closeOnce sync.Once
	closeErr  error
}

// Open starts a node: it opens or creates the data directory, restores
// state, starts Raft, and bootstraps or asks to join as configured.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:    cfg,
		logger: cfg.Logger.With("node", cfg.ID),
		peers:  transport.NewClient(cfg.ID),
		events: newBroker(),
		stop:   make(chan struct{}),

		leaderChange: make(chan struct{}),
	}
	if err := n.open(); err != nil {
		n.closeStores()
		return nil, err
	}
	n.registerMetrics(cfg.Registerer)

	n.wg.Add(2)
	go n.watchLeadership()
	go n.watchLeaderChanges()
	if cfg.Join != "" {
		n.wg.Add(1)
		go n.joinLoop(cfg.Join)
	}
	return n, nil
}

func (n *Node) open() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("node: create data directory: %w", err)
	}

	var err error
	if n.state, err = storage.OpenState(filepath.Join(cfg.DataDir, "state"), n.logger); err != nil {
		return err
	}
	if n.logs, err = storage.OpenRaftStore(filepath.Join(cfg.DataDir, "raft"), n.logger); err != nil {
		return err
	}
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2,
		logging.Hclog(n.logger.With("component", "snapshots")))
	if err != nil {
		return fmt.Errorf("node: open snapshot store: %w", err)
	}

	n.fsm, err = fsm.New(fsm.Config{
		DB:           n.state,
		Domains:      cfg.Domains,
		Logger:       n.logger,
		ObserveApply: n.afterApply,
	})
	if err != nil {
		return err
	}
	n.fsm.OnEvents(n.onEvents)
	if err := n.catchUpFromSnapshot(); err != nil {
		return err
	}

	if n.trans, err = transport.NewRaft(cfg.RaftAddr, cfg.RaftAddr, n.logger); err != nil {
		return err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	// The state database keeps its applied index, so a restart resumes
	// from it instead of reloading the last snapshot.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = logging.Hclog(n.logger.With("component", "raft"))

	existing, err := raft.HasExistingState(n.logs, n.logs, n.snaps)
	if err != nil {
		return fmt.Errorf("node: inspect raft state: %w", err)
	}
	n.observedLast = n.fsm.AppliedIndex()
	if n.raft, err = raft.NewRaft(rc, restoreNoting{n.fsm, n}, n.logs, n.logs, n.snaps,
		n.trans); err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}

	n.restartFloor = n.raft.LastIndex()
	n.recovered.Store(n.fsm.AppliedIndex() >= n.restartFloor)

	switch {
	case existing:
		n.logger.Info("resuming from data directory", "dir", cfg.DataDir,
			"applied_index", n.fsm.AppliedIndex(), "last_log_index", n.raft.LastIndex())
	case cfg.Bootstrap:
		n.logger.Info("bootstrapping a new cluster", "raft", cfg.RaftAddr)
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAddr),
		}}}).Error()
		if err != nil {
			return fmt.Errorf("node: bootstrap: %w", err)
		}
	case cfg.Join == "":
		n.logger.Warn("new data directory and neither --bootstrap nor --join: " +
			"waiting for a member to add this node")
	}
	return nil
}

// catchUpFromSnapshot restores the newest snapshot when the state database
// is behind it, which happens if the machine lost unsynced state writes
// after Raft compacted the log they came from.
func (n *Node) catchUpFromSnapshot() error {
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	latest := metas[0]
	if latest.Index <= n.fsm.AppliedIndex() {
		return nil
	}
	n.logger.Info("state is behind the latest snapshot; restoring it",
		"applied_index", n.fsm.AppliedIndex(), "snapshot_index", latest.Index)
	_, rc, err := n.snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("node: open snapshot %s: %w", latest.ID, err)
	}
	return n.fsm.Restore(rc)
}

// Close leaves Raft running no more and closes the stores. The node's
// membership is unchanged: a restarted node takes its place again.
// Calling Close again returns the first call's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	close(n.stop)
	var errs []error
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	n.wg.Wait()
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	n.events.close()
	errs = append(errs, n.closeStores())
	return errors.Join(errs...)
}

func (n *Node) closeStores() error {
	var errs []error
	if n.state != nil {
		errs = append(errs, n.state.Close())
	}
	if n.logs != nil {
		errs = append(errs, n.logs.Close())
	}
	return errors.Join(errs...)
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// AppliedIndex returns the index of the last entry applied to the state.
func (n *Node) AppliedIndex() uint64 { return n.fsm.AppliedIndex() }

// State returns the live state database for reads. A handler that needs
// several reads to agree should take a snapshot with Snapshot instead.
func (n *Node) State() storage.Reader { return n.state }

// Snapshot returns a consistent view of the state and the applied index
// it reflects. The caller must Close it promptly: a snapshot restore
// waits for open views.
func (n *Node) Snapshot() (*storage.Snapshot, uint64, error) {
	snap := n.state.NewSnapshot()
	index, err := fsm.AppliedIndexIn(snap)
	if err != nil {
		snap.Close()
		return nil, 0, err
	}
	return snap, index, nil
}

// IsLeader reports whether this node is the leader right now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Subscribe returns a channel of committed events of one domain and a
// function that ends the subscription. A subscriber that falls more than
// buffer events behind has its channel closed and must catch up from
// the state (each event carries its index and revision for that).
func (n *Node) Subscribe(domain fsm.DomainID, buffer int) (<-chan fsm.Event, func()) {
	return n.events.subscribe(domain, buffer)
}

// watchLeaderChanges signals leaderChange each time Raft reports a new
// leader (or none).
func (n *Node) watchLeaderChanges() {
	defer n.wg.Done()
	observations := make(chan raft.Observation, 16)
	observer := raft.NewObserver(observations, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(observer)
	defer n.raft.DeregisterObserver(observer)
	for {
		select {
		case <-n.stop:
			return
		case <-observations:
			n.leaderMu.Lock()
			close(n.leaderChange)
			n.leaderChange = make(chan struct{})
			n.leaderMu.Unlock()
		}
	}
}

// leaderChanged returns a channel closed at the next change of leader.
func (n *Node) leaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChange
}

// errLeaderChanged ends a forwarded write whose leader was replaced.
var errLeaderChanged = errors.New("node: leader changed while forwarding")

// watchLeadership reacts to this node winning or losing leadership.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.raft.LeaderCh():
			if !isLeader {
				n.logger.Info("lost leadership", "term", n.raft.CurrentTerm())
				continue
			}
			n.becomeLeader()
		}
	}
}

// becomeLeader waits until everything committed by earlier leaders is
// applied, so strong reads may start, then makes sure this node's own
// member record is current.
func (n *Node) becomeLeader() {
	term := n.raft.CurrentTerm()
	n.logger.Info("became leader", "term", term)
	for {
		err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		n.logger.Warn("leader barrier failed", "term", term, "err", err)
		if !n.IsLeader() || n.raft.CurrentTerm() != term {
			return
		}
		select {
		case <-n.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	n.readyTerm.Store(term)

	self := fsm.Member{ID: n.cfg.ID, HTTP: n.cfg.HTTPAddr, Raft: n.cfg.RaftAddr}
	if current, err := fsm.LookupMember(n.state, n.cfg.ID); err == nil && current == self {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	if _, err := n.proposeLocal(ctx, fsm.MemberCommand(fsm.OpSetMember, self)); err != nil {
		n.logger.Warn("record own member address", "err", err)
	}
}

// Propose commits cmd through Raft and returns its result, forwarding to
// the leader when this node follows. It retries while there is no leader
// (an election) until ctx ends. A result the state machine rejected comes
// back as a Result with Err set, not as an error.
func (n *Node) Propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		defer cancel()
	}
	encoded, err := cmd.MarshalBinary()
	if err != nil {
		return nil, err
	}

	backoff := 10 * time.Millisecond
	for {
		var result *fsm.Result
		var err error
		if n.IsLeader() {
			result, err = n.proposeLocal(ctx, cmd)
		} else {
			result, err = n.forward(ctx, encoded, cmd.IdempotencyKey != "")
		}
		safe := retryable(err) ||
			(cmd.IdempotencyKey != "" && errors.Is(err, ErrUnknownOutcome))
		if err == nil || !safe {
			return result, err
		}

		n.logger.Debug("retrying write", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 200*time.Millisecond)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
	}
}

// retryable reports whether a write certainly did not reach the log, so
// sending it again cannot apply it twice.
func retryable(err error) bool {
	return errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, errRetrySafe)
}

var errRetrySafe = errors.New("node: safe to retry")

// forward sends an encoded command to the leader and waits until this node
// has applied it too, so the writer can read it back here at once.
func (n *Node) forward(ctx context.Context, encoded []byte, idempotent bool) (*fsm.Result, error) {
	changed := n.leaderChanged()
	leader, err := n.leaderHTTP()
	if err != nil {
		return nil, err
	}

	// A leader that was paused or cut off never answers; once another
	// leader is elected, stop waiting for it.
	attempt, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-changed:
			cancel(errLeaderChanged)
		case <-attempt.Done():
		}
	}()

	result, err := n.peers.Propose(attempt, leader, encoded)
	switch {
	case err == nil:
	case retryable(err), errors.Is(err, transport.ErrRefused):
		return nil, err
	case errors.Is(context.Cause(attempt), errLeaderChanged) && idempotent:
		return nil, fmt.Errorf("%w: %v", errRetrySafe, errLeaderChanged)
	case idempotent && ctx.Err() == nil:
		// A network error after sending may hide a commit; with an
		// idempotency key the retry is harmless.
		return nil, fmt.Errorf("%w: %v", errRetrySafe, err)
	default:
		// Without a key the write may or may not have been applied.
		return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	}

	wait, cancelWait := context.WithTimeout(ctx, n.cfg.ReadWaitTimeout)
	defer cancelWait()
	_ = n.fsm.WaitApplied(wait, result.Index)
	return result, nil
}

// ProposeAsLeader implements transport.Leader for writes forwarded by
// followers.
func (n *Node) ProposeAsLeader(ctx context.Context, encoded []byte) (*fsm.Result, error) {
	var cmd fsm.Command
	if err := cmd.UnmarshalBinary(encoded); err != nil {
		return nil, err
	}
	return n.proposeLocal(ctx, cmd)
}

// proposeLocal stamps cmd with this leader's clock and applies it.
func (n *Node) proposeLocal(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	cmd.Time = time.Now().UnixNano()
	data, err := cmd.MarshalBinary()
	if err != nil {
		return nil, err
	}

	// raft reads a timeout of zero as "wait for ever" to enqueue, so a
	// caller whose deadline has already passed is answered before anything
	// is proposed.
	timeout := n.cfg.ApplyTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
		if timeout <= 0 {
			return nil, fmt.Errorf("%w: deadline passed before proposing", ErrTimeout)
		}
	}
	future := n.raft.Apply(data, timeout)
	if err := future.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrNotLeader
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, ErrUnknownOutcome
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("%w: raft queue full", ErrTimeout)
		}
		return nil, fmt.Errorf("node: apply: %w", err)
	}
	result, ok := future.Response().(*fsm.Result)
	if !ok || result == nil {
		return nil, fmt.Errorf("node: apply at %d returned no result", future.Index())
	}
	return result, nil
}

// ReadBarrier waits until this node's state is fit for a read at the given
// level and, if minIndex > 0, has applied at least minIndex. It returns the
// applied index the read may report.
func (n *Node) ReadBarrier(
	ctx context.Context, level Consistency, minIndex uint64,
) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReadWaitTimeout)
	defer cancel()

	recovering := level == Local && !n.Recovered()
	if level == Strong || recovering {
		index, err := n.readIndex(ctx)
		if err != nil {
			if recovering {
				return 0, fmt.Errorf("%w (restarted behind its own log: applied %d of %d)",
					err, n.fsm.AppliedIndex(), n.restartFloor)
			}
			return 0, err
		}
		minIndex = max(minIndex, index)
	}
	if err := n.fsm.WaitApplied(ctx, minIndex); err != nil {
		return 0, fmt.Errorf("%w: waiting for index %d, applied %d", ErrTimeout, minIndex,
			n.fsm.AppliedIndex())
	}
	if recovering {
		// The leader's commit index covers whatever the node applied
		// before it restarted, and the node has applied up to it.
		n.recovered.Store(true)
	}
	return n.fsm.AppliedIndex(), nil
}

// Recovered reports whether a local read may be answered from the state
// as it is: true unless the node restarted with its state behind its own
// Raft log and has neither re-applied that log nor confirmed a read index
// with the leader since. While false, ReadBarrier serves local reads as
// strong ones.
func (n *Node) Recovered() bool {
	if n.recovered.Load() {
		return true
	}
	if n.fsm.AppliedIndex() >= n.restartFloor {
		n.recovered.Store(true)
		return true
	}
	return false
}

// readIndex returns the index a linearizable read must wait for: the
// leader's commit index after confirming leadership with a quorum. A
// follower asks the leader for it.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	backoff := 10 * time.Millisecond
	for {
		var index uint64
		var err error
		if n.IsLeader() {
			index, err = n.ReadIndexAsLeader(ctx)
		} else {
			var leader string
			if leader, err = n.leaderHTTP(); err == nil {
				index, err = n.peers.ReadIndex(ctx, leader)
			}
		}
		if err == nil || !retryable(err) {
			return index, err
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 200*time.Millisecond)
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
	}
}

// ReadIndexAsLeader implements transport.Leader.
func (n *Node) ReadIndexAsLeader(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if n.readyTerm.Load() != n.raft.CurrentTerm() {
		// A new leader's commit index may still be behind entries of
		// earlier terms until its barrier is applied.
		return 0, ErrNoLeader
	}
	index := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, ErrNotLeader
	}
	return n.lastStateIndex(index), nil
}

// lastStateIndex returns the highest index at or below upTo whose entry
// reaches the state machine. Raft keeps no-op and barrier entries (a new
// leader writes one of each) from the FSM, so its applied index never
// reaches a commit index that ends in them; the state at the entry found
// here is the state at upTo. When the log cannot tell, upTo is returned.
func (n *Node) lastStateIndex(upTo uint64) uint64 {
	applied := n.fsm.AppliedIndex()
	for index := upTo; index > applied; index-- {
		var entry raft.Log
		if err := n.logs.GetLog(index, &entry); err != nil {
			return upTo
		}
		if entry.Type == raft.LogCommand || entry.Type == raft.LogConfiguration {
			return index
		}
	}
	return min(applied, upTo)
}

// leaderHTTP returns the leader's HTTP address.
func (n *Node) leaderHTTP() (string, error) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", ErrNoLeader
	}
	member, err := fsm.LookupMember(n.state, string(id))
	if err != nil {
		return "", fmt.Errorf("%w: leader %s has no address yet", ErrNoLeader, id)
	}
	return member.HTTP, nil
}

// LeaderHTTP returns the leader's id and HTTP address, or ErrNoLeader.
func (n *Node) LeaderHTTP() (id, addr string, err error) {
	_, leader := n.raft.LeaderWithID()
	addr, err = n.leaderHTTP()
	return string(leader), addr, err
}
