package comments

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/shoal-db/shoal/fsm"
)

// buildThread applies n creates (30 % top-level, the rest replies to a
// random earlier comment) and votes seeded random votes (each comment has
// its own share of upvotes, and popular comments draw more votes) to one
// thread, committing a batch every 1,000 commands as the FSM would for a
// busy log.
func buildThread(b *testing.B, e *testEnv, thread string, n, votes int) {
	rng := rand.New(rand.NewPCG(42, 42))
	batch := e.db.NewBatch()
	pending := 0
	apply := func(cmd Command) {
		op, payload, err := Encode(cmd)
		if err != nil {
			b.Fatal(err)
		}
		e.index++
		e.now = e.now.Add(time.Millisecond)
		req := fsm.Request{Index: e.index, Time: e.now, Op: op, Payload: payload}
		if _, err := e.d.Apply(batch, req); err != nil {
			b.Fatalf("%#v: %v", cmd, err)
		}
		if pending++; pending == 1000 {
			if err := batch.Commit(false); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			batch, pending = e.db.NewBatch(), 0
		}
	}

	start := time.Now()
	for i := 0; i < n; i++ {
		c := CreateCommand{Thread: thread, Author: fmt.Sprintf("user-%d", rng.IntN(5000)),
			Body: "a comment of a realistic length, give or take a few words"}
		if i > 0 && rng.IntN(10) >= 3 {
			c.Parent = formatID(1 + uint64(rng.IntN(i)))
		}
		apply(c)
	}
	created := time.Since(start)

	upShare := make([]float64, n)
	for i := range upShare {
		upShare[i] = rng.Float64()
	}
	start = time.Now()
	for i := 0; i < votes; i++ {
		// Squaring skews the votes towards the first comments.
		f := rng.Float64()
		id := 1 + int(f*f*float64(n))
		v := VoteDown
		if rng.Float64() < upShare[id-1] {
			v = VoteUp
		}
		apply(VoteCommand{ID: formatID(uint64(id)), User: fmt.Sprintf("voter-%d", i), Vote: v})
	}
	if err := batch.Commit(false); err != nil {
		b.Fatal(err)
	}
	batch.Close()
	voted := time.Since(start)
	b.Logf("built %d comments in %v (%.0f/s), %d votes in %v (%.0f/s)",
		n, created.Round(time.Millisecond), float64(n)/created.Seconds(),
		votes, voted.Round(time.Millisecond), float64(votes)/voted.Seconds())
}

// BenchmarkListFirstPage100k times the first page (limit 25) of the
// top-level listing of a 100,000-comment thread, per order, as a local
// read from the state database. It reports p50 and p99 besides the mean.
func BenchmarkListFirstPage100k(b *testing.B) {
	e := newTestEnv(b, b.TempDir())
	buildThread(b, e, "big", 100_000, 300_000)

	for _, sort := range Sorts() {
		b.Run(sort, func(b *testing.B) {
			q := Query{Thread: "big", Sort: sort, Limit: 25}
			var took []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				p, err := List(e.db, q)
				took = append(took, time.Since(start))
				if err != nil || len(p.Comments) != 25 || p.NextCursor == nil {
					b.Fatalf("List: %d comments, %v", len(p.Comments), err)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkVote times one vote through Apply and the commit of its own
// batch, the FSM's path for a command, on a thread of 10,000 comments.
// Every vote changes a count, so the three vote orders move each time.
func BenchmarkVote(b *testing.B) {
	e := newTestEnv(b, b.TempDir())
	buildThread(b, e, "t", 10_000, 0)
	values := []string{VoteUp, VoteDown, VoteNone}

	b.ReportAllocs()
	i := 0
	for b.Loop() {
		cmd := VoteCommand{
			ID:   formatID(1 + uint64(i%10_000)),
			User: fmt.Sprintf("voter-%d", (i/10_000)%1000),
			Vote: values[(i/10_000/1000)%3],
		}
		op, payload, err := Encode(cmd)
		if err != nil {
			b.Fatal(err)
		}
		e.index++
		batch := e.db.NewBatch()
		req := fsm.Request{Index: e.index, Time: e.now, Op: op, Payload: payload}
		_, err = e.d.Apply(batch, req)
		if err == nil {
			err = batch.Commit(false)
		}
		batch.Close()
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}
