package replay

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
)

// VerifiedSorts are the listing orders VerifyComments checks. The
// expected order of each is computed here from the file alone, without
// shoal's code: "new" and "old" by creation order, "top" by ups - downs,
// "replies" by the number of direct replies in the file, "best" by the
// Wilson lower bound, every tie by shoal id ascending.
var VerifiedSorts = []string{
	client.SortNew, client.SortOld, client.SortTop, client.SortReplies, client.SortBest,
}

// DefaultVerifyPageSize is the page size of VerifyComments: small enough
// that the thread's top level and its largest reply lists take several
// pages, so that cursors are part of what is verified.
const DefaultVerifyPageSize = 7

// wilsonZ is the normal quantile of Reddit's 80 % confidence "best" score.
const wilsonZ = 1.281551565545

// WilsonLowerBound returns the lower bound of the Wilson score interval
// of the share of upvotes at 80 % confidence, 0 without upvotes: the
// "best" score, computed here independently of the server's code.
func WilsonLowerBound(ups, downs int64) float64 {
	if ups <= 0 {
		return 0
	}
	n := float64(ups + downs)
	phat := float64(ups) / n
	z2 := wilsonZ * wilsonZ
	root := math.Sqrt(phat*(1-phat)/n + z2/(4*n*n))
	return (phat + z2/(2*n) - wilsonZ*root) / (1 + z2/n)
}

// expectedComment is one comment as the file implies it after a replay.
type expectedComment struct {
	fileID  string
	id      string // shoal id
	num     uint64 // shoal id as a number, the tie-breaker
	parent  string // shoal id of the parent, "" for a top-level comment
	seq     int    // creation order
	author  string
	bodyLen int
	depth   int
	ups     int64
	downs   int64
	replies int64 // direct replies
	desc    int64 // all replies below
	best    float64
}

// commentsModel is the expected state of the replayed thread.
type commentsModel struct {
	thread   string
	comments map[string]*expectedComment // by shoal id
	scopes   map[string][]*expectedComment
	topLevel int
}

// newCommentsModel derives the expected comments from the file and the
// ids the replay got. Comments that were not created are left out, and so
// are their replies (which could not be created either).
func newCommentsModel(report CommentsReport) commentsModel {
	m := commentsModel{
		thread:   report.Thread,
		comments: map[string]*expectedComment{},
		scopes:   map[string][]*expectedComment{"": nil},
	}
	byFileID := map[string]*expectedComment{}
	for seq, fc := range report.File.Comments {
		id, ok := report.IDs[fc.ID]
		if !ok {
			continue
		}
		num, _ := strconv.ParseUint(id, 10, 64)
		e := &expectedComment{
			fileID: fc.ID, id: id, num: num, seq: seq, author: fc.Author,
			bodyLen: len(commentBody(fc.BodyChars)), depth: fc.Depth,
			ups: int64(fc.Ups), downs: int64(fc.Downs),
		}
		e.best = WilsonLowerBound(e.ups, e.downs)
		if parent := byFileID[fc.Parent]; parent != nil {
			e.parent = parent.id
			parent.replies++
			for a := parent; a != nil; a = byFileID[report.File.Comments[a.seq].Parent] {
				a.desc++
			}
		} else {
			m.topLevel++
		}
		byFileID[fc.ID] = e
		m.comments[id] = e
		m.scopes[e.parent] = append(m.scopes[e.parent], e)
	}
	return m
}

// order returns the ids of scope in listing order sort.
func (m commentsModel) order(scope, sort string) []string {
	list := slices.Clone(m.scopes[scope])
	byID := func(a, b *expectedComment) int { return cmp.Compare(a.num, b.num) }
	slices.SortFunc(list, func(a, b *expectedComment) int {
		switch sort {
		case client.SortNew:
			return cmp.Compare(b.seq, a.seq)
		case client.SortOld:
			return cmp.Compare(a.seq, b.seq)
		case client.SortTop:
			return cmp.Or(cmp.Compare(b.ups-b.downs, a.ups-a.downs), byID(a, b))
		case client.SortReplies:
			return cmp.Or(cmp.Compare(b.replies, a.replies), byID(a, b))
		case client.SortBest:
			return cmp.Or(cmp.Compare(b.best, a.best), byID(a, b))
		}
		panic("replay: no expected order for sort " + sort)
	})
	ids := make([]string, len(list))
	for i, e := range list {
		ids[i] = e.id
	}
	return ids
}

// check compares a listed comment with what the file implies; it returns
// a description of every difference.
func (m commentsModel) check(got client.Comment) []string {
	want, ok := m.comments[got.ID]
	if !ok {
		return []string{fmt.Sprintf("comment %s is not one the replay created", got.ID)}
	}
	var diffs []string
	compare := func(name string, g, w any) {
		if g != w {
			diffs = append(diffs, fmt.Sprintf("comment %s (file %s): %s is %v, want %v",
				got.ID, want.fileID, name, g, w))
		}
	}
	compare("thread", got.Thread, m.thread)
	compare("parent", got.Parent, want.parent)
	compare("author", got.Author, want.author)
	compare("body length", len(got.Body), want.bodyLen)
	compare("depth", got.Depth, want.depth)
	compare("upvotes", got.Upvotes, want.ups)
	compare("downvotes", got.Downvotes, want.downs)
	compare("score", got.Score, want.ups-want.downs)
	compare("reply_count", got.ReplyCount, want.replies)
	compare("descendant_count", got.DescendantCount, want.desc)
	compare("deleted", got.Deleted, false)
	if math.Abs(got.Best-want.best) > 1e-9 {
		compare("best", got.Best, want.best)
	}
	return diffs
}

// CommentsVerifyReport is the outcome of VerifyComments.
type CommentsVerifyReport struct {
	// Thread is the thread verified.
	Thread string
	// MinIndex is the index every read waited for.
	MinIndex uint64
	// Addrs are the nodes read.
	Addrs []string
	// Listings counts the listings read in full (per node, order and
	// scope), Pages their pages, and Comments the listed comments whose
	// counts were compared.
	Listings, Pages, Comments int
	// Problems counts every difference; Examples holds the first ones.
	Problems int
	Examples []string
}

// maxExamples bounds CommentsVerifyReport.Examples.
const maxExamples = 20

// Err returns nil when every node lists every order as expected, and an
// error wrapping ErrMismatch otherwise.
func (r CommentsVerifyReport) Err() error {
	if r.Problems == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d differences in the comment listings", ErrMismatch, r.Problems)
}

// Print writes a summary and the first differences.
func (r CommentsVerifyReport) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "verified thread %q on %d nodes at index %d\n", r.Thread, len(r.Addrs),
		r.MinIndex)
	fmt.Fprintf(tw, "orders\t%v\n", VerifiedSorts)
	fmt.Fprintf(tw, "listings\t%d (%d pages, %d comments compared)\n", r.Listings, r.Pages,
		r.Comments)
	if r.Problems == 0 {
		fmt.Fprintf(tw, "result\tok: every order and every count matches the file on every node\n")
	} else {
		fmt.Fprintf(tw, "result\tMISMATCH: %d differences\n", r.Problems)
		for _, e := range r.Examples {
			fmt.Fprintf(tw, "\t%s\n", e)
		}
	}
	return tw.Flush()
}

// verifyCommentsParallelism bounds the listings VerifyComments reads at
// once.
const verifyCommentsParallelism = 16

// VerifyComments reads, from every node in addrs (empty: every address of
// c) at min_index report.MinIndex, the thread's top-level listing and the
// replies of every comment, in every order of VerifiedSorts and all pages
// of pageSize (0: DefaultVerifyPageSize), and compares the order of ids
// and every comment's counts with what the file implies. Differences and
// failed reads are problems in the report; the error is non-nil only when
// ctx ends.
func VerifyComments(ctx context.Context, c *client.Client, report CommentsReport,
	addrs []string, pageSize int) (CommentsVerifyReport, error) {
	if len(addrs) == 0 {
		addrs = c.Addrs()
	}
	pageSize = cmp.Or(pageSize, DefaultVerifyPageSize)
	m := newCommentsModel(report)
	out := CommentsVerifyReport{Thread: report.Thread, MinIndex: report.MinIndex,
		Addrs: slices.Clone(addrs)}

	var mu sync.Mutex
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		out.Problems++
		if len(out.Examples) < maxExamples {
			out.Examples = append(out.Examples, fmt.Sprintf(format, args...))
		}
	}

	// The scopes: the top level, then every comment's replies.
	scopes := []string{""}
	for _, fc := range report.File.Comments {
		if id, ok := report.IDs[fc.ID]; ok {
			scopes = append(scopes, id)
		}
	}

	group, groupCtx := errgroup.WithContext(ctx)
	group.SetLimit(verifyCommentsParallelism)
	for _, addr := range addrs {
		read := client.ReadOptions{MinIndex: report.MinIndex, Node: addr}
		group.Go(func() error {
			info, err := c.GetThread(groupCtx, report.Thread, read)
			switch {
			case err != nil:
				problem("%s: thread: %v", addr, err)
			case info.Comments != int64(len(m.comments)) || info.TopLevel != int64(m.topLevel):
				problem("%s: thread has %d comments, %d top-level; want %d, %d", addr,
					info.Comments, info.TopLevel, len(m.comments), m.topLevel)
			}
			return nil
		})
		for _, sort := range VerifiedSorts {
			for _, scope := range scopes {
				group.Go(func() error {
					got, pages, err := listAll(groupCtx, c, report.Thread, scope, sort, pageSize,
						read)
					mu.Lock()
					out.Listings++
					out.Pages += pages
					out.Comments += len(got)
					mu.Unlock()
					where := fmt.Sprintf("%s: %s listing of %s", addr, sort, scopeName(scope))
					if err != nil {
						problem("%s: %v", where, err)
						return nil
					}
					ids := make([]string, len(got))
					for i, c := range got {
						ids[i] = c.ID
						for _, diff := range m.check(c) {
							problem("%s: %s", where, diff)
						}
					}
					if want := m.order(scope, sort); !slices.Equal(ids, want) {
						problem("%s: ids %v, want %v", where, ids, want)
					}
					return nil
				})
			}
		}
	}
	_ = group.Wait() // the goroutines report problems, not errors
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("replay: verify comments: %w", err)
	}
	return out, nil
}

// listAll reads every page of one listing: the top level of thread when
// scope is empty, else the replies of comment scope.
func listAll(ctx context.Context, c *client.Client, thread, scope, sort string, pageSize int,
	read client.ReadOptions) ([]client.Comment, int, error) {
	var all []client.Comment
	opts := client.ListOptions{Sort: sort, Limit: pageSize, ReadOptions: read}
	for pages := 1; ; pages++ {
		var page client.CommentPage
		var err error
		if scope == "" {
			page, err = c.ListComments(ctx, thread, opts)
		} else {
			page, err = c.ListReplies(ctx, scope, opts)
		}
		if err != nil {
			return all, pages, err
		}
		if page.Index < read.MinIndex {
			return all, pages, fmt.Errorf("page reflects index %d, below min_index %d",
				page.Index, read.MinIndex)
		}
		all = append(all, page.Comments...)
		if page.NextCursor == "" {
			return all, pages, nil
		}
		if pages > 10_000 {
			return all, pages, fmt.Errorf("listing does not end after %d pages", pages)
		}
		opts.Cursor = page.NextCursor
	}
}

// scopeName names a listing's scope in messages.
func scopeName(scope string) string {
	if scope == "" {
		return "the top level"
	}
	return "replies of " + scope
}
