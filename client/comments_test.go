package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/internal/nodetest"
)

// TestCommentMethods drives every comment method of the client against a
// real one-node cluster in the test process.
func TestCommentMethods(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{})
	c, err := client.New(client.Config{Addrs: []string{server.Addr}})
	require.NoError(t, err)
	ctx := context.Background()

	// Threads whose names need escaping, "." and ".." included.
	for _, thread := range []string{"news/2026 12", ".", "..", "ünï ✓", "a?b#c%d"} {
		top, err := c.CreateComment(ctx, thread, client.NewComment{Author: "ann", Body: "top"})
		require.NoError(t, err, thread)
		require.Equal(t, thread, top.Thread)
		require.NotZero(t, top.Index)
		require.Equal(t, "n1", top.Node)

		reply, err := c.CreateComment(ctx, thread, client.NewComment{Parent: top.ID,
			Author: "bo", Body: "reply"})
		require.NoError(t, err, thread)
		require.Equal(t, top.ID, reply.Parent)
		require.Equal(t, 1, reply.Depth)

		info, err := c.GetThread(ctx, thread, client.ReadOptions{MinIndex: reply.Index})
		require.NoError(t, err, thread)
		require.Equal(t, int64(2), info.Comments)
		require.Equal(t, int64(1), info.TopLevel)

		page, err := c.ListComments(ctx, thread, client.ListOptions{Replies: 5, Depth: 2})
		require.NoError(t, err, thread)
		require.Len(t, page.Comments, 1)
		require.Empty(t, page.NextCursor)
		require.GreaterOrEqual(t, page.Index, reply.Index)
		require.Len(t, page.Comments[0].Replies.Comments, 1)
		require.Equal(t, reply.ID, page.Comments[0].Replies.Comments[0].ID)
	}

	// Votes, likes, edits and deletes return the comment as it now is.
	top, err := c.CreateComment(ctx, "t", client.NewComment{Author: "ann", Body: "hello"})
	require.NoError(t, err)
	voted, err := c.Vote(ctx, top.ID, "u1", client.VoteUp)
	require.NoError(t, err)
	require.Equal(t, int64(1), voted.Upvotes)
	voted, err = c.Vote(ctx, top.ID, "u1", client.VoteDown)
	require.NoError(t, err)
	require.Equal(t, [2]int64{0, 1}, [2]int64{voted.Upvotes, voted.Downvotes})
	liked, err := c.Like(ctx, top.ID, "u1", true)
	require.NoError(t, err)
	require.Equal(t, int64(1), liked.Likes)
	edited, err := c.EditComment(ctx, top.ID, "ann", "hello, edited")
	require.NoError(t, err)
	require.Equal(t, "hello, edited", edited.Body)
	require.NotNil(t, edited.Edited)

	_, err = c.EditComment(ctx, top.ID, "bo", "not mine")
	var apiErr *client.APIError
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusForbidden, apiErr.Status)
	_, err = c.Vote(ctx, top.ID, "u1", "sideways")
	require.True(t, errors.As(err, &apiErr))
	require.Equal(t, http.StatusBadRequest, apiErr.Status)
	_, err = c.GetComment(ctx, "999", client.ReadOptions{})
	require.True(t, client.IsNotFound(err), "%v", err)
	_, err = c.ListComments(ctx, "no such thread", client.ListOptions{})
	require.True(t, client.IsNotFound(err), "%v", err)

	deleted, err := c.DeleteComment(ctx, top.ID, "ann")
	require.NoError(t, err)
	require.True(t, deleted.Deleted)
	got, err := c.GetComment(ctx, top.ID, client.ReadOptions{MinIndex: deleted.Index})
	require.NoError(t, err)
	require.True(t, got.Deleted)
	require.Empty(t, got.Body)

	// Replies page with cursors, in the order asked for.
	parent, err := c.CreateComment(ctx, "pages", client.NewComment{Author: "ann", Body: "p"})
	require.NoError(t, err)
	var want []string
	for range 7 {
		r, err := c.CreateComment(ctx, "pages", client.NewComment{Parent: parent.ID,
			Author: "bo", Body: "r"})
		require.NoError(t, err)
		want = append([]string{r.ID}, want...)
	}
	var got2 []string
	opts := client.ListOptions{Sort: client.SortNew, Limit: 3}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4)
		page, err := c.ListReplies(ctx, parent.ID, opts)
		require.NoError(t, err)
		for _, r := range page.Comments {
			got2 = append(got2, r.ID)
		}
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	require.Equal(t, want, got2)
}

// TestCommentWriteAppliedOnceWhenReplyIsLost loses the reply of a create
// and of a vote after the node applied them: the client's retry carries
// the same idempotency key, so each is applied once.
func TestCommentWriteAppliedOnceWhenReplyIsLost(t *testing.T) {
	server := nodetest.Start(t, nodetest.Config{})
	var drop atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && drop.Add(-1) >= 0 {
			// Apply, then break the connection instead of replying.
			server.Handler.ServeHTTP(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler)
		}
		server.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	c, err := client.New(client.Config{Addrs: []string{front.URL},
		RetryBackoff: time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()

	drop.Store(1)
	created, err := c.CreateComment(ctx, "lost", client.NewComment{Author: "a", Body: "b"})
	require.NoError(t, err)
	require.Equal(t, int32(-1), drop.Load(), "the create was not sent twice")
	drop.Store(1)
	voted, err := c.Vote(ctx, created.ID, "u", client.VoteUp)
	require.NoError(t, err)
	require.Equal(t, int32(-1), drop.Load(), "the vote was not sent twice")
	require.Equal(t, int64(1), voted.Upvotes)

	info, err := c.GetThread(ctx, "lost", client.ReadOptions{MinIndex: voted.Index})
	require.NoError(t, err)
	require.Equal(t, int64(1), info.Comments, "the create was applied twice")
}
