package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
)

// Workloads of threaded comments.
const (
	// WorkloadVotes sends votes from many users on the comments of one
	// thread, through any node.
	WorkloadVotes = "votes"
	// WorkloadListing reads first pages of a thread of 100,000 comments
	// in every order, each read pinned to the next node.
	WorkloadListing = "listing"
)

// Operation names of the comment workloads. A listing's row is
// OpListPrefix + the order, such as "list-best".
const (
	OpVote       = "vote"
	OpListPrefix = "list-"
)

// Sizes of the threads the comment workloads prepare.
const (
	votesThreadComments   = 1_000
	listingThreadComments = 100_000
	listingThreadVotes    = 20_000
	prepareConcurrency    = 64
)

// listingSorts are the orders the listing workload reads, in turn.
var listingSorts = []string{
	client.SortNew, client.SortOld, client.SortTop, client.SortReplies, client.SortBest,
	client.SortControversial,
}

// commentVotes votes on the comments of one thread: each request is one
// user (out of a million) voting up, down or none on a comment chosen at
// random, through the client's round robin of nodes, so every vote is a
// write that goes through the leader and moves the comment in the vote
// orders.
type commentVotes struct {
	noBackground
	thread   string
	comments int
	ids      *[]string // filled in by prepare
}

func newCommentVotes(Options) workload {
	return commentVotes{thread: "bench/votes", comments: votesThreadComments, ids: new([]string)}
}

func (v commentVotes) prepare(ctx context.Context, e *env) error {
	ids, err := prepareThread(ctx, e, v.thread, v.comments, 0)
	*v.ids = ids
	return err
}

func (v commentVotes) op(ctx context.Context, e *env, w *worker) (string, error) {
	ids := *v.ids
	id := ids[w.rng.IntN(len(ids))]
	user := fmt.Sprintf("bench-voter-%d", w.rng.IntN(1_000_000))
	vote := client.VoteUp
	switch r := w.rng.Float64(); {
	case r < 0.3:
		vote = client.VoteDown
	case r < 0.4:
		vote = client.VoteNone
	}
	_, err := e.client.Vote(ctx, id, user, vote)
	return OpVote, err
}

// commentListing reads the first page (25 comments, the default) of the
// top-level listing of a thread of 100,000 comments, each worker cycling
// through the orders and each read pinned to the next node: a local read,
// which goes through the hot tier when the nodes have one. The thread is
// built on the first run and kept for later ones.
type commentListing struct {
	noBackground
	thread   string
	comments int
	votes    int
}

func newCommentListing(Options) workload {
	return commentListing{thread: "bench/listing", comments: listingThreadComments,
		votes: listingThreadVotes}
}

func (l commentListing) prepare(ctx context.Context, e *env) error {
	_, err := prepareThread(ctx, e, l.thread, l.comments, l.votes)
	return err
}

func (l commentListing) op(ctx context.Context, e *env, w *worker) (string, error) {
	sort := listingSorts[(w.seq+w.id)%len(listingSorts)]
	page, err := e.client.ListComments(ctx, l.thread, client.ListOptions{
		Sort:        sort,
		Limit:       25,
		ReadOptions: client.ReadOptions{Consistency: e.opts.Consistency, Node: e.nextNode()},
	})
	if err == nil && len(page.Comments) != 25 {
		err = fmt.Errorf("bench: first page of %s has %d comments, want 25", sort,
			len(page.Comments))
	}
	return OpListPrefix + sort, err
}

// prepareThread makes sure thread has at least n comments, creating the
// missing ones prepareConcurrency at a time (30 % top-level, the rest
// replies to a random earlier comment of this run), then casts votes
// random votes skewed towards the first comments. It waits until every
// node has applied it all and returns the ids of the thread's top-level
// comments. A thread with n comments already is left as it is.
func prepareThread(ctx context.Context, e *env, thread string, n, votes int) ([]string,
	error) {
	info, err := e.client.GetThread(ctx, thread, client.ReadOptions{})
	have := int(info.Comments)
	if err != nil && !client.IsNotFound(err) {
		return nil, fmt.Errorf("look up thread %s: %w", thread, err)
	}

	var lastIndex atomic.Uint64
	if have < n {
		created, err := createComments(ctx, e, thread, n-have, &lastIndex)
		if err != nil {
			return nil, err
		}
		if err := castVotes(ctx, e, created, votes, &lastIndex); err != nil {
			return nil, err
		}
	}

	// Wait for every node, and collect the top-level ids.
	var ids []string
	for i, node := range e.nodes {
		opts := client.ListOptions{Sort: client.SortOld, Limit: 100,
			ReadOptions: client.ReadOptions{MinIndex: lastIndex.Load(), Node: node}}
		for {
			page, err := e.client.ListComments(ctx, thread, opts)
			if err != nil {
				return nil, fmt.Errorf("read thread %s on %s: %w", thread, node, err)
			}
			if i > 0 {
				break
			}
			for _, c := range page.Comments {
				ids = append(ids, c.ID)
			}
			if page.NextCursor == "" {
				break
			}
			opts.Cursor = page.NextCursor
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("thread %s has no top-level comments", thread)
	}
	return ids, nil
}

// createComments adds count comments to thread and returns their ids.
func createComments(ctx context.Context, e *env, thread string, count int,
	lastIndex *atomic.Uint64) ([]string, error) {
	var (
		mu      sync.Mutex
		created []string
		next    atomic.Int64
	)
	group, ctx := errgroup.WithContext(ctx)
	for worker := range prepareConcurrency {
		group.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(worker), 7))
			for next.Add(1) <= int64(count) {
				nc := client.NewComment{
					Author: fmt.Sprintf("bench-user-%d", rng.IntN(5000)),
					Body:   "a comment of a realistic length, give or take a few words",
				}
				mu.Lock()
				if len(created) > 0 && rng.IntN(10) >= 3 {
					nc.Parent = created[rng.IntN(len(created))]
				}
				mu.Unlock()
				c, err := e.client.CreateComment(ctx, thread, nc)
				if err != nil {
					return fmt.Errorf("create a comment in %s: %w", thread, err)
				}
				storeMaxIndex(lastIndex, c.Index)
				mu.Lock()
				created = append(created, c.ID)
				mu.Unlock()
			}
			return nil
		})
	}
	return created, group.Wait()
}

// castVotes casts count votes on ids, skewed towards the first of them,
// each comment with its own share of up-votes.
func castVotes(ctx context.Context, e *env, ids []string, count int,
	lastIndex *atomic.Uint64) error {
	if len(ids) == 0 || count == 0 {
		return nil
	}
	var next atomic.Int64
	group, ctx := errgroup.WithContext(ctx)
	for worker := range prepareConcurrency {
		group.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(worker), 11))
			for i := next.Add(1); i <= int64(count); i = next.Add(1) {
				f := rng.Float64()
				k := int(f * f * float64(len(ids)))
				vote := client.VoteUp
				if rand.New(rand.NewPCG(uint64(k), 3)).Float64() < rng.Float64() {
					vote = client.VoteDown
				}
				c, err := e.client.Vote(ctx, ids[k], fmt.Sprintf("bench-voter-%d", i), vote)
				if err != nil {
					return fmt.Errorf("vote on %s: %w", ids[k], err)
				}
				storeMaxIndex(lastIndex, c.Index)
			}
			return nil
		})
	}
	return group.Wait()
}

// storeMaxIndex raises v to n if n is larger.
func storeMaxIndex(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}
