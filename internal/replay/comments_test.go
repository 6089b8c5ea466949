package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/internal/nodetest"
)

// redditFile is the real comment thread, outside the repository.
const redditFile = "../../../shared/data/reddit_thread.jsonl"

func TestReadCommentThreadRealFile(t *testing.T) {
	if _, err := os.Stat(redditFile); err != nil {
		t.Skipf("real thread file not available: %v", err)
	}
	thread, err := LoadCommentThread(redditFile)
	require.NoError(t, err)
	require.Equal(t, "t3_vtvuk", thread.Thread)
	require.Len(t, thread.Comments, 200)
	ups, downs := thread.Votes()
	require.Equal(t, [2]int{5958, 958}, [2]int{ups, downs})

	created := map[string]bool{}
	for i, c := range thread.Comments {
		if i > 0 {
			require.LessOrEqual(t, thread.Comments[i-1].CreatedUTC, c.CreatedUTC)
		}
		require.True(t, c.TopLevel(thread.Thread) || created[c.Parent], c.ID)
		created[c.ID] = true
	}
}

func TestReadCommentThreadRejectsBadFiles(t *testing.T) {
	const head = `{"thread": "t"}` + "\n"
	line := func(id, parent string, created, depth int) string {
		return fmt.Sprintf(`{"id": %q, "parent": %q, "author": "a", "created_utc": %d, `+
			`"ups": 1, "downs": 0, "depth": %d, "body_chars": 3}`+"\n", id, parent, created,
			depth)
	}
	for i, tc := range []struct{ file, want string }{
		{"", "empty"},
		{`{"id": "x"}` + "\n", "line 1"},
		{head + line("a", "t", 1, 0) + line("a", "t", 2, 0), "repeated id"},
		{head + line("a", "b", 1, 1), "not an older comment"},
		{head + line("b", "a", 1, 1) + line("a", "t", 2, 0), "not an older comment"},
		{head + line("a", "t", 1, 1), "depth 1"},
		{head + line("a", "t", 1, 0) + line("b", "a", 2, 2), "depth 2"},
		{head + strings.Replace(line("a", "t", 1, 0), `"ups": 1`, `"ups": -1`, 1), "negative"},
		{head + `{"id": "a", "ups": "many"}` + "\n", "line 2"},
		{head + strings.Replace(line("a", "t", 1, 0), `"author": "a"`, `"author": ""`, 1),
			"no author"},
	} {
		_, err := ReadCommentThread(strings.NewReader(tc.file))
		require.ErrorContains(t, err, tc.want, "#%d", i)
	}

	// Equal times: the parent still goes first.
	thread, err := ReadCommentThread(strings.NewReader(head + line("b", "a", 5, 1) +
		line("a", "t", 5, 0)))
	require.NoError(t, err)
	require.Equal(t, "a", thread.Comments[0].ID)
}

func TestWilsonLowerBound(t *testing.T) {
	require.Zero(t, WilsonLowerBound(0, 0))
	require.Zero(t, WilsonLowerBound(0, 12))
	// One upvote: (1 + z²/2 - z·z/2) / (1 + z²).
	require.InDelta(t, 1/(1+wilsonZ*wilsonZ), WilsonLowerBound(1, 0), 1e-15)
	// The real thread's top comment, as the server computed it.
	require.InDelta(t, 0.8852101426719297, WilsonLowerBound(458, 49), 1e-12)
	require.Greater(t, WilsonLowerBound(100, 10), WilsonLowerBound(10, 1))
}

// TestCommentsReplayAndVerify replays a small thread into a real node in
// the test process and verifies it; then changes one count behind the
// replay's back, which the verification must find.
func TestCommentsReplayAndVerify(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"thread": "small"}` + "\n")
	type fc struct {
		id, parent string
		ups, downs int
		depth      int
	}
	for i, c := range []fc{
		{"a", "small", 5, 1, 0}, {"b", "small", 5, 1, 0}, {"c", "a", 0, 3, 1},
		{"d", "a", 2, 0, 1}, {"e", "small", 9, 0, 0}, {"f", "d", 1, 1, 2},
		{"g", "small", 0, 0, 0}, {"h", "a", 2, 0, 1}, {"i", "small", 3, 3, 0},
	} {
		fmt.Fprintf(&b, `{"id": %q, "parent": %q, "author": "user-%d", "created_utc": %d, `+
			`"ups": %d, "downs": %d, "depth": %d, "body_chars": %d}`+"\n",
			c.id, c.parent, i, 1000+i, c.ups, c.downs, c.depth, 10+i)
	}
	path := filepath.Join(t.TempDir(), "thread.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))

	server := nodetest.Start(t, nodetest.Config{})
	c, err := client.New(client.Config{Addrs: []string{server.Addr}})
	require.NoError(t, err)
	ctx := context.Background()

	report, err := Comments(ctx, c, path, CommentsOptions{Concurrency: 4})
	require.NoError(t, err)
	require.Zero(t, report.Errors, "%v", report.FirstError)
	require.Equal(t, "small", report.Thread)
	require.Equal(t, 9, report.Created)
	require.Equal(t, 36, report.Voted)

	verified, err := VerifyComments(ctx, c, report, nil, 2)
	require.NoError(t, err)
	require.NoError(t, verified.Err(), "%v", verified.Examples)
	require.Equal(t, (1+9)*len(VerifiedSorts), verified.Listings)

	// A second replay goes to a new thread.
	again, err := Comments(ctx, c, path, CommentsOptions{})
	require.NoError(t, err)
	require.Equal(t, "small #2", again.Thread)

	// One vote more on "g" moves it in top and best and changes its count.
	voted, err := c.Vote(ctx, report.IDs["g"], "intruder", client.VoteUp)
	require.NoError(t, err)
	report.MinIndex = voted.Index
	verified, err = VerifyComments(ctx, c, report, nil, 2)
	require.NoError(t, err)
	require.Error(t, verified.Err())
	require.Contains(t, strings.Join(verified.Examples, "\n"), "upvotes is 1, want 0")
}
