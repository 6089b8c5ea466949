package node

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-db/shoal/fsm"
)

// Config describes one node. Start from DefaultConfig and set the
// identity and addresses.
type Config struct {
	// ID names the node in the cluster; it must never change for a data
	// directory.
	ID string

	// HTTPAddr is the host:port where this node serves HTTP; peers use it
	// to forward writes and read-index requests.
	HTTPAddr string

	// RaftAddr is the host:port Raft listens on and advertises.
	RaftAddr string

	// DataDir holds raft/, state/ and snapshots/.
	DataDir string

	// Bootstrap makes this node a one-node cluster if its data directory
	// is new. Exactly one node of a new cluster bootstraps.
	Bootstrap bool

	// Join is the HTTP address of a member to ask for membership. It is
	// harmless on a node that is already a member (an address change is
	// recorded).
	Join string

	// Domains are the state machine's domains.
	Domains map[fsm.DomainID]fsm.Domain

	// Raft timing, tuned for a LAN. Raft waits between HeartbeatTimeout
	// and twice that without hearing from the leader before it starts an
	// election, and an election takes about one round trip, so a killed
	// leader is replaced in roughly 1–2 × HeartbeatTimeout. The default
	// of 200 ms keeps failover well under a second; the library's defaults
	// (1 s) are for WANs. 150 ms also failed over fine but, on a loaded
	// 2-core machine, let GC and scheduling pauses depose healthy leaders;
	// LeaderLeaseTimeout (how long a leader leads without hearing from a
	// quorum) is kept at the heartbeat for the same reason.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotThreshold is how many new log entries trigger a snapshot,
	// checked every SnapshotInterval; TrailingLogs entries are kept after
	// one so that a briefly absent follower catches up from the log.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// ApplyTimeout bounds how long a write waits to be committed and
	// applied; ReadWaitTimeout how long a read waits for min_index or a
	// strong read's index.
	ApplyTimeout    time.Duration
	ReadWaitTimeout time.Duration

	// Logger receives the node's log; Info carries state changes only.
	Logger *slog.Logger

	// Registerer receives the node's metrics; nil means none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config with LAN defaults and no identity.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 200 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		ReadWaitTimeout:    5 * time.Second,
		Logger:             slog.Default(),
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == "" || strings.ContainsAny(c.ID, "/ \t\n") || len(c.ID) > 64 {
		errs = append(errs, fmt.Errorf("node: id %q must be 1-64 characters without '/' or spaces", c.ID))
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("node: an HTTP address is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("node: a Raft address is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("node: a data directory is required"))
	}
	if c.Bootstrap && c.Join != "" {
		errs = append(errs, errors.New("node: --bootstrap and --join exclude each other"))
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, errors.New("node: heartbeat timeout must be >= 5ms and <= election timeout"))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, errors.New("node: leader lease timeout must be <= heartbeat timeout"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("node: a logger is required"))
	}
	return errors.Join(errs...)
}
