package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// The chaos harness (RunChaos, `shoal chaos`, TestChaos) proves the
// cluster's promises under faults, the way Jepsen and etcd's robustness
// tests do, with real node processes on one machine and no root:
//
//   - faults (chaos_faults.go): kill -9 and restart, SIGSTOP and SIGCONT,
//     of the leader or a random node; network partitions through a proxy
//     on every directed link between nodes (chaos_net.go); with Redis,
//     pausing and killing the hot tier's server;
//   - registers (chaos_registers.go): writes and linearizable reads of a
//     few stock symbols, the whole history checked with porcupine;
//   - counters (chaos_counters.go): votes on comments, each counted
//     exactly once on every node;
//   - documents (chaos_docs.go): concurrent editors of one document, the
//     same text on every node, rebuilt from its op log, every
//     acknowledged edit in it exactly once;
//   - convergence: every node at the same applied index and state digest.
//
// Clients retry under idempotency keys, as real ones should; an operation
// that never got an answer has an unknown outcome and is checked as one.

// ChaosConfig describes one run of the chaos harness: a fresh local
// cluster of real node processes, a workload of concurrent clients, and
// faults injected on a schedule drawn from Seed.
type ChaosConfig struct {
	// Binary is the shoal executable to run the nodes with.
	Binary string

	// Dir holds the cluster; it should be new or empty.
	Dir string

	// Nodes is the cluster size; 3 by default.
	Nodes int

	// Duration is how long the workload and the faults run; one minute
	// by default. Repair, final reads, convergence and the check come on
	// top.
	Duration time.Duration

	// Seed draws the fault schedule and the clients' choices. The same
	// seed gives the same schedule; the interleaving of real processes
	// still differs from run to run.
	Seed uint64

	// Faults are the kinds of fault to inject; all of them by default.
	// An empty, non-nil slice injects none.
	Faults []FaultKind

	// Clients is the number of concurrent clients; 8 by default.
	Clients int

	// Keys is the number of registers (stock symbols); 4 by default.
	Keys int

	// Voters is the number of concurrent clients of the counter workload
	// (votes on comments); 4 by default, negative for none. Counters is
	// the number of comments they vote on; 3 by default.
	Voters, Counters int

	// Editors is the number of concurrent editors of the document
	// workload; 3 by default, negative for none.
	Editors int

	// GapMin, GapMax, HoldMin and HoldMax bound the calm time before each
	// fault and how long a fault lasts (defaults 0.5–2 s and 1–4 s).
	GapMin, GapMax, HoldMin, HoldMax time.Duration

	// NodeArgs are extra flags for every node.
	NodeArgs []string

	// Redis starts a redis-server in Dir for the nodes' hot tier, so that
	// strong reads go through it, and allows FaultRedis.
	Redis bool

	// CheckTimeout bounds the linearizability check; five minutes by
	// default. A check that runs out is inconclusive, not an anomaly.
	CheckTimeout time.Duration

	// Visualize, if set, is where porcupine's visualisation of the history
	// is always written. Without it one is written to Dir/anomaly.html
	// only when the check finds an anomaly.
	Visualize string

	// Logf receives progress lines; nil means none.
	Logf func(format string, args ...any)
}

func (cfg *ChaosConfig) setDefaults() {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Duration == 0 {
		cfg.Duration = time.Minute
	}
	if cfg.Faults == nil {
		cfg.Faults = slices.Clone(AllFaults)
		if cfg.Redis {
			cfg.Faults = append(cfg.Faults, FaultRedis)
		}
	}
	if cfg.Clients == 0 {
		cfg.Clients = 8
	}
	if cfg.Keys == 0 {
		cfg.Keys = 4
	}
	if cfg.Voters == 0 {
		cfg.Voters = 4
	}
	if cfg.Counters == 0 {
		cfg.Counters = 3
	}
	if cfg.Editors == 0 {
		cfg.Editors = 3
	}
	if cfg.GapMax == 0 {
		cfg.GapMin, cfg.GapMax = 500*time.Millisecond, 2*time.Second
	}
	if cfg.HoldMax == 0 {
		cfg.HoldMin, cfg.HoldMax = time.Second, 4*time.Second
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 5 * time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
}

// ChaosReport is what one chaos run found. A run is good when Anomalies
// is empty and Converged is true.
type ChaosReport struct {
	Seed     uint64
	Nodes    int
	Duration time.Duration // of the workload
	Faults   []FaultKind
	Redis    bool

	// Operations by kind and outcome. A write without an answer has an
	// unknown outcome; a read without one failed and changed nothing.
	Reads, ReadsOK, Writes, WritesOK int

	// Votes is the number of distinct votes the counter workload sent,
	// VotesResent those of unknown outcome it settled by resending them
	// under their idempotency keys afterwards. CountersSkipped says why
	// the counter workload did not run, if it did not.
	Votes, VotesResent int
	CountersSkipped    string

	// Edits is the number of edits the document workload sent, EditsResent
	// those of unknown outcome it resent afterwards, DocsSkipped why the
	// workload did not run, if it did not.
	Edits, EditsResent int
	DocsSkipped        string

	// FaultEvents are the faults injected, in order.
	FaultEvents []FaultEvent

	// Histories is the number of histories checked (one per register),
	// Checked the operations given to the checker, UnknownKept the
	// unknown-outcome writes among them (the others were never observed
	// and are dropped, see registerWorkload.check).
	Histories, Checked, UnknownKept int
	CheckResult                     porcupine.CheckResult
	CheckTook                       time.Duration

	// Anomalies lists everything that contradicts linearizability or
	// the API's promises. It must be empty.
	Anomalies []string

	// Converged reports whether every node reached the same applied index
	// and state digest after the faults were repaired.
	Converged    bool
	AppliedIndex uint64
	Digest       string

	// Visualization is the path of porcupine's visualisation, if written.
	Visualization string

	// TierHits counts the reads each tier of the nodes' hot tier answered
	// (near, redis, pebble), from their metrics; empty without Redis.
	TierHits map[string]int
}

// OK reports whether the run found nothing wrong.
func (r *ChaosReport) OK() bool {
	return len(r.Anomalies) == 0 && r.Converged && r.CheckResult == porcupine.Ok
}

// Failovers returns how long writes took to resume after each fault that
// hit the leader.
func (r *ChaosReport) Failovers() []time.Duration {
	var out []time.Duration
	for _, e := range r.FaultEvents {
		if e.Leader && e.Failover > 0 {
			out = append(out, e.Failover)
		}
	}
	slices.Sort(out)
	return out
}

// String renders the report for a terminal.
func (r *ChaosReport) String() string {
	var b strings.Builder
	kinds := make([]string, len(r.Faults))
	for i, k := range r.Faults {
		kinds[i] = string(k)
	}
	tier := ""
	if r.Redis {
		tier = ", reads through the Redis hot tier"
	}
	fmt.Fprintf(&b, "chaos run: seed %d, %d nodes%s, %v, faults %s\n", r.Seed, r.Nodes, tier,
		r.Duration.Round(time.Second), strings.Join(kinds, ","))
	ops := r.Reads + r.Writes
	fmt.Fprintf(&b, "operations   %d (%.0f/s): writes %d acknowledged, %d unknown; "+
		"strong reads %d ok, %d failed\n", ops, float64(ops)/r.Duration.Seconds(),
		r.WritesOK, r.Writes-r.WritesOK, r.ReadsOK, r.Reads-r.ReadsOK)

	byKind := map[FaultKind]int{}
	for _, e := range r.FaultEvents {
		byKind[e.Kind]++
	}
	var parts []string
	for _, k := range append(slices.Clone(AllFaults), FaultRedis) {
		if byKind[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, byKind[k]))
		}
	}
	fmt.Fprintf(&b, "faults       %d injected (%s)\n", len(r.FaultEvents),
		strings.Join(parts, ", "))
	for _, e := range r.FaultEvents {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	if f := r.Failovers(); len(f) > 0 {
		fmt.Fprintf(&b, "failover     %d leader faults: writes resumed after %.2fs median, "+
			"%.2fs max\n", len(f), f[len(f)/2].Seconds(), f[len(f)-1].Seconds())
	}
	fmt.Fprintf(&b, "histories    %d checked with porcupine: %d operations "+
		"(%d of unknown outcome), %s in %v\n", r.Histories, r.Checked, r.UnknownKept,
		r.CheckResult, r.CheckTook.Round(time.Millisecond))
	if r.CountersSkipped == "" {
		fmt.Fprintf(&b, "counters     %d votes (%d of unknown outcome resent under their "+
			"keys); counts compared on every node\n", r.Votes, r.VotesResent)
	} else {
		fmt.Fprintf(&b, "counters     not checked: %s\n", r.CountersSkipped)
	}
	if r.DocsSkipped == "" {
		fmt.Fprintf(&b, "documents    %d edits (%d of unknown outcome resent); texts, op "+
			"logs and edits compared on every node\n", r.Edits, r.EditsResent)
	} else {
		fmt.Fprintf(&b, "documents    not checked: %s\n", r.DocsSkipped)
	}
	fmt.Fprintf(&b, "anomalies    %d\n", len(r.Anomalies))
	for i, a := range r.Anomalies {
		if i == 20 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(r.Anomalies)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", a)
	}
	if r.Converged {
		fmt.Fprintf(&b, "convergence  all %d nodes at index %d, digest %.16s\n", r.Nodes,
			r.AppliedIndex, r.Digest)
	} else {
		fmt.Fprintf(&b, "convergence  FAILED\n")
	}
	if len(r.TierHits) > 0 {
		fmt.Fprintf(&b, "hot tier     reads answered: near %d, redis %d, pebble %d\n",
			r.TierHits["near"], r.TierHits["redis"], r.TierHits["pebble"])
	}
	if r.Visualization != "" {
		fmt.Fprintf(&b, "visualization %s\n", r.Visualization)
	}
	return b.String()
}

// RunChaos starts a cluster in cfg.Dir, runs the workload while injecting
// faults, repairs the cluster, and checks the history and the nodes'
// convergence. It returns an error only when the harness itself could not
// run; what the run found is in the report. The cluster is stopped before
// RunChaos returns; its logs stay in cfg.Dir.
func RunChaos(ctx context.Context, cfg ChaosConfig) (*ChaosReport, error) {
	cfg.setDefaults()
	report := &ChaosReport{Seed: cfg.Seed, Nodes: cfg.Nodes, Duration: cfg.Duration,
		Faults: cfg.Faults, Redis: cfg.Redis}

	network := NewNetwork()
	defer network.Close()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var redis *Redis
	var redisAddr string
	if cfg.Redis {
		var err error
		if redis, err = StartRedis(startCtx, filepath.Join(cfg.Dir, "redis"), 0); err != nil {
			return nil, err
		}
		defer redis.Stop()
		redisAddr = redis.Addr()
	} else if slices.Contains(cfg.Faults, FaultRedis) {
		return nil, errors.New("cluster: the redis fault needs a run with Redis")
	}
	c, err := Start(startCtx, Config{Binary: cfg.Binary, Dir: cfg.Dir, Nodes: cfg.Nodes,
		NodeArgs: cfg.NodeArgs, Redis: redisAddr, ProcessEnv: network.ProcessEnv})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var ids []string
	for _, m := range c.Members() {
		ids = append(ids, m.ID)
	}
	if !network.Routed(ids) {
		return nil, errors.New("cluster: not every link between nodes has a proxy")
	}
	cfg.Logf("chaos: %d nodes up in %s; seed %d", cfg.Nodes, cfg.Dir, cfg.Seed)

	votes := &counterWorkload{addrs: c.HTTPAddrs(), clients: cfg.Voters, seed: cfg.Seed}
	if cfg.Voters < 0 {
		report.CountersSkipped = "disabled"
	} else if err := votes.setup(startCtx, cfg.Counters); err != nil {
		if !errors.Is(err, errNoComments) {
			return nil, err
		}
		report.CountersSkipped = err.Error()
	}

	docs := &docWorkload{addrs: c.HTTPAddrs(), editors: cfg.Editors, seed: cfg.Seed}
	if cfg.Editors < 0 {
		report.DocsSkipped = "disabled"
	} else if err := docs.setup(startCtx); err != nil {
		if !errors.Is(err, errNoDocs) {
			return nil, err
		}
		report.DocsSkipped = err.Error()
	}

	// The workloads and the faults run side by side for cfg.Duration.
	start := time.Now()
	work := newRegisterWorkload(c.HTTPAddrs(), cfg.Clients, cfg.Keys, cfg.Seed, start)
	nem := &nemesis{c: c, net: network, redis: redis, kinds: cfg.Faults, start: start,
		logf:   cfg.Logf,
		rng:    newRand(cfg.Seed),
		gapMin: cfg.GapMin, gapMax: cfg.GapMax, holdMin: cfg.HoldMin, holdMax: cfg.HoldMax}
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if len(cfg.Faults) > 0 {
			nem.run(runCtx)
		}
	}()
	var voting sync.WaitGroup
	if report.CountersSkipped == "" {
		voting.Add(1)
		go func() {
			defer voting.Done()
			votes.run(runCtx)
		}()
	}
	if report.DocsSkipped == "" {
		voting.Add(1)
		go func() {
			defer voting.Done()
			docs.run(runCtx)
		}()
	}
	work.run(runCtx)
	voting.Wait()
	<-done

	// Repair: heal the network, resume and restart every node.
	network.HealAll()
	if redis != nil {
		redis.Resume()
	}
	for _, id := range ids {
		_ = c.Resume(id)
		if !c.Running(id) {
			if err := c.Restart(id); err != nil {
				return nil, err
			}
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = c.WaitReady(readyCtx)
	cancel()
	if err != nil {
		report.Anomalies = append(report.Anomalies, fmt.Sprintf("after repair: %v", err))
	}
	cfg.Logf("chaos: workload done after %v; cluster repaired", time.Since(start).Round(
		time.Millisecond))

	finalCtx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := work.finalReads(finalCtx, c.HTTPAddrs()); err != nil {
		report.Anomalies = append(report.Anomalies, err.Error())
	}
	cancel()

	if report.CountersSkipped == "" {
		settleCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		resent, err := votes.settle(settleCtx)
		cancel()
		report.VotesResent = resent
		if err != nil {
			report.Anomalies = append(report.Anomalies, err.Error())
		}
		checkCtx, cancel := context.WithTimeout(ctx, time.Minute)
		var anomalies []string
		report.Votes, anomalies = votes.check(checkCtx)
		cancel()
		report.Anomalies = append(report.Anomalies, anomalies...)
	}

	if report.DocsSkipped == "" {
		settleCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		resent, err := docs.settle(settleCtx)
		cancel()
		report.EditsResent = resent
		if err != nil {
			report.Anomalies = append(report.Anomalies, err.Error())
		}
		checkCtx, cancel := context.WithTimeout(ctx, time.Minute)
		var anomalies []string
		report.Edits, anomalies = docs.check(checkCtx)
		cancel()
		report.Anomalies = append(report.Anomalies, anomalies...)
	}

	convergeCtx, cancel := context.WithTimeout(ctx, time.Minute)
	report.AppliedIndex, report.Digest, err = converge(convergeCtx, c.HTTPAddrs())
	cancel()
	if err != nil {
		report.Anomalies = append(report.Anomalies, err.Error())
	} else {
		report.Converged = true
	}

	if cfg.Redis {
		report.TierHits = tierHits(ctx, c.HTTPAddrs())
	}

	// Check the history.
	report.Reads, report.ReadsOK, report.Writes, report.WritesOK = work.counts()
	for i := range nem.events {
		e := &nem.events[i]
		if !e.Leader {
			continue
		}
		if at, ok := work.firstWriteAfter(int64(e.At)); ok {
			e.Failover = time.Duration(at) - e.At
		}
	}
	report.FaultEvents = nem.events
	cfg.Logf("chaos: checking %d operations", report.Reads+report.Writes)
	check := work.check(cfg.CheckTimeout)
	report.Histories, report.Checked = check.Partitions, check.Operations
	report.UnknownKept, report.CheckResult, report.CheckTook = check.Unknown, check.Result,
		check.Took
	report.Anomalies = append(report.Anomalies, check.Anomalies...)
	if check.Result == porcupine.Illegal {
		report.Anomalies = append(report.Anomalies,
			"the register history is not linearizable; see the visualisation")
	}

	path := cfg.Visualize
	if path == "" && check.Result == porcupine.Illegal {
		path = filepath.Join(cfg.Dir, "anomaly.html")
	}
	if path != "" {
		if err := porcupine.VisualizePath(registerModel, check.Info, path); err != nil {
			cfg.Logf("chaos: write visualisation: %v", err)
		} else {
			report.Visualization = path
		}
	}
	return report, nil
}

// converge waits until every node reports the same applied index and the
// same state digest, and returns them. Nodes keep applying what is in
// flight when the faults end, so it asks each node for the digest at the
// highest index any node reported so far, until they agree.
func converge(ctx context.Context, addrs []string) (uint64, string, error) {
	var target uint64
	var last string
	for {
		digests := map[string]bool{}
		indexes := map[uint64]bool{}
		var failed error
		for _, addr := range addrs {
			index, digest, err := fetchDigest(ctx, addr, target)
			if err != nil {
				failed = err
				break
			}
			digests[digest], indexes[index] = true, true
			target = max(target, index)
		}
		if failed == nil && len(digests) == 1 && len(indexes) == 1 {
			for d := range digests {
				return target, d, nil
			}
		}
		last = fmt.Sprintf("indexes %v, %d distinct digests, err %v", sortedKeys(indexes),
			len(digests), failed)
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("nodes did not converge: %s", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sortedKeys(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// fetchDigest reads GET /v1/debug/digest?min_index=N from one node.
func fetchDigest(ctx context.Context, addr string, minIndex uint64) (uint64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/v1/debug/digest?min_index=%d", addr, minIndex)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("digest from %s: %s", addr, resp.Status)
	}
	var body struct {
		Index  uint64 `json:"index"`
		Digest string `json:"digest"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, "", err
	}
	return body.Index, body.Digest, nil
}

// tierHits adds up the nodes' shoal_hottier_hits_total counters by tier.
// Nodes restarted during the run count only since their restart.
func tierHits(ctx context.Context, addrs []string) map[string]int {
	hits := map[string]int{}
	for _, addr := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics",
			nil)
		if err != nil {
			continue
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(raw), "\n") {
			rest, ok := strings.CutPrefix(line, `shoal_hottier_hits_total{tier="`)
			if !ok {
				continue
			}
			tier, value, _ := strings.Cut(rest, `"} `)
			n, _ := strconv.ParseFloat(value, 64)
			hits[tier] += int(n)
		}
	}
	return hits
}

// DefaultChaosDir returns a new temporary directory for a chaos cluster.
func DefaultChaosDir() (string, error) {
	return os.MkdirTemp("", "shoal-chaos-")
}
