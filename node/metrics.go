package node

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// applySeconds is shared by every FSM in the process; a process runs one
// node outside tests.
var applySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "shoal_fsm_apply_batch_seconds",
	Help:    "Time to apply one Raft batch into Pebble.",
	Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
})

func observeApply(_ int, took time.Duration) { applySeconds.Observe(took.Seconds()) }

// registerMetrics exposes Raft's and the FSM's state as gauges.
func (n *Node) registerMetrics(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	gauge := func(name, help string, value func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, value)
	}
	collectors := []prometheus.Collector{
		applySeconds,
		gauge("shoal_raft_term", "Current Raft term.", func() float64 {
			return float64(n.raft.CurrentTerm())
		}),
		gauge("shoal_raft_commit_index", "Raft commit index known to this node.",
			func() float64 { return float64(n.raft.CommitIndex()) }),
		gauge("shoal_raft_last_index", "Last index in this node's Raft log.",
			func() float64 { return float64(n.raft.LastIndex()) }),
		gauge("shoal_fsm_applied_index", "Last index applied to the state.",
			func() float64 { return float64(n.fsm.AppliedIndex()) }),
		gauge("shoal_raft_is_leader", "1 if this node is the leader.", func() float64 {
			if n.IsLeader() {
				return 1
			}
			return 0
		}),
		gauge("shoal_raft_last_contact_seconds", "Time since this node heard from the leader.",
			func() float64 {
				if n.IsLeader() {
					return 0
				}
				return time.Since(n.raft.LastContact()).Seconds()
			}),
	}
	for _, state := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		state := state
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "shoal_raft_state",
			Help:        "1 for the node's current Raft state.",
			ConstLabels: prometheus.Labels{"state": strings.ToLower(state)},
		}, func() float64 {
			if n.raft.State().String() == state {
				return 1
			}
			return 0
		}))
	}
	for _, c := range collectors {
		_ = reg.Register(c)
	}
}
