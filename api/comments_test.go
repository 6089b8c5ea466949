package api_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/api"
	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/cluster"
	"github.com/shoal-db/shoal/fsm/comments"
	"github.com/shoal-db/shoal/hottier"
	"github.com/shoal-db/shoal/internal/nodetest"
)

// startCommentsNode runs a one-node cluster with the comments domain and,
// if hot is not nil, a hot tier; its handler is called directly.
func startCommentsNode(t testing.TB, hot *hottier.Config) *inputNode {
	t.Helper()
	server := nodetest.Start(t, nodetest.Config{HotTier: hot})
	return &inputNode{node: server.Node, handler: server.Handler}
}

// mustJSON sends a request and decodes its 2xx reply into out.
func (in *inputNode) mustJSON(t testing.TB, method, target, body string, want int, out any,
	header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	rec := in.do(method, target, []byte(body), header)
	require.Equal(t, want, rec.Code, "%s %s %s: %s", method, target, body, rec.Body.String())
	if out != nil {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), out))
	}
	return rec
}

// create adds a comment and returns it.
func (in *inputNode) create(t testing.TB, thread, parent, author, body string) client.Comment {
	t.Helper()
	fields := map[string]string{"author": author, "body": body}
	if parent != "" {
		fields["parent"] = parent // an empty parent is a 400: left out for a top-level one
	}
	raw, _ := json.Marshal(fields)
	var c client.Comment
	rec := in.mustJSON(t, "POST", "/v1/threads/"+url.PathEscape(thread)+"/comments", string(raw),
		http.StatusCreated, &c, nil)
	require.Equal(t, "/v1/comments/"+c.ID, rec.Header().Get("Location"))
	require.Equal(t, strconv.FormatUint(c.Index, 10), rec.Header().Get(api.HeaderIndex))
	return c
}

// wilson is the lower bound of the Wilson score interval at z = 1.2816.
func wilson(ups, downs int64) float64 {
	if ups == 0 {
		return 0
	}
	const z = 1.281551565545
	n := float64(ups + downs)
	p := float64(ups) / n
	return (p + z*z/(2*n) - z*math.Sqrt((p*(1-p)+z*z/(4*n))/n)) / (1 + z*z/n)
}

// TestCommentVotesAndLikes walks the vote and like rules over HTTP: one
// vote per user and comment, switching moves both counts, repeating
// changes nothing, none withdraws; a like per user is on or off.
func TestCommentVotesAndLikes(t *testing.T) {
	in := startCommentsNode(t, nil)
	c := in.create(t, "rules", "", "alice", "vote on me")

	for i, step := range []struct {
		user, vote string
		ups, downs int64
	}{
		{"u1", "up", 1, 0},
		{"u1", "up", 1, 0},
		{"u1", "down", 0, 1},
		{"u2", "down", 0, 2},
		{"u1", "none", 0, 1},
		{"u1", "none", 0, 1},
		{"u3", "up", 1, 1},
		{"u2", "up", 2, 0},
		{"alice", "up", 3, 0}, // authors may vote on their own comments
		{"u2", "none", 2, 0},
		{"u4", "none", 2, 0},
	} {
		name := fmt.Sprintf("#%d %s %s", i, step.user, step.vote)
		var got client.Comment
		in.mustJSON(t, "POST", "/v1/comments/"+c.ID+"/votes",
			fmt.Sprintf(`{"user": %q, "vote": %q}`, step.user, step.vote), http.StatusOK, &got, nil)
		require.Equal(t, step.ups, got.Upvotes, name)
		require.Equal(t, step.downs, got.Downvotes, name)
		require.Equal(t, step.ups-step.downs, got.Score, name)
		require.InDelta(t, wilson(step.ups, step.downs), got.Best, 1e-12, name)
		require.NotZero(t, got.Index, name)
	}

	for i, step := range []struct {
		user  string
		like  bool
		likes int64
	}{
		{"u1", true, 1},
		{"u1", true, 1},
		{"u2", true, 2},
		{"u1", false, 1},
		{"u1", false, 1},
		{"u3", false, 1},
		{"u1", true, 2},
	} {
		var got client.Comment
		in.mustJSON(t, "POST", "/v1/comments/"+c.ID+"/likes",
			fmt.Sprintf(`{"user": %q, "like": %t}`, step.user, step.like), http.StatusOK, &got,
			nil)
		require.Equal(t, step.likes, got.Likes, "#%d", i)
		require.Equal(t, int64(2), got.Upvotes, "#%d: likes leave votes alone", i)
	}
}

// TestCommentBadInputIsRejectedAndChangesNothing sends the comment
// endpoints bad input of every kind: each is a 4xx in the JSON error shape
// and leaves the applied index and the state digest as they were.
func TestCommentBadInputIsRejectedAndChangesNothing(t *testing.T) {
	in := startCommentsNode(t, nil)
	top := in.create(t, "t1", "", "alice", "top")
	reply := in.create(t, "t1", top.ID, "bob", "reply")
	other := in.create(t, "t2", "", "carol", "elsewhere")
	gone := in.create(t, "t1", "", "dave", "to be deleted")
	in.mustJSON(t, "DELETE", "/v1/comments/"+gone.ID+"?author=dave", "", http.StatusOK, nil, nil)

	// Real cursors, for using them where they do not belong.
	var page client.CommentPage
	in.mustJSON(t, "GET", "/v1/threads/t1/comments?limit=1&sort=new", "", http.StatusOK, &page,
		nil)
	require.NotEmpty(t, page.NextCursor)
	cursor := page.NextCursor
	forged := []byte(cursor)
	forged[5] ^= 1
	if forged[5] == '-' || forged[5] == '_' || forged[5] > 'z' {
		forged[5] = 'A'
	}

	big := func(n int) string { return strings.Repeat("x", n) }
	comment := func(author, body string) string {
		return fmt.Sprintf(`{"author": %q, "body": %q}`, author, body)
	}
	as := func(user string) http.Header { return http.Header{api.HeaderUser: {user}} }
	threadPath := "/v1/threads/t1/comments"
	topPath := "/v1/comments/" + top.ID

	for i, tc := range []struct {
		method, path, body string
		header             http.Header
		want               int
	}{
		// POST /v1/threads/{thread}/comments
		{"POST", threadPath, ``, nil, 400},
		{"POST", threadPath, `{`, nil, 400},
		{"POST", threadPath, `[]`, nil, 400},
		{"POST", threadPath, `null`, nil, 400},
		{"POST", threadPath, `{"author": "a"}`, nil, 400},
		{"POST", threadPath, comment("a", ""), nil, 400},
		{"POST", threadPath, comment("", "x"), nil, 400},
		{"POST", threadPath, comment("a", big(comments.MaxBodyLen+1)), nil, 400},
		{"POST", threadPath, comment(big(comments.MaxUserLen+1), "x"), nil, 400},
		{"POST", threadPath, `{"author": "a", "body": "x", "extra": 1}`, nil, 400},
		{"POST", threadPath, `{"author": "a", "body": "x", "Parent ": "1"}`, nil, 400},
		{"POST", threadPath, `{"author": 1, "body": "x"}`, nil, 400},
		{"POST", threadPath, `{"author": "a", "body": ["x"]}`, nil, 400},
		{"POST", threadPath, `{"author": "a", "body": "x", "parent": 1}`, nil, 400},
		{"POST", threadPath, `{"author": "a", "body": "x"} {}`, nil, 400},
		{"POST", threadPath, "{\"author\": \"a\", \"body\": \"\xff\"}", nil, 400},
		{"POST", threadPath, "{\"author\": \"a\xc3\", \"body\": \"x\"}", nil, 400},
		{"POST", threadPath, `{"author": "a", "body": "` + big(1<<20) + `"}`, nil, 413},
		{"POST", threadPath, `{"author": "a", "body": "x", "parent": "` + other.ID + `"}`, nil,
			400},
		{"POST", threadPath, `{"author": "a", "body": "x", "parent": "999"}`, nil, 404},
		{"POST", threadPath, `{"author": "a", "body": "x", "parent": "x1"}`, nil, 404},
		{"POST", threadPath, `{"author": "a", "body": "x", "parent": "0"}`, nil, 404},
		{"POST", threadPath, `{"author": "a", "body": "x", "parent": "` + gone.ID + `"}`, nil,
			409},
		{"POST", threadPath, comment("alice", "x"), as("mallory"), 403},
		{"POST", threadPath, comment("a", "x"), http.Header{api.HeaderIdempotencyKey: {big(129)}},
			400},
		{"POST", "/v1/threads/" + big(comments.MaxThreadLen+1) + "/comments", comment("a", "x"),
			nil, 400},
		{"POST", "/v1/threads/a%FFb/comments", comment("a", "x"), nil, 400},
		{"PUT", threadPath, comment("a", "x"), nil, 405},

		// PATCH /v1/comments/{id}
		{"PATCH", topPath, comment("bob", "edited"), nil, 403},
		{"PATCH", topPath, comment("alice", ""), nil, 400},
		{"PATCH", topPath, comment("alice", big(comments.MaxBodyLen+1)), nil, 400},
		{"PATCH", topPath, `{"author": "alice", "body": "x", "parent": "2"}`, nil, 400},
		{"PATCH", topPath, `{"author": "alice"}`, nil, 400},
		{"PATCH", topPath, comment("alice", "x"), as("bob"), 403},
		{"PATCH", "/v1/comments/999", comment("alice", "x"), nil, 404},
		{"PATCH", "/v1/comments/abc", comment("alice", "x"), nil, 404},
		{"PATCH", "/v1/comments/0" + top.ID, comment("alice", "x"), nil, 404},
		{"PATCH", "/v1/comments/-1", comment("alice", "x"), nil, 404},

		// DELETE /v1/comments/{id}
		{"DELETE", topPath, ``, nil, 400},
		{"DELETE", topPath + "?author=bob", ``, nil, 403},
		{"DELETE", topPath, `{"author": "bob"}`, nil, 403},
		{"DELETE", topPath + "?author=alice", `{"author": "bob"}`, nil, 400},
		{"DELETE", topPath + "?author=alice&author=alice", ``, nil, 400},
		{"DELETE", topPath + "?author=alice&force=1", ``, nil, 400},
		{"DELETE", topPath, `{"author": "alice", "why": "x"}`, nil, 400},
		{"DELETE", topPath + "?author=alice", ``, as("bob"), 403},
		{"DELETE", "/v1/comments/999?author=alice", ``, nil, 404},

		// POST /v1/comments/{id}/votes
		{"POST", topPath + "/votes", `{"user": "u", "vote": "sideways"}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "u", "vote": "UP"}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "u", "vote": ""}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "u"}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "u", "vote": 1}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "u", "vote": true}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "", "vote": "up"}`, nil, 400},
		{"POST", topPath + "/votes", `{"vote": "up"}`, nil, 400},
		{"POST", topPath + "/votes", `{"user": "u", "vote": "up", "weight": 2}`, nil, 400},
		{"POST", topPath + "/votes", "{\"user\": \"u\xff\", \"vote\": \"up\"}", nil, 400},
		{"POST", topPath + "/votes", `{"user": "u", "vote": "up"}`, as("v"), 403},
		{"POST", "/v1/comments/999/votes", `{"user": "u", "vote": "up"}`, nil, 404},
		{"POST", "/v1/comments/" + gone.ID + "/votes", `{"user": "u", "vote": "up"}`, nil, 409},
		{"GET", topPath + "/votes", ``, nil, 405},

		// POST /v1/comments/{id}/likes
		{"POST", topPath + "/likes", `{"user": "u"}`, nil, 400},
		{"POST", topPath + "/likes", `{"user": "u", "like": null}`, nil, 400},
		{"POST", topPath + "/likes", `{"user": "u", "like": "yes"}`, nil, 400},
		{"POST", topPath + "/likes", `{"user": "u", "like": 1}`, nil, 400},
		{"POST", topPath + "/likes", `{"like": true}`, nil, 400},
		{"POST", topPath + "/likes", `{"user": "u", "like": true}`, as("v"), 403},
		{"POST", "/v1/comments/999/likes", `{"user": "u", "like": true}`, nil, 404},
		{"POST", "/v1/comments/" + gone.ID + "/likes", `{"user": "u", "like": true}`, nil, 409},

		// Reads.
		{"GET", "/v1/comments/999", ``, nil, 404},
		{"GET", "/v1/comments/abc", ``, nil, 404},
		{"GET", topPath + "?sort=top", ``, nil, 400},
		{"GET", "/v1/threads/nosuch", ``, nil, 404},
		{"GET", "/v1/threads/nosuch/comments", ``, nil, 404},
		{"GET", "/v1/comments/999/replies", ``, nil, 404},
		{"GET", threadPath + "?sort=hot", ``, nil, 400},
		{"GET", threadPath + "?sort=", ``, nil, 400},
		{"GET", threadPath + "?sort=TOP", ``, nil, 400},
		{"GET", threadPath + "?sort=%FF", ``, nil, 400},
		{"GET", threadPath + "?sort=top&sort=new", ``, nil, 400},
		{"GET", threadPath + "?limit=0", ``, nil, 400},
		{"GET", threadPath + "?limit=101", ``, nil, 400},
		{"GET", threadPath + "?limit=-1", ``, nil, 400},
		{"GET", threadPath + "?limit=abc", ``, nil, 400},
		{"GET", threadPath + "?limit=1.5", ``, nil, 400},
		{"GET", threadPath + "?limit=", ``, nil, 400},
		{"GET", threadPath + "?limit=99999999999999999999", ``, nil, 400},
		{"GET", threadPath + "?replies=101", ``, nil, 400},
		{"GET", threadPath + "?replies=-1", ``, nil, 400},
		{"GET", threadPath + "?replies=2&depth=0", ``, nil, 400},
		{"GET", threadPath + "?replies=2&depth=11", ``, nil, 400},
		{"GET", threadPath + "?depth=2", ``, nil, 400},
		{"GET", threadPath + "?cursor=" + string(forged) + "&sort=new", ``, nil, 400},
		{"GET", threadPath + "?cursor=" + cursor, ``, nil, 400}, // another sort
		{"GET", threadPath + "?cursor=" + cursor + "&sort=top", ``, nil, 400},
		{"GET", "/v1/threads/t2/comments?sort=new&cursor=" + cursor, ``, nil, 400},
		{"GET", "/v1/comments/" + top.ID + "/replies?sort=new&cursor=" + cursor, ``, nil, 400},
		{"GET", threadPath + "?cursor=x&sort=new", ``, nil, 400},
		{"GET", threadPath + "?cursor=" + big(40) + "&sort=new", ``, nil, 400},
		{"GET", threadPath + "?cursor=%FF&sort=new", ``, nil, 400},
		{"GET", threadPath + "?sorting=top", ``, nil, 400},
		{"GET", threadPath + "?consistency=bogus", ``, nil, 400},
		{"GET", threadPath + "?min_index=x", ``, nil, 400},
		{"GET", threadPath + "?sort=top;limit=2", ``, nil, 400},
		{"GET", "/v1/comments/" + reply.ID + "/replies?limit=0", ``, nil, 400},
		{"DELETE", threadPath, ``, nil, 405},
	} {
		name := fmt.Sprintf("#%d %s %s %.60q", i, tc.method, tc.path, tc.body)
		index, digest := in.state(t)
		rec := in.do(tc.method, tc.path, []byte(tc.body), tc.header)
		requireRejected(t, rec, tc.want, name)
		afterIndex, afterDigest := in.state(t)
		require.Equal(t, index, afterIndex, "%s changed the applied index", name)
		require.Equal(t, digest, afterDigest, "%s changed the state", name)
	}

	// Writes to a deleted comment by its author or by others are rejected
	// when applied, since a deleted comment shows no author: they take a
	// log index, and change no comment.
	for i, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"PATCH", "/v1/comments/" + gone.ID, comment("dave", "x"), 409},
		{"PATCH", "/v1/comments/" + gone.ID, comment("eve", "x"), 403},
		{"DELETE", "/v1/comments/" + gone.ID + "?author=eve", ``, 403},
	} {
		name := fmt.Sprintf("#%d %s %s %.60q", i, tc.method, tc.path, tc.body)
		before := in.do("GET", "/v1/threads/t1/comments?replies=10", nil, nil)
		requireRejected(t, in.do(tc.method, tc.path, []byte(tc.body), nil), tc.want, name)
		after := in.do("GET", "/v1/threads/t1/comments?replies=10", nil, nil)
		require.Equal(t, withoutIndex(t, before.Body.Bytes()), withoutIndex(t, after.Body.Bytes()),
			name)
	}

	// The same requests done right go through.
	in.mustJSON(t, "POST", threadPath, `{"author": "a", "body": "x", "parent": "`+top.ID+`"}`,
		http.StatusCreated, nil, nil)
	in.mustJSON(t, "PATCH", topPath, comment("alice", "edited"), http.StatusOK, nil, nil)
	in.mustJSON(t, "GET", threadPath+"?sort=new&cursor="+cursor, "", http.StatusOK, nil, nil)
	in.mustJSON(t, "DELETE", topPath, `{"author": "alice"}`, http.StatusOK, nil, nil)
}

// withoutIndex decodes a JSON object and drops its "index".
func withoutIndex(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(raw, &v))
	delete(v, "index")
	return v
}

// TestCommentThreadNames creates comments on threads whose names need
// escaping and reads them back by the escaped name.
func TestCommentThreadNames(t *testing.T) {
	in := startCommentsNode(t, nil)
	for _, tc := range []struct{ thread, escaped string }{
		{"with space", "with%20space"},
		{"ünïcødé ✓ 评论", url.PathEscape("ünïcødé ✓ 评论")},
		{"a/b", "a%2Fb"},
		{"a//b/", "a%2F%2Fb%2F"},
		{"?#%&=", "%3F%23%25&="},
		{".", "%2E"},
		{"..", "%2E%2E"},
		{strings.Repeat("é", comments.MaxThreadLen/2), url.PathEscape(
			strings.Repeat("é", comments.MaxThreadLen/2))},
	} {
		var c client.Comment
		in.mustJSON(t, "POST", "/v1/threads/"+tc.escaped+"/comments",
			`{"author": "a", "body": "hello"}`, http.StatusCreated, &c, nil)
		require.Equal(t, tc.thread, c.Thread)

		var page client.CommentPage
		in.mustJSON(t, "GET", "/v1/threads/"+tc.escaped+"/comments", "", http.StatusOK, &page,
			nil)
		require.Len(t, page.Comments, 1, tc.thread)
		require.Equal(t, c.ID, page.Comments[0].ID, tc.thread)

		var info client.ThreadInfo
		in.mustJSON(t, "GET", "/v1/threads/"+tc.escaped, "", http.StatusOK, &info, nil)
		require.Equal(t, client.ThreadInfo{Thread: tc.thread, Comments: 1, TopLevel: 1,
			Index: info.Index}, info)
	}
}

// TestCommentIdentity checks that X-Shoal-User, when sent, is who acts:
// a body naming someone else is refused, and a body naming nobody acts as
// the identity.
func TestCommentIdentity(t *testing.T) {
	in := startCommentsNode(t, nil)
	as := func(user string) http.Header { return http.Header{api.HeaderUser: {user}} }

	var c client.Comment
	in.mustJSON(t, "POST", "/v1/threads/id/comments", `{"body": "mine"}`, http.StatusCreated,
		&c, as("alice"))
	require.Equal(t, "alice", c.Author)
	in.mustJSON(t, "POST", "/v1/threads/id/comments", `{"author": "alice", "body": "x"}`,
		http.StatusCreated, nil, as("alice"))
	in.mustJSON(t, "POST", "/v1/threads/id/comments", `{"body": "x"}`, http.StatusBadRequest,
		nil, nil)

	in.mustJSON(t, "PATCH", "/v1/comments/"+c.ID, `{"body": "edited"}`, http.StatusForbidden,
		nil, as("bob"))
	in.mustJSON(t, "PATCH", "/v1/comments/"+c.ID, `{"body": "edited"}`, http.StatusOK, &c,
		as("alice"))
	require.Equal(t, "edited", c.Body)
	require.NotNil(t, c.Edited)

	in.mustJSON(t, "POST", "/v1/comments/"+c.ID+"/votes", `{"vote": "up"}`, http.StatusOK, &c,
		as("bob"))
	require.Equal(t, int64(1), c.Upvotes)
	in.mustJSON(t, "POST", "/v1/comments/"+c.ID+"/likes", `{"like": true}`, http.StatusOK, &c,
		as("bob"))
	require.Equal(t, int64(1), c.Likes)

	in.mustJSON(t, "DELETE", "/v1/comments/"+c.ID, ``, http.StatusForbidden, nil, as("bob"))
	in.mustJSON(t, "DELETE", "/v1/comments/"+c.ID, ``, http.StatusOK, &c, as("alice"))
	require.True(t, c.Deleted)
}

// TestCommentDeleteKeepsPlaceAndCounts checks the deleted-comment rules as
// the API shows them: listed in place with its replies, no body or author,
// still counted, not editable or votable, deleting again is harmless.
func TestCommentDeleteKeepsPlaceAndCounts(t *testing.T) {
	in := startCommentsNode(t, nil)
	top := in.create(t, "d", "", "alice", "top")
	mid := in.create(t, "d", top.ID, "bob", "middle")
	leaf := in.create(t, "d", mid.ID, "carol", "leaf")

	var deleted client.Comment
	in.mustJSON(t, "DELETE", "/v1/comments/"+mid.ID+"?author=bob", "", http.StatusOK, &deleted,
		nil)
	require.True(t, deleted.Deleted)
	require.Empty(t, deleted.Body)
	require.Empty(t, deleted.Author)
	var again client.Comment
	in.mustJSON(t, "DELETE", "/v1/comments/"+mid.ID, `{"author": "bob"}`, http.StatusOK, &again,
		nil)
	require.True(t, again.Deleted)

	var page client.CommentPage
	in.mustJSON(t, "GET", "/v1/threads/d/comments?replies=5&depth=3", "", http.StatusOK, &page,
		nil)
	require.Len(t, page.Comments, 1)
	got := page.Comments[0]
	require.Equal(t, int64(1), got.ReplyCount)
	require.Equal(t, int64(2), got.DescendantCount)
	require.NotNil(t, got.Replies)
	require.Len(t, got.Replies.Comments, 1)
	require.True(t, got.Replies.Comments[0].Deleted)
	require.Equal(t, int64(1), got.Replies.Comments[0].ReplyCount)
	require.Len(t, got.Replies.Comments[0].Replies.Comments, 1)
	require.Equal(t, leaf.ID, got.Replies.Comments[0].Replies.Comments[0].ID)

	var replies client.CommentPage
	in.mustJSON(t, "GET", "/v1/comments/"+mid.ID+"/replies", "", http.StatusOK, &replies, nil)
	require.Len(t, replies.Comments, 1)
	require.Equal(t, leaf.ID, replies.Comments[0].ID)
	in.mustJSON(t, "GET", "/v1/comments/"+mid.ID, "", http.StatusOK, &got, nil)
	require.True(t, got.Deleted)
}

// TestCommentListingPagesAndIndex pages through a listing with small
// pages: every comment once, in order, and each page's body index equals
// its X-Shoal-Index.
func TestCommentListingPagesAndIndex(t *testing.T) {
	in := startCommentsNode(t, nil)
	var ids []string
	for i := range 12 {
		c := in.create(t, "pages", "", fmt.Sprintf("user-%d", i), "comment")
		ids = append(ids, c.ID)
		for v := 0; v < i%4; v++ {
			in.mustJSON(t, "POST", "/v1/comments/"+c.ID+"/votes",
				fmt.Sprintf(`{"user": "v%d", "vote": "up"}`, v), http.StatusOK, nil, nil)
		}
	}

	for _, sort := range []string{"old", "new", "top"} {
		var seen []client.Comment
		cursor := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			target := "/v1/threads/pages/comments?limit=5&sort=" + sort
			if cursor != "" {
				target += "&cursor=" + url.QueryEscape(cursor)
			}
			var page client.CommentPage
			rec := in.mustJSON(t, "GET", target, "", http.StatusOK, &page, nil)
			require.Equal(t, strconv.FormatUint(page.Index, 10), rec.Header().Get(api.HeaderIndex))
			require.LessOrEqual(t, len(page.Comments), 5)
			seen = append(seen, page.Comments...)
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		require.Len(t, seen, len(ids), sort)
		for i, c := range seen {
			switch sort {
			case "old":
				require.Equal(t, ids[i], c.ID)
			case "new":
				require.Equal(t, ids[len(ids)-1-i], c.ID)
			case "top":
				if i > 0 {
					prev := seen[i-1]
					prevID, _ := strconv.Atoi(prev.ID)
					id, _ := strconv.Atoi(c.ID)
					require.True(t, prev.Score > c.Score || (prev.Score == c.Score && prevID < id),
						"%s before %s", prev.ID, c.ID)
				}
			}
		}
	}
}

// TestCommentFirstPageThroughHotTier reads a first page often enough to
// make it hot, then changes the thread in ways that move the page (a vote,
// a new comment, an edit): the next read through the tier always shows
// the change.
func TestCommentFirstPageThroughHotTier(t *testing.T) {
	redis := cluster.StartRedisTest(t).Addr()
	hot := hottier.DefaultConfig()
	hot.RedisAddr, hot.KeyPrefix, hot.HotReads = redis, "test:", 2
	in := startCommentsNode(t, &hot)
	first := in.create(t, "hot thread", "", "alice", "first")
	second := in.create(t, "hot thread", "", "bob", "second")

	read := func(sort string) (client.CommentPage, string) {
		var page client.CommentPage
		rec := in.mustJSON(t, "GET", "/v1/threads/hot%20thread/comments?sort="+sort, "",
			http.StatusOK, &page, nil)
		require.Equal(t, strconv.FormatUint(page.Index, 10), rec.Header().Get(api.HeaderIndex))
		return page, rec.Header().Get(api.HeaderTier)
	}
	warm := func(sort string) {
		t.Helper()
		require.Eventually(t, func() bool {
			_, tier := read(sort)
			return tier == hottier.TierNear
		}, 10*time.Second, 10*time.Millisecond, "the first page never came from the near cache")
	}

	warm("top")
	warm("new")
	page, _ := read("top")
	require.Equal(t, []string{first.ID, second.ID}, []string{page.Comments[0].ID,
		page.Comments[1].ID})

	// A vote moves second above first in "top" and changes its counts in
	// "new", whose order it leaves.
	in.mustJSON(t, "POST", "/v1/comments/"+second.ID+"/votes", `{"user": "u", "vote": "up"}`,
		http.StatusOK, nil, nil)
	page, _ = read("top")
	require.Equal(t, second.ID, page.Comments[0].ID)
	require.Equal(t, int64(1), page.Comments[0].Upvotes)
	page, _ = read("new")
	require.Equal(t, int64(1), page.Comments[0].Upvotes)

	// A new comment and an edit show at once, hot or not.
	warm("new")
	third := in.create(t, "hot thread", "", "carol", "third")
	page, _ = read("new")
	require.Equal(t, third.ID, page.Comments[0].ID)
	warm("new")
	in.mustJSON(t, "PATCH", "/v1/comments/"+third.ID, `{"author": "carol", "body": "3rd"}`,
		http.StatusOK, nil, nil)
	page, _ = read("new")
	require.Equal(t, "3rd", page.Comments[0].Body)

	// Pages that are not first pages at the default limit skip the tier.
	rec := in.mustJSON(t, "GET", "/v1/threads/hot%20thread/comments?limit=2", "",
		http.StatusOK, nil, nil)
	require.Empty(t, rec.Header().Get(api.HeaderTier))
}
