package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/node"
)

// batchRecorder is an ApplyObserver that keeps what it is told.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][2]uint64
	events  []fsm.Event
}

func (r *batchRecorder) Applied(events []fsm.Event, first, last uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, [2]uint64{first, last})
	r.events = append(r.events, events...)
}

func (r *batchRecorder) snapshot() ([][2]uint64, []fsm.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]uint64(nil), r.batches...), append([]fsm.Event(nil), r.events...)
}

// TestApplyObserverSeesNoGapAcrossElections checks that an observer hears
// of contiguous batches while the state only moves forward through the
// log. A new leader's no-op and barrier entries never reach the state
// machine; they must not look like the gap a snapshot restore leaves, or
// the hot tier flushes its cache on every node at every election.
func TestApplyObserverSeesNoGapAcrossElections(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	recorders := map[string]*batchRecorder{}
	for _, tn := range c.nodes {
		recorders[tn.ID()] = &batchRecorder{}
		tn.SetApplyObserver(recorders[tn.ID()])
	}

	var written []*fsm.Result
	write := func(on *testNode, i int) {
		written = append(written, propose(t, on, putQuote("OBS", fmt.Sprint(i), "")))
	}
	write(leader, 1)
	// Two elections by hand-over, each adding a no-op and a barrier.
	for round := 0; round < 2; round++ {
		target := c.followers(leader)[0]
		require.NoError(t, leader.TransferLeadership(context.Background(), target.ID()))
		leader = c.leader()
		require.Equal(t, target.ID(), leader.ID())
		write(leader, 2+round)
		write(c.followers(leader)[0], 10+round)
	}
	last := written[len(written)-1].Index

	for _, tn := range c.nodes {
		require.NoError(t, tn.WaitApplied(context.Background(), last))
		rec := recorders[tn.ID()]
		require.Eventually(t, func() bool {
			batches, _ := rec.snapshot()
			return len(batches) > 0 && batches[len(batches)-1][1] >= last
		}, settle, 10*time.Millisecond)

		batches, events := rec.snapshot()
		for i, b := range batches {
			require.LessOrEqual(t, b[0], b[1], "%s batch %d: %v", tn.ID(), i, batches)
			if i > 0 {
				require.Equal(t, batches[i-1][1]+1, b[0],
					"%s: batch %d does not follow the one before: %v", tn.ID(), i, batches)
			}
		}
		var seen []uint64
		for _, e := range events {
			if e.Domain == fsm.DomainStocks {
				seen = append(seen, e.Index)
			}
		}
		var want []uint64
		for _, r := range written {
			want = append(want, r.Index)
		}
		require.Equal(t, want, seen, "%s: the observer's events", tn.ID())
	}
}

// TestApplyObserverSeesSnapshotGap checks the other side: a follower
// that comes back after the leader compacted its log gets a snapshot, and
// its observer is told of the gap so that it forgets what it derived from
// the old state.
func TestApplyObserverSeesSnapshotGap(t *testing.T) {
	c := startClusterWith(t, 3, func(cfg *node.Config) {
		cfg.SnapshotThreshold, cfg.TrailingLogs = 8, 2
		cfg.SnapshotInterval = 20 * time.Millisecond
	})
	leader := c.leader()
	down := c.followers(leader)[0]
	propose(t, leader, putQuote("SNAP", "100", ""))
	require.Eventually(t, func() bool { return down.AppliedIndex() >= leader.AppliedIndex() },
		settle, 10*time.Millisecond)
	down.stop(t)

	var last *fsm.Result
	for i := 1; i <= 40; i++ {
		last = propose(t, leader, putQuote("SNAP", fmt.Sprint(i), ""))
	}
	// Wait until the leader's log no longer holds what the follower lacks.
	require.Eventually(t, func() bool {
		snaps, _ := filepath.Glob(filepath.Join(leader.cfg.DataDir, "snapshots", "*", "meta.json"))
		return len(snaps) > 0
	}, settle, 20*time.Millisecond, "the leader took no snapshot")

	back := restart(t, down)
	reopened := back.AppliedIndex()
	rec := &batchRecorder{}
	back.SetApplyObserver(rec)
	require.NoError(t, back.WaitApplied(context.Background(), last.Index))
	require.Equal(t, fmt.Sprint(40), quote(t, back, "SNAP").Price)

	// A write after the restore reaches the observer, whether or not the
	// restore itself came before SetApplyObserver.
	after := propose(t, leader, putQuote("SNAP", "41", ""))
	require.Eventually(t, func() bool {
		batches, _ := rec.snapshot()
		return len(batches) > 0 && batches[len(batches)-1][1] >= after.Index
	}, settle, 10*time.Millisecond)
	batches, _ := rec.snapshot()
	require.Greater(t, batches[0][0], reopened+1,
		"the restore from a snapshot was not reported as a gap: %v (reopened at %d)",
		batches, reopened)
}
