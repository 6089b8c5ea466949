package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/shoal-db/shoal/client"
)

// The counter workload. A few comments are created before the faults
// start; then clients vote "up" on them through every node, each vote by a
// user of its own and under an idempotency key of its own. Once the
// cluster is whole again, every vote whose outcome is unknown is sent
// again with its key, which applies it if and only if it had not been
// applied, so that afterwards every vote is acknowledged exactly once.
// Then every node must show, for every comment, exactly as many upvotes
// as votes were sent for it: a lost vote shows as too few, a vote applied
// twice (a retry that escaped its key) as too many.

// counterVote is one vote as its client saw it.
type counterVote struct {
	comment, user, key string
	acked              bool
	err                string
}

// counterWorkload drives concurrent voters.
type counterWorkload struct {
	addrs    []string
	clients  int
	seed     uint64
	comments []string

	mu    sync.Mutex
	votes []counterVote
}

// errNoComments means the nodes have no comments API.
var errNoComments = errors.New("cluster: the nodes do not serve the comments API")

// setup creates the comments to vote on. It returns errNoComments when
// the binary has no comments endpoints.
func (w *counterWorkload) setup(ctx context.Context, count int) error {
	cl, err := newChaosClient(w.addrs, 0)
	if err != nil {
		return err
	}
	for i := 0; i < count; i++ {
		var reply struct {
			ID string `json:"id"`
		}
		body := map[string]string{"author": "chaos", "body": fmt.Sprintf("counter %d", i)}
		_, err := cl.Do(ctx, http.MethodPost, "/v1/threads/chaos/comments", body, &reply,
			client.RequestOptions{})
		if noRoute(err) {
			return errNoComments
		}
		if err != nil {
			return fmt.Errorf("cluster: create comment: %w", err)
		}
		w.comments = append(w.comments, reply.ID)
	}
	return nil
}

// run drives the voters until ctx ends.
func (w *counterWorkload) run(ctx context.Context) {
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

func (w *counterWorkload) runClient(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(w.seed, 1000+uint64(id)))
	cl, err := newChaosClient(w.addrs, id)
	if err != nil {
		return
	}
	var local []counterVote
	for seq := 0; ctx.Err() == nil; seq++ {
		v := counterVote{comment: w.comments[rng.IntN(len(w.comments))],
			user: fmt.Sprintf("voter-%d-%d", id, seq)}
		v.key = "chaos-vote-" + v.comment + "-" + v.user
		opCtx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		err := w.send(opCtx, cl, v)
		cancel()
		v.acked = err == nil
		if err != nil {
			v.err = err.Error()
		}
		local = append(local, v)
	}
	w.mu.Lock()
	w.votes = append(w.votes, local...)
	w.mu.Unlock()
}

func (w *counterWorkload) send(ctx context.Context, cl *client.Client, v counterVote) error {
	body := map[string]string{"user": v.user, "vote": "up"}
	_, err := cl.Do(ctx, http.MethodPost, "/v1/comments/"+url.PathEscape(v.comment)+"/votes",
		body, nil, client.RequestOptions{IdempotencyKey: v.key})
	return err
}

// settle sends every vote of unknown outcome again under its key until it
// is acknowledged. It returns how many it resent.
func (w *counterWorkload) settle(ctx context.Context) (int, error) {
	cl, err := newChaosClient(w.addrs, 0)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	resent := 0
	for i := range w.votes {
		v := &w.votes[i]
		if v.acked {
			continue
		}
		resent++
		for !v.acked {
			err := w.send(ctx, cl, *v)
			var apiErr *client.APIError
			switch {
			case err == nil:
				v.acked = true
			case ctx.Err() != nil:
				return resent, fmt.Errorf("vote %s could not be settled: %v", v.key, err)
			case errors.As(err, &apiErr) && !apiErr.Temporary():
				return resent, fmt.Errorf("vote %s rejected on resend: %v (first: %s)",
					v.key, err, v.err)
			}
		}
	}
	return resent, nil
}

// check reads every comment from every node at strong consistency and
// compares its upvotes with the votes sent for it.
func (w *counterWorkload) check(ctx context.Context) (votes int, anomalies []string) {
	want := map[string]int64{}
	w.mu.Lock()
	votes = len(w.votes)
	for _, v := range w.votes {
		want[v.comment]++
	}
	w.mu.Unlock()

	cl, err := newChaosClient(w.addrs, 0)
	if err != nil {
		return votes, []string{err.Error()}
	}
	for _, addr := range w.addrs {
		for _, id := range w.comments {
			var c struct {
				Upvotes int64 `json:"upvotes"`
			}
			_, err := cl.Do(ctx, http.MethodGet, "/v1/comments/"+url.PathEscape(id), nil, &c,
				client.RequestOptions{Node: addr,
					Query: url.Values{"consistency": {"strong"}}})
			switch {
			case err != nil:
				anomalies = append(anomalies, fmt.Sprintf("read comment %s on %s: %v", id,
					addr, err))
			case c.Upvotes != want[id]:
				anomalies = append(anomalies, fmt.Sprintf("comment %s on %s has %d upvotes, "+
					"%d distinct votes were acknowledged", id, addr, c.Upvotes, want[id]))
			}
		}
	}
	return votes, anomalies
}
