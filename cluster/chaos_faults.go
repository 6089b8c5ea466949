package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind names a kind of fault the chaos harness injects.
type FaultKind string

// The kinds of fault.
const (
	// FaultKill is kill -9 of one node (the leader or a random node), then
	// a restart from its data directory.
	FaultKill FaultKind = "kill"

	// FaultPause is SIGSTOP of one node (the leader or a random node),
	// then SIGCONT.
	FaultPause FaultKind = "pause"

	// FaultPartition cuts links between nodes through the harness's
	// proxies, then heals them: one node isolated from all others, the
	// nodes split into a minority and a majority, or one node's outgoing
	// or incoming links only (an asymmetric partition).
	FaultPartition FaultKind = "partition"

	// FaultRedis pauses the Redis server of the hot tier (SIGSTOP, then
	// SIGCONT) or kills and restarts it. Only for runs with Redis.
	FaultRedis FaultKind = "redis"
)

// AllFaults lists every kind of fault that needs nothing but the nodes.
var AllFaults = []FaultKind{FaultKill, FaultPause, FaultPartition}

// ParseFaults parses a comma-separated list of fault kinds.
func ParseFaults(list string) ([]FaultKind, error) {
	var out []FaultKind
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		kind := FaultKind(name)
		if !slices.Contains(AllFaults, kind) && kind != FaultRedis {
			return nil, fmt.Errorf("cluster: unknown fault %q: want kill, pause, partition "+
				"or redis", name)
		}
		if !slices.Contains(out, kind) {
			out = append(out, kind)
		}
	}
	return out, nil
}

// FaultEvent is one fault the harness injected.
type FaultEvent struct {
	Kind FaultKind
	// Detail says what exactly happened, such as "isolate n2 (leader)".
	Detail string
	// Leader reports whether the fault hit the leader of the time.
	Leader bool
	// At and Healed are offsets from the start of the run.
	At, Healed time.Duration
	// Failover is how long after the fault the first write invoked after
	// it was acknowledged, for faults that hit the leader; zero if none.
	Failover time.Duration
}

// String describes the event on one line.
func (e FaultEvent) String() string {
	s := fmt.Sprintf("%7.1fs  %-9s %s, healed after %.1fs", e.At.Seconds(), e.Kind,
		e.Detail, (e.Healed - e.At).Seconds())
	if e.Failover > 0 {
		s += fmt.Sprintf("; writes resumed after %.2fs", e.Failover.Seconds())
	}
	return s
}

// nemesis injects faults into a cluster on a random schedule drawn from
// one seed: a calm gap, one fault held for a while, its repair, and again.
type nemesis struct {
	c      *Cluster
	net    *Network
	redis  *Redis // nil without the hot tier
	kinds  []FaultKind
	rng    *rand.Rand
	start  time.Time
	logf   func(format string, args ...any)
	events []FaultEvent

	// Gap and hold bounds; a fault starts after a gap in [gapMin, gapMax)
	// and lasts a hold in [holdMin, holdMax).
	gapMin, gapMax, holdMin, holdMax time.Duration
}

// run injects faults until ctx ends, then repairs everything.
func (n *nemesis) run(ctx context.Context) {
	for {
		if !sleepCtx(ctx, n.between(n.gapMin, n.gapMax)) {
			return
		}
		kind := n.kinds[n.rng.IntN(len(n.kinds))]
		undo, event, err := n.inject(ctx, kind)
		if err != nil {
			n.logf("chaos: %s failed: %v", kind, err)
			continue
		}
		n.logf("chaos: %s", event.Detail)
		sleepCtx(ctx, n.between(n.holdMin, n.holdMax))

		// Repair even when the run is over, so the cluster can converge.
		undo()
		event.Healed = time.Since(n.start)
		n.events = append(n.events, event)
		n.logf("chaos: healed %s", event.Detail)

		// Let the cluster become whole before the next fault, so that
		// faults do not pile up into a permanent loss of quorum.
		wait, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = n.c.WaitReady(wait)
		cancel()
	}
}

func (n *nemesis) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)))
}

// target picks the leader half of the time and a random node otherwise.
func (n *nemesis) target(ctx context.Context) (id string, isLeader bool) {
	ids := n.ids()
	leaderCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	leader, err := n.c.Leader(leaderCtx)
	cancel()
	if err == nil && n.rng.IntN(2) == 0 {
		return leader, true
	}
	id = ids[n.rng.IntN(len(ids))]
	return id, err == nil && id == leader
}

func (n *nemesis) ids() []string {
	var ids []string
	for _, m := range n.c.Members() {
		ids = append(ids, m.ID)
	}
	return ids
}

// inject starts one fault and returns the function that repairs it.
func (n *nemesis) inject(ctx context.Context, kind FaultKind) (func(), FaultEvent, error) {
	if kind == FaultRedis {
		return n.injectRedis()
	}
	id, isLeader := n.target(ctx)
	event := FaultEvent{Kind: kind, Leader: isLeader, At: time.Since(n.start)}
	who := id
	if isLeader {
		who += " (leader)"
	}

	switch kind {
	case FaultKill:
		if err := n.c.Kill(id); err != nil {
			return nil, event, err
		}
		event.Detail = "kill -9 " + who
		return func() {
			if err := n.c.Restart(id); err != nil {
				n.logf("chaos: restart %s: %v", id, err)
			}
		}, event, nil

	case FaultPause:
		if err := n.c.Pause(id); err != nil {
			return nil, event, err
		}
		event.Detail = "SIGSTOP " + who
		return func() {
			if err := n.c.Resume(id); err != nil {
				n.logf("chaos: resume %s: %v", id, err)
			}
		}, event, nil

	case FaultPartition:
		ids := n.ids()
		others := slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
		switch shape := n.rng.IntN(4); {
		case shape == 0 && len(ids) >= 5:
			// A minority that holds the target against the majority.
			n.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
			minority := append([]string{id}, others[:len(ids)/2-1]...)
			majority := others[len(ids)/2-1:]
			n.net.Partition(minority, majority)
			event.Detail = fmt.Sprintf("partition %v | %v", minority, majority)
		case shape == 1:
			for _, o := range others {
				n.net.Cut(id, o)
			}
			event.Detail = "cut the links from " + who + " (it hears, cannot speak)"
		case shape == 2:
			for _, o := range others {
				n.net.Cut(o, id)
			}
			event.Detail = "cut the links to " + who + " (it speaks, cannot hear)"
		default:
			n.net.Partition([]string{id}, others)
			event.Detail = "isolate " + who
		}
		return n.net.HealAll, event, nil
	}
	return nil, event, fmt.Errorf("cluster: unknown fault %q", kind)
}

// injectRedis pauses or kills the hot tier's Redis server.
func (n *nemesis) injectRedis() (func(), FaultEvent, error) {
	event := FaultEvent{Kind: FaultRedis, At: time.Since(n.start)}
	if n.redis == nil {
		return nil, event, fmt.Errorf("cluster: no Redis in this run")
	}
	if n.rng.IntN(2) == 0 {
		n.redis.Pause()
		event.Detail = "SIGSTOP redis"
		return n.redis.Resume, event, nil
	}
	n.redis.Kill()
	event.Detail = "kill -9 redis"
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.redis.Start(ctx); err != nil {
			n.logf("chaos: restart redis: %v", err)
		}
	}, event, nil
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// newRand returns the harness's random source for seed.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x5eed))
}
