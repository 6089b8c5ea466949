package replay

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
)

// CommentThread is a comment thread as the JSON-lines thread file holds
// it: a first line naming the thread, then one line per comment.
type CommentThread struct {
	// Thread is the thread's id in the file, such as "t3_vtvuk".
	Thread string
	// Comments are the file's comments in creation order: by created
	// time, parents before their replies, file order among equals.
	Comments []FileComment
}

// FileComment is one comment line of the thread file.
type FileComment struct {
	// ID is the comment's id in the file; Parent the id of the comment it
	// replies to, or the thread's id for a top-level comment.
	ID     string `json:"id"`
	Parent string `json:"parent"`
	// Author is the (anonymised) author.
	Author string `json:"author"`
	// CreatedUTC is the creation time in Unix seconds.
	CreatedUTC int64 `json:"created_utc"`
	// Ups and Downs are the comment's real vote counts.
	Ups   int `json:"ups"`
	Downs int `json:"downs"`
	// Depth is 0 for a top-level comment.
	Depth int `json:"depth"`
	// BodyChars is the length of the real text, which the file leaves out.
	BodyChars int `json:"body_chars"`
}

// TopLevel reports whether the comment is not a reply.
func (c FileComment) TopLevel(thread string) bool { return c.Parent == thread }

// ReadCommentThread parses a thread file and returns its comments in
// creation order. It checks that the file describes a tree: unique ids,
// every parent a comment of the file (or the thread), depths that agree
// with the parents, and no negative vote counts.
func ReadCommentThread(r io.Reader) (CommentThread, error) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)

	// The first line names the thread.
	var t CommentThread
	if !scanner.Scan() {
		return t, fmt.Errorf("replay: empty thread file: %w", cmp.Or(scanner.Err(), io.EOF))
	}
	var head struct {
		Thread string `json:"thread"`
	}
	if err := json.Unmarshal(scanner.Bytes(), &head); err != nil || head.Thread == "" {
		return t, fmt.Errorf("replay: thread file line 1: want {\"thread\": ...}: %v", err)
	}
	t.Thread = head.Thread

	// Then one comment per line.
	seen := map[string]bool{}
	for line := 2; scanner.Scan(); line++ {
		if strings.TrimSpace(scanner.Text()) == "" {
			continue
		}
		var c FileComment
		if err := json.Unmarshal(scanner.Bytes(), &c); err != nil {
			return t, fmt.Errorf("replay: thread file line %d: %w", line, err)
		}
		switch {
		case c.ID == "" || c.ID == t.Thread || seen[c.ID]:
			return t, fmt.Errorf("replay: thread file line %d: bad or repeated id %q", line, c.ID)
		case c.Ups < 0 || c.Downs < 0:
			return t, fmt.Errorf("replay: thread file line %d: negative votes", line)
		case c.Author == "":
			return t, fmt.Errorf("replay: thread file line %d: no author", line)
		}
		seen[c.ID] = true
		t.Comments = append(t.Comments, c)
	}
	if err := scanner.Err(); err != nil {
		return t, fmt.Errorf("replay: read thread file: %w", err)
	}

	// Creation order; a reply is never older than its parent, and among
	// equal times the shallower comment goes first.
	slices.SortStableFunc(t.Comments, func(a, b FileComment) int {
		return cmp.Or(cmp.Compare(a.CreatedUTC, b.CreatedUTC), cmp.Compare(a.Depth, b.Depth))
	})
	depth := map[string]int{}
	for _, c := range t.Comments {
		want := 0
		if !c.TopLevel(t.Thread) {
			parentDepth, ok := depth[c.Parent]
			if !ok {
				return t, fmt.Errorf("replay: comment %s replies to %s, which is not an older "+
					"comment of the file", c.ID, c.Parent)
			}
			want = parentDepth + 1
		}
		if c.Depth != want {
			return t, fmt.Errorf("replay: comment %s has depth %d, its parent implies %d",
				c.ID, c.Depth, want)
		}
		depth[c.ID] = c.Depth
	}
	return t, nil
}

// LoadCommentThread reads the thread file at path with ReadCommentThread.
func LoadCommentThread(path string) (CommentThread, error) {
	f, err := os.Open(path)
	if err != nil {
		return CommentThread{}, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	return ReadCommentThread(f)
}

// Votes returns the total number of up- and down-votes in the file.
func (t CommentThread) Votes() (ups, downs int) {
	for _, c := range t.Comments {
		ups += c.Ups
		downs += c.Downs
	}
	return ups, downs
}

// commentBody returns a stand-in text of n characters for a comment whose
// real text the file leaves out (at least one: the server wants a body).
func commentBody(n int) string {
	const words = "the quick brown fox jumps over the lazy dog and "
	n = max(n, 1)
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words)
	}
	return b.String()[:n]
}

// voterName returns the name of the i-th voter (from 1) of a comment:
// user-v000001, user-v000002, ... Each comment's voters are distinct; the
// same names vote on many comments, as real users do.
func voterName(i int) string { return fmt.Sprintf("user-v%06d", i) }

// DefaultCommentsConcurrency is the number of concurrent voters when
// CommentsOptions.Concurrency is zero.
const DefaultCommentsConcurrency = 32

// CommentsOptions adjusts Comments. The zero value is ready to use.
type CommentsOptions struct {
	// Thread is the name of the thread to create in shoal. Empty means the
	// file's thread id, or, when a thread of that name has comments
	// already (an earlier replay), the first free name among "<id> #2",
	// "<id> #3", ...
	Thread string
	// Concurrency is the number of concurrent voters; zero means
	// DefaultCommentsConcurrency. Comments are always created one at a
	// time, in time order.
	Concurrency int
	// Progress receives the progress (see progress); nil means none.
	Progress io.Writer
	// Seed orders the votes; votes are cast in a seeded random order so
	// that concurrent voters work on different comments.
	Seed uint64
}

// CommentsReport is the outcome of Comments.
type CommentsReport struct {
	// Thread is the name of the thread in shoal.
	Thread string
	// Comments is the number of comments in the file; Created how many of
	// them were created.
	Comments int
	Created  int
	// Ups and Downs are the votes the file implies; Voted how many of
	// them the cluster acknowledged.
	Ups, Downs int
	Voted      int
	// Errors counts writes that failed after the client's retries;
	// FirstError is the first of them.
	Errors     int
	FirstError error
	// CreateElapsed and VoteElapsed time the two phases.
	CreateElapsed, VoteElapsed time.Duration
	// MinIndex is the highest Raft index of any acknowledged write: a
	// read at min_index MinIndex on any node reflects the whole replay.
	MinIndex uint64
	// IDs maps each file comment id to its shoal comment id.
	IDs map[string]string
	// File is the replayed file, which Expected derives the listings from.
	File CommentThread
}

// VoteRate returns acknowledged votes per second.
func (r CommentsReport) VoteRate() float64 {
	if r.VoteElapsed <= 0 {
		return 0
	}
	return float64(r.Voted) / r.VoteElapsed.Seconds()
}

// String returns the summary lines of a replay.
func (r CommentsReport) String() string {
	return fmt.Sprintf("thread %q: created %d of %d comments in %.1fs; "+
		"cast %d of %d votes (%d up, %d down) in %.1fs (%.0f/s); %d errors; last index %d",
		r.Thread, r.Created, r.Comments, r.CreateElapsed.Seconds(), r.Voted, r.Ups+r.Downs,
		r.Ups, r.Downs, r.VoteElapsed.Seconds(), r.VoteRate(), r.Errors, r.MinIndex)
}

// Comments replays the thread file at path into the cluster behind c: it
// creates every comment, one at a time in time order with its real parent
// (so that shoal's ids and creation times follow the file), then casts
// each comment's real up- and down-votes from distinct users, Concurrency
// votes at a time. The client spreads the writes over all nodes and
// retries each one under its own idempotency key.
//
// A comment whose creation fails is skipped with its replies and votes;
// a failed vote is counted. The error is non-nil only when the file
// cannot be read, no thread name is free, or ctx ends; the report is
// filled in as far as the replay got in every case.
func Comments(
	ctx context.Context, c *client.Client, path string, opts CommentsOptions,
) (report CommentsReport, err error) {
	file, err := LoadCommentThread(path)
	if err != nil {
		return CommentsReport{}, err
	}
	report = CommentsReport{Comments: len(file.Comments), IDs: map[string]string{}, File: file}
	report.Ups, report.Downs = file.Votes()
	if report.Thread, err = pickThread(ctx, c, file.Thread, opts.Thread); err != nil {
		return report, err
	}

	// Every return below reports the failures counted so far.
	var failures failureLog
	defer func() { report.Errors, report.FirstError = failures.count, failures.first }()
	var maxIndex atomic.Uint64

	// Create the comments in order; each waits for its parent's id.
	bar := newProgress(opts.Progress, len(file.Comments), "comments", "comments")
	start := time.Now()
	for _, fc := range file.Comments {
		if err := ctx.Err(); err != nil {
			bar.finish(err)
			return report, fmt.Errorf("replay: comments stopped: %w", err)
		}
		nc := client.NewComment{Author: fc.Author, Body: commentBody(fc.BodyChars)}
		if !fc.TopLevel(file.Thread) {
			parent, ok := report.IDs[fc.Parent]
			if !ok {
				failures.add(fmt.Errorf("comment %s: its parent %s was not created", fc.ID,
					fc.Parent))
				continue
			}
			nc.Parent = parent
		}
		created, err := c.CreateComment(ctx, report.Thread, nc)
		if err != nil {
			failures.add(fmt.Errorf("create comment %s: %w", fc.ID, err))
			continue
		}
		report.IDs[fc.ID] = created.ID
		report.Created++
		storeMax(&maxIndex, created.Index)
		bar.add(1)
	}
	bar.finish(nil)
	report.CreateElapsed = time.Since(start)

	// Cast the votes in a seeded random order, many at a time.
	type vote struct{ id, user, value string }
	var votes []vote
	for _, fc := range file.Comments {
		id, ok := report.IDs[fc.ID]
		if !ok {
			continue
		}
		for i := 1; i <= fc.Ups+fc.Downs; i++ {
			value := client.VoteUp
			if i > fc.Ups {
				value = client.VoteDown
			}
			votes = append(votes, vote{id: id, user: voterName(i), value: value})
		}
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5eed))
	rng.Shuffle(len(votes), func(i, j int) { votes[i], votes[j] = votes[j], votes[i] })

	bar = newProgress(opts.Progress, len(votes), "votes", "votes")
	var voted atomic.Int64
	var next atomic.Int64
	start = time.Now()
	group, groupCtx := errgroup.WithContext(ctx)
	for range cmp.Or(opts.Concurrency, DefaultCommentsConcurrency) {
		group.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(votes) {
					return nil
				}
				if err := groupCtx.Err(); err != nil {
					return err
				}
				v := votes[i]
				reply, err := c.Vote(groupCtx, v.id, v.user, v.value)
				switch {
				case err != nil && groupCtx.Err() != nil:
					return groupCtx.Err()
				case err != nil:
					failures.add(fmt.Errorf("vote %s by %s on %s: %w", v.value, v.user, v.id, err))
				default:
					voted.Add(1)
					storeMax(&maxIndex, reply.Index)
				}
				bar.add(1)
			}
		})
	}
	err = group.Wait()
	bar.finish(err)
	report.VoteElapsed = time.Since(start)
	report.Voted = int(voted.Load())
	report.MinIndex = maxIndex.Load()
	if err != nil {
		return report, fmt.Errorf("replay: votes stopped after %d of %d: %w",
			report.Voted, len(votes), err)
	}
	return report, nil
}

// pickThread returns the thread name to replay into: want if given (it
// must have no comments yet), else base or the first free "base #N".
func pickThread(ctx context.Context, c *client.Client, base, want string) (string, error) {
	// A name is free when no node knows the thread. Local reads of every
	// node rather than one linearizable read: a strong read can stall
	// for seconds after a leader change that no write followed.
	free := func(name string) (bool, error) {
		for _, addr := range c.Addrs() {
			_, err := c.GetThread(ctx, name, client.ReadOptions{Node: addr})
			if !client.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	}
	if want != "" {
		ok, err := free(want)
		if err == nil && !ok {
			err = fmt.Errorf("thread %q has comments already", want)
		}
		if err != nil {
			return "", fmt.Errorf("replay: %w", err)
		}
		return want, nil
	}
	for n := 1; n <= 1000; n++ {
		name := base
		if n > 1 {
			name = fmt.Sprintf("%s #%d", base, n)
		}
		ok, err := free(name)
		if err != nil {
			return "", fmt.Errorf("replay: look up thread %q: %w", name, err)
		}
		if ok {
			return name, nil
		}
	}
	return "", errors.New("replay: no free thread name; pass one with --thread")
}

// failureLog counts failed writes and keeps the first; it is safe for
// concurrent use.
type failureLog struct {
	mu    sync.Mutex
	count int
	first error
}

func (f *failureLog) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	if f.first == nil {
		f.first = err
	}
}
