package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shoal-db/shoal/client"
)

// The register workload. Each key is a stock symbol used as a register:
// a write is PUT /v1/stocks/{key} with a price no other write uses and no
// quote time, so the leader stamps the time and the stocks domain clamps
// it to at least the stored time: every write then replaces the value, in
// log order, exactly like a register's set. (With explicit times an older
// quote would be accepted but leave the value, which is not a register; a
// stale stamp cannot happen without one, because the clamp makes the
// stored time monotonic per symbol.) A read is GET /v1/stocks/{key} with
// consistency=strong: a linearizable read; 404 reads the initial state.

// registerInput is the input of one register operation.
type registerInput struct {
	Key   string
	Write bool
	Value string // written value; empty for a read
}

// registerOutput is what a read returned; writes have none.
type registerOutput struct {
	Value string // "" when the symbol had no quote (404)
}

// registerModel is porcupine's sequential specification of one register
// per key, partitioned by key. A register starts empty.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			key := op.Input.(registerInput).Key
			if _, ok := byKey[key]; !ok {
				keys = append(keys, key)
			}
			byKey[key] = append(byKey[key], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, key := range keys {
			out = append(out, byKey[key])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(registerInput)
		if in.Write {
			return true, in.Value
		}
		return output.(registerOutput).Value == state.(string), state
	},
	Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output interface{}) string {
		in := input.(registerInput)
		if in.Write {
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		}
		value := output.(registerOutput).Value
		if value == "" {
			value = "∅"
		}
		return fmt.Sprintf("get(%s) → %s", in.Key, value)
	},
	DescribeState: func(state interface{}) string {
		if state.(string) == "" {
			return "∅"
		}
		return state.(string)
	},
}

// Outcomes of one operation.
const (
	outcomeOK      = "ok"      // acknowledged: it happened, with this result
	outcomeFailed  = "failed"  // it certainly did not happen (reads only)
	outcomeUnknown = "unknown" // a write without an answer: it may have happened
)

// registerOp is one operation of the history as a client saw it.
type registerOp struct {
	Client  int
	Input   registerInput
	Output  registerOutput
	Call    int64 // nanoseconds since the run started
	Return  int64
	Outcome string
	Node    string // the node that answered, if one did
	Err     string
}

// registerWorkload drives concurrent clients over a handful of keys.
type registerWorkload struct {
	addrs   []string
	clients int
	keys    []string
	start   time.Time
	seed    uint64

	nextValue atomic.Uint64

	mu      sync.Mutex
	history []registerOp
}

func newRegisterWorkload(addrs []string, clients, keys int, seed uint64,
	start time.Time) *registerWorkload {
	w := &registerWorkload{addrs: addrs, clients: clients, start: start, seed: seed}
	for i := 0; i < keys; i++ {
		w.keys = append(w.keys, "CHAOS"+strconv.Itoa(i))
	}
	return w
}

func (w *registerWorkload) now() int64 { return int64(time.Since(w.start)) }

// run drives the clients until ctx ends.
func (w *registerWorkload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < w.clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runClient(ctx, i)
		}()
	}
	wg.Wait()
}

// newChaosClient returns a client that fails over quickly: one attempt is
// short, so a paused or cut-off node costs little, and retries keep the
// idempotency key of their write.
func newChaosClient(addrs []string, first int) (*client.Client, error) {
	rotated := append(append([]string(nil), addrs[first%len(addrs):]...),
		addrs[:first%len(addrs)]...)
	return client.New(client.Config{
		Addrs:         rotated,
		Timeout:       time.Second,
		MaxRetries:    4,
		RetryBackoff:  20 * time.Millisecond,
		MaxBackoff:    200 * time.Millisecond,
		MaxRetryAfter: 200 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

func (w *registerWorkload) runClient(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(id)))
	cl, err := newChaosClient(w.addrs, id)
	if err != nil {
		return
	}
	var local []registerOp
	for ctx.Err() == nil {
		key := w.keys[rng.IntN(len(w.keys))]
		// Each operation gets its own deadline, not the run's: an
		// operation cut short by the end of the run is still recorded.
		opCtx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		if rng.IntN(2) == 0 {
			local = append(local, w.write(opCtx, cl, id, key))
		} else {
			local = append(local, w.read(opCtx, cl, id, key, client.ReadOptions{
				Consistency: client.ConsistencyStrong}))
		}
		cancel()
	}
	w.mu.Lock()
	w.history = append(w.history, local...)
	w.mu.Unlock()
}

func (w *registerWorkload) write(ctx context.Context, cl *client.Client, id int,
	key string) registerOp {
	value := strconv.FormatUint(w.nextValue.Add(1), 10)
	op := registerOp{Client: id, Input: registerInput{Key: key, Write: true, Value: value},
		Call: w.now()}
	q, err := cl.PutStock(ctx, key, value, time.Time{})
	op.Return = w.now()
	switch {
	case err == nil:
		op.Outcome, op.Node = outcomeOK, q.Node
		if q.Price != value {
			// A write without a time always replaces the value; the reply
			// is the quote it produced.
			op.Err = fmt.Sprintf("reply shows price %s, not the written %s", q.Price, value)
		}
	default:
		// Whatever the error, the write may have reached the log: a
		// 4xx is impossible for a well-formed write, and a 503 or a lost
		// reply says nothing about whether it committed.
		op.Outcome, op.Err = outcomeUnknown, err.Error()
	}
	return op
}

func (w *registerWorkload) read(ctx context.Context, cl *client.Client, id int, key string,
	opts client.ReadOptions) registerOp {
	op := registerOp{Client: id, Input: registerInput{Key: key}, Call: w.now()}
	q, err := cl.GetStock(ctx, key, opts)
	op.Return = w.now()
	switch {
	case err == nil:
		op.Outcome, op.Output.Value, op.Node = outcomeOK, q.Price, q.Node
	case client.IsNotFound(err):
		op.Outcome = outcomeOK
		var apiErr *client.APIError
		if errors.As(err, &apiErr) {
			op.Node = apiErr.Node
		}
	default:
		op.Outcome, op.Err = outcomeFailed, err.Error()
	}
	return op
}

// finalReads reads every key from every node at strong consistency once
// the cluster is whole again, and adds them to the history.
func (w *registerWorkload) finalReads(ctx context.Context, addrs []string) error {
	cl, err := newChaosClient(addrs, 0)
	if err != nil {
		return err
	}
	var local []registerOp
	var errs []error
	for _, addr := range addrs {
		for _, key := range w.keys {
			op := w.read(ctx, cl, w.clients, key, client.ReadOptions{
				Consistency: client.ConsistencyStrong, Node: addr})
			if op.Outcome != outcomeOK {
				errs = append(errs, fmt.Errorf("final read of %s on %s: %s", key, addr, op.Err))
			}
			local = append(local, op)
		}
	}
	w.mu.Lock()
	w.history = append(w.history, local...)
	w.mu.Unlock()
	return errors.Join(errs...)
}

// registerCheck is the verdict on one register history.
type registerCheck struct {
	Result     porcupine.CheckResult
	Info       porcupine.LinearizationInfo
	Operations int      // operations given to the checker
	Dropped    int      // failed reads and unobserved unknown writes
	Unknown    int      // unknown writes kept because a read saw them
	Partitions int      // histories checked: one per key
	Anomalies  []string // replies that contradict what was sent
	Took       time.Duration
}

// check turns the recorded history into porcupine operations and checks
// it for linearizability.
//
// An acknowledged operation takes effect somewhere between its call and
// its return. A write without an answer may take effect at any time after
// its call, or never: its return is infinity. Two reductions keep that
// cheap and are exact for a register whose written values are unique:
//   - an unknown write no read ever saw is dropped: had it taken effect,
//     it was immediately overwritten, so the history is linearizable with
//     it if and only if it is without it;
//   - an unknown write some read saw must have taken effect before that
//     read returned, so its return is the earliest such read's return.
//
// Failed reads changed nothing and are dropped.
func (w *registerWorkload) check(timeout time.Duration) registerCheck {
	w.mu.Lock()
	history := append([]registerOp(nil), w.history...)
	w.mu.Unlock()
	start := time.Now()

	// The earliest return of a read that saw each value.
	seen := map[string]int64{}
	for _, op := range history {
		if op.Input.Write || op.Outcome != outcomeOK || op.Output.Value == "" {
			continue
		}
		key := op.Input.Key + "=" + op.Output.Value
		if at, ok := seen[key]; !ok || op.Return < at {
			seen[key] = op.Return
		}
	}

	var res registerCheck
	var ops []porcupine.Operation
	for _, op := range history {
		if op.Err != "" && op.Outcome == outcomeOK {
			res.Anomalies = append(res.Anomalies, fmt.Sprintf("client %d %s: %s",
				op.Client, registerModel.DescribeOperation(op.Input, op.Output), op.Err))
		}
		pop := porcupine.Operation{ClientId: op.Client, Input: op.Input, Output: op.Output,
			Call: op.Call, Return: op.Return, Metadata: op.Node}
		switch {
		case op.Outcome == outcomeFailed:
			res.Dropped++
			continue
		case op.Outcome == outcomeUnknown:
			at, ok := seen[op.Input.Key+"="+op.Input.Value]
			if !ok {
				res.Dropped++
				continue
			}
			res.Unknown++
			pop.Return = math.MaxInt64
			if at >= op.Call {
				pop.Return = at
			}
			pop.Output = registerOutput{}
			pop.Metadata = "unknown outcome: " + op.Err
		}
		ops = append(ops, pop)
	}
	res.Operations = len(ops)
	res.Partitions = len(registerModel.Partition(ops))
	res.Result, res.Info = porcupine.CheckOperationsVerbose(registerModel, ops, timeout)
	res.Took = time.Since(start)
	return res
}

// counts returns how many operations the history holds by kind and
// outcome.
func (w *registerWorkload) counts() (reads, readsOK, writes, writesOK int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, op := range w.history {
		if op.Input.Write {
			writes++
			if op.Outcome == outcomeOK {
				writesOK++
			}
			continue
		}
		reads++
		if op.Outcome == outcomeOK {
			readsOK++
		}
	}
	return reads, readsOK, writes, writesOK
}

// firstWriteAfter returns when the first acknowledged write invoked at or
// after t returned, as an offset from the run's start.
func (w *registerWorkload) firstWriteAfter(t int64) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	best, found := int64(math.MaxInt64), false
	for _, op := range w.history {
		if op.Input.Write && op.Outcome == outcomeOK && op.Call >= t && op.Return < best {
			best, found = op.Return, true
		}
	}
	return best, found
}
