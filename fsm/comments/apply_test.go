package comments

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
)

func TestCreateRepliesAndCounts(t *testing.T) {
	e := newTestEnv(t, t.TempDir())

	root := e.must(CreateCommand{Thread: "t", Author: "ann", Body: "root"})
	require.Equal(t, "1", root.ID)
	require.Equal(t, 0, root.Depth)
	require.Equal(t, "", root.Parent)
	require.Equal(t, testStart, root.Created)

	a := e.must(CreateCommand{Thread: "t", Parent: root.ID, Author: "bob", Body: "a"})
	b := e.must(CreateCommand{Thread: "t", Parent: a.ID, Author: "cat", Body: "b"})
	e.must(CreateCommand{Thread: "t", Parent: a.ID, Author: "dan", Body: "c"})
	e.must(CreateCommand{Thread: "other", Author: "ann", Body: "elsewhere"})
	require.Equal(t, "3", b.ID)
	require.Equal(t, 2, b.Depth)
	require.Equal(t, a.ID, b.Parent)

	for _, c := range []struct {
		id               string
		replies, descend int64
	}{{"1", 1, 3}, {"2", 2, 2}, {"3", 0, 0}, {"4", 0, 0}, {"5", 0, 0}} {
		got, err := Get(e.db, c.id)
		require.NoError(t, err)
		require.Equal(t, c.replies, got.ReplyCount, "reply_count of %s", c.id)
		require.Equal(t, c.descend, got.DescendantCount, "descendant_count of %s", c.id)
	}

	info, err := GetThread(e.db, "t")
	require.NoError(t, err)
	require.Equal(t, ThreadInfo{Thread: "t", Comments: 4, TopLevel: 1}, info)

	// Deleting keeps the place, the replies and the counts.
	del := e.must(DeleteCommand{ID: a.ID, Author: "bob"})
	require.True(t, del.Deleted)
	require.Empty(t, del.Author)
	require.Empty(t, del.Body)
	require.Equal(t, int64(2), del.ReplyCount)
	got, err := Get(e.db, root.ID)
	require.NoError(t, err)
	require.Equal(t, int64(1), got.ReplyCount)
	require.Equal(t, int64(3), got.DescendantCount)
	replies := e.listAll(Query{Parent: root.ID, Sort: SortNew})
	require.Equal(t, []string{a.ID}, ids(replies))
	require.True(t, replies[0].Deleted)
	require.Equal(t, []string{"3", "4"}, ids(e.listAll(Query{Parent: a.ID, Sort: SortOld})))

	// Deleting again is harmless for the author, forbidden for others.
	again := e.must(DeleteCommand{ID: a.ID, Author: "bob"})
	require.Equal(t, del, again)
	_, err = e.apply(DeleteCommand{ID: a.ID, Author: "cat"})
	require.Equal(t, fsm.CodeForbidden, errCode(err))

	// Editing is the author's, and sets the edit time.
	_, err = e.apply(EditCommand{ID: b.ID, Author: "bob", Body: "mine now"})
	require.Equal(t, fsm.CodeForbidden, errCode(err))
	edited := e.must(EditCommand{ID: b.ID, Author: "cat", Body: "better"})
	require.Equal(t, "better", edited.Body)
	require.NotNil(t, edited.Edited)
	require.True(t, edited.Edited.After(edited.Created))
}

func TestCommentJSON(t *testing.T) {
	e := newTestEnv(t, t.TempDir())
	e.now = time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	e.must(CreateCommand{Thread: "t", Author: "ann", Body: "hello"})
	e.must(VoteCommand{ID: "1", User: "u", Vote: VoteUp})

	c, err := Get(e.db, "1")
	require.NoError(t, err)
	b, err := json.Marshal(c)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"1","thread":"t","author":"ann","body":"hello",
		"created":"2024-03-01T11:00:00.123456789Z","depth":0,"upvotes":1,
		"downvotes":0,"likes":0,"reply_count":0,"descendant_count":0,"score":1,
		"best":0.37844750322520615,"deleted":false}`, string(b))

	p, err := List(e.db, Query{Thread: "t", Limit: 1})
	require.NoError(t, err)
	b, err = json.Marshal(p)
	require.NoError(t, err)
	require.Contains(t, string(b), `"next_cursor":null`)
}

// TestVoteAndLikeRules runs sequences of votes and likes by users on one
// comment. A step is "user:up", "user:down", "user:none", "user:like" or
// "user:unlike"; changed says whether the last step changed anything.
func TestVoteAndLikeRules(t *testing.T) {
	tests := []struct {
		steps             []string
		ups, downs, likes int64
		lastStepChanges   bool
		lastStepErrCode   string
		deleteBeforeLast  bool
	}{
		{steps: []string{"a:up"}, ups: 1, lastStepChanges: true},
		{steps: []string{"a:down"}, downs: 1, lastStepChanges: true},
		{steps: []string{"a:none"}},
		{steps: []string{"a:up", "a:up"}, ups: 1},
		{steps: []string{"a:down", "a:down"}, downs: 1},
		{steps: []string{"a:up", "a:down"}, downs: 1, lastStepChanges: true},
		{steps: []string{"a:down", "a:up"}, ups: 1, lastStepChanges: true},
		{steps: []string{"a:up", "a:none"}, lastStepChanges: true},
		{steps: []string{"a:down", "a:none"}, lastStepChanges: true},
		{steps: []string{"a:up", "a:none", "a:none"}},
		{steps: []string{"a:up", "b:up", "c:down"}, ups: 2, downs: 1, lastStepChanges: true},
		{steps: []string{"a:up", "b:up", "a:down", "b:none"}, downs: 1, lastStepChanges: true},
		{steps: []string{"a:like"}, likes: 1, lastStepChanges: true},
		{steps: []string{"a:like", "a:like"}, likes: 1},
		{steps: []string{"a:unlike"}},
		{steps: []string{"a:like", "a:unlike"}, lastStepChanges: true},
		{steps: []string{"a:like", "b:like", "a:unlike"}, likes: 1, lastStepChanges: true},
		{steps: []string{"a:like", "a:up"}, ups: 1, likes: 1, lastStepChanges: true},
		{steps: []string{"a:up", "a:like", "a:down"}, downs: 1, likes: 1, lastStepChanges: true},
		// The author may vote and like too.
		{steps: []string{"author:up", "author:like"}, ups: 1, likes: 1, lastStepChanges: true},
		// A deleted comment takes no votes or likes; earlier ones stay.
		{steps: []string{"a:up", "b:up"}, ups: 1, deleteBeforeLast: true,
			lastStepErrCode: fsm.CodeConflict},
		{steps: []string{"a:like", "a:unlike"}, likes: 1, deleteBeforeLast: true,
			lastStepErrCode: fsm.CodeConflict},
		{steps: []string{"a:sideways"}, lastStepErrCode: fsm.CodeInvalid},
		{steps: []string{"a:UP"}, lastStepErrCode: fsm.CodeInvalid},
		{steps: []string{":up"}, lastStepErrCode: fsm.CodeInvalid},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("#%d", i), func(t *testing.T) {
			e := newTestEnv(t, t.TempDir())
			e.must(CreateCommand{Thread: "t", Author: "author", Body: "x"})

			for j, s := range tt.steps {
				last := j == len(tt.steps)-1
				if last && tt.deleteBeforeLast {
					e.must(DeleteCommand{ID: "1", Author: "author"})
				}
				user, what, _ := strings.Cut(s, ":")
				var cmd Command = VoteCommand{ID: "1", User: user, Vote: what}
				switch what {
				case "like", "unlike":
					cmd = LikeCommand{ID: "1", User: user, Like: what == "like"}
				}
				op, payload, err := Encode(cmd)
				if err == nil {
					var out fsm.Output
					out, err = e.applyRaw(op, payload, e.now)
					if err == nil {
						require.Equal(t, len(out.Events) == 1, !last || tt.lastStepChanges,
							"step %d %q: events %v", j, s, out.Events)
					}
				}
				wantCode := ""
				if last {
					wantCode = tt.lastStepErrCode
				}
				require.Equal(t, wantCode, errCode(err), "step %d %q: %v", j, s, err)
			}

			c, err := Get(e.db, "1")
			require.NoError(t, err)
			require.Equal(t, tt.ups, c.Upvotes, "upvotes")
			require.Equal(t, tt.downs, c.Downvotes, "downvotes")
			require.Equal(t, tt.likes, c.Likes, "likes")
			require.Equal(t, tt.ups-tt.downs, c.Score, "score")

			// The listings that depend on votes agree with the counts.
			for _, sort := range Sorts() {
				got := e.listAll(Query{Thread: "t", Sort: sort})
				require.Len(t, got, 1)
				require.Equal(t, c, got[0])
			}
		})
	}
}

// seedThreads creates a small state that the bad-input cases refer to:
// thread "t" with comments 1 (ann) <- 2 (bob) and deleted 3 (cat), and
// thread "u" with comment 4 (dan).
func seedThreads(e *testEnv) {
	e.must(CreateCommand{Thread: "t", Author: "ann", Body: "one"})
	e.must(CreateCommand{Thread: "t", Parent: "1", Author: "bob", Body: "two"})
	e.must(CreateCommand{Thread: "t", Author: "cat", Body: "three"})
	e.must(DeleteCommand{ID: "3", Author: "cat"})
	e.must(CreateCommand{Thread: "u", Author: "dan", Body: "four"})
	e.must(VoteCommand{ID: "1", User: "bob", Vote: VoteUp})
	e.must(LikeCommand{ID: "2", User: "ann", Like: true})
}

func TestBadCommands(t *testing.T) {
	long := func(n int) string { return strings.Repeat("é", n/2) + strings.Repeat("x", n%2) }
	tests := []struct {
		cmd  Command
		code string
		// validateOnly marks input that JSON cannot carry to Apply as it is
		// (invalid UTF-8 becomes U+FFFD); only Validate and Encode see it.
		validateOnly bool
	}{
		// Create.
		{cmd: CreateCommand{Thread: "", Author: "a", Body: "b"}, code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: long(257), Author: "a", Body: "b"}, code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "t\xff", Author: "a", Body: "b"}, code: fsm.CodeInvalid,
			validateOnly: true},
		{cmd: CreateCommand{Thread: "t", Author: "", Body: "b"}, code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "t", Author: long(129), Body: "b"}, code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "t", Author: "a\xc3", Body: "b"}, code: fsm.CodeInvalid,
			validateOnly: true},
		{cmd: CreateCommand{Thread: "t", Author: "a", Body: ""}, code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "t", Author: "a", Body: long(10001)}, code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "t", Author: "a", Body: "b\xed\xa0\x80"},
			code: fsm.CodeInvalid, validateOnly: true},
		{cmd: CreateCommand{Thread: "t", Parent: "99", Author: "a", Body: "b"},
			code: fsm.CodeNotFound},
		{cmd: CreateCommand{Thread: "t", Parent: "x1", Author: "a", Body: "b"},
			code: fsm.CodeNotFound},
		{cmd: CreateCommand{Thread: "t", Parent: "01", Author: "a", Body: "b"},
			code: fsm.CodeNotFound},
		{cmd: CreateCommand{Thread: "t", Parent: "4", Author: "a", Body: "b"},
			code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "new", Parent: "1", Author: "a", Body: "b"},
			code: fsm.CodeInvalid},
		{cmd: CreateCommand{Thread: "t", Parent: "3", Author: "a", Body: "b"},
			code: fsm.CodeConflict},

		// Edit.
		{cmd: EditCommand{ID: "1", Author: "ann", Body: ""}, code: fsm.CodeInvalid},
		{cmd: EditCommand{ID: "1", Author: "ann", Body: long(10001)}, code: fsm.CodeInvalid},
		{cmd: EditCommand{ID: "1", Author: "ann", Body: "\xff"}, code: fsm.CodeInvalid,
			validateOnly: true},
		{cmd: EditCommand{ID: "1", Author: "", Body: "b"}, code: fsm.CodeInvalid},
		{cmd: EditCommand{ID: "1", Author: "bob", Body: "b"}, code: fsm.CodeForbidden},
		{cmd: EditCommand{ID: "3", Author: "cat", Body: "b"}, code: fsm.CodeConflict},
		{cmd: EditCommand{ID: "3", Author: "ann", Body: "b"}, code: fsm.CodeForbidden},
		{cmd: EditCommand{ID: "5", Author: "ann", Body: "b"}, code: fsm.CodeNotFound},
		{cmd: EditCommand{ID: "", Author: "ann", Body: "b"}, code: fsm.CodeNotFound},

		// Delete.
		{cmd: DeleteCommand{ID: "1", Author: "bob"}, code: fsm.CodeForbidden},
		{cmd: DeleteCommand{ID: "3", Author: "ann"}, code: fsm.CodeForbidden},
		{cmd: DeleteCommand{ID: "1", Author: ""}, code: fsm.CodeInvalid},
		{cmd: DeleteCommand{ID: "18446744073709551616", Author: "ann"},
			code: fsm.CodeNotFound},
		{cmd: DeleteCommand{ID: "-1", Author: "ann"}, code: fsm.CodeNotFound},

		// Vote and like.
		{cmd: VoteCommand{ID: "1", User: "u", Vote: "sideways"}, code: fsm.CodeInvalid},
		{cmd: VoteCommand{ID: "1", User: "u", Vote: ""}, code: fsm.CodeInvalid},
		{cmd: VoteCommand{ID: "1", User: "", Vote: VoteUp}, code: fsm.CodeInvalid},
		{cmd: VoteCommand{ID: "1", User: long(129), Vote: VoteUp}, code: fsm.CodeInvalid},
		{cmd: VoteCommand{ID: "0", User: "u", Vote: VoteUp}, code: fsm.CodeNotFound},
		{cmd: VoteCommand{ID: "6", User: "u", Vote: VoteUp}, code: fsm.CodeNotFound},
		{cmd: VoteCommand{ID: "3", User: "u", Vote: VoteUp}, code: fsm.CodeConflict},
		{cmd: LikeCommand{ID: "1", User: "", Like: true}, code: fsm.CodeInvalid},
		{cmd: LikeCommand{ID: "7", User: "u", Like: true}, code: fsm.CodeNotFound},
		{cmd: LikeCommand{ID: "3", User: "u", Like: true}, code: fsm.CodeConflict},
	}

	e := newTestEnv(t, t.TempDir())
	seedThreads(e)
	before := e.digest()
	for i, tt := range tests {
		t.Run(fmt.Sprintf("#%d", i), func(t *testing.T) {
			// The API's path: Encode validates.
			_, err := e.apply(tt.cmd)
			require.Equal(t, tt.code, errCode(err), "%v", err)
			require.Equal(t, before, e.digest())

			// Apply's own checks, for a command that skipped Validate.
			if tt.validateOnly {
				return
			}
			payload, err := json.Marshal(tt.cmd)
			require.NoError(t, err)
			_, err = e.applyRaw(tt.cmd.Op(), payload, e.now)
			require.Equal(t, tt.code, errCode(err), "%v", err)
			require.Equal(t, before, e.digest())
		})
	}

	raw := []struct {
		op      uint8
		payload string
	}{
		{0, `{}`},
		{99, `{"id":"1"}`},
		{OpCreate, ``},
		{OpCreate, `{"thread":`},
		{OpCreate, `[]`},
		{OpVote, `{"id":1,"user":"u","vote":"up"}`},
		{OpLike, `{"id":"1","user":"u","like":"yes"}`},
		{OpEdit, `"edit"`},
	}
	for i, tt := range raw {
		t.Run(fmt.Sprintf("raw#%d", i), func(t *testing.T) {
			_, err := e.applyRaw(tt.op, []byte(tt.payload), e.now)
			require.Equal(t, fsm.CodeInvalid, errCode(err), "%v", err)
			require.Equal(t, before, e.digest())
		})
	}
}

func TestBadQueries(t *testing.T) {
	e := newTestEnv(t, t.TempDir())
	seedThreads(e)
	for i := 0; i < 5; i++ {
		e.must(CreateCommand{Thread: "t", Author: "x", Body: "more"})
	}
	first, err := List(e.db, Query{Thread: "t", Sort: SortTop, Limit: 2})
	require.NoError(t, err)
	require.NotNil(t, first.NextCursor)
	cursor := *first.NextCursor
	tamper := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}

	tests := []struct {
		q    Query
		code string
	}{
		{q: Query{Thread: "nope"}, code: fsm.CodeNotFound},
		{q: Query{Thread: ""}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t\xff"}, code: fsm.CodeInvalid},
		{q: Query{Parent: "42"}, code: fsm.CodeNotFound},
		{q: Query{Parent: "abc"}, code: fsm.CodeNotFound},
		{q: Query{Thread: "u", Parent: "1"}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: "hot"}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: "TOP"}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Limit: -1}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Limit: 101}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Replies: -1}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Replies: 101}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Replies: 1, Depth: 11}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Depth: -1}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: "garbage"}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: cursor + "A"}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: cursor[1:]}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: tamper(cursor, 0)}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: tamper(cursor, 10)}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: tamper(cursor, 34)}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortNew, Cursor: cursor}, code: fsm.CodeInvalid},
		{q: Query{Thread: "u", Sort: SortTop, Cursor: cursor}, code: fsm.CodeInvalid},
		{q: Query{Parent: "1", Sort: SortTop, Cursor: cursor}, code: fsm.CodeInvalid},
		{q: Query{Thread: "t", Sort: SortTop, Cursor: cursor}, code: ""},
		{q: Query{Thread: "t", Parent: "1", Sort: SortTop, Limit: 100}, code: ""},
	}
	before := e.digest()
	for i, tt := range tests {
		_, err := List(e.db, tt.q)
		require.Equal(t, tt.code, errCode(err), "#%d %+v: %v", i, tt.q, err)
	}
	require.Equal(t, before, e.digest())
}

// randomCommands returns a seeded random sequence of commands over a few
// threads, users and comments, some of them bound to fail.
func randomCommands(seed uint64, n int) []Command {
	rng := rand.New(rand.NewPCG(seed, 0))
	users := []string{"ann", "bob", "cat", "dan", "eve"}
	threads := []string{"t", "u"}
	created := 0
	user := func() string { return users[rng.IntN(len(users))] }
	id := func() string { return fmt.Sprint(1 + rng.IntN(created+2)) }
	var cmds []Command
	for len(cmds) < n {
		switch k := rng.IntN(10); {
		case k < 3 || created == 0:
			c := CreateCommand{Thread: threads[rng.IntN(2)], Author: user(), Body: "b"}
			if rng.IntN(3) > 0 && created > 0 {
				c.Parent = id()
			}
			created++
			cmds = append(cmds, c)
		case k < 7:
			v := []string{VoteUp, VoteDown, VoteNone}[rng.IntN(3)]
			cmds = append(cmds, VoteCommand{ID: id(), User: user(), Vote: v})
		case k < 8:
			cmds = append(cmds, LikeCommand{ID: id(), User: user(), Like: rng.IntN(2) == 0})
		case k < 9:
			cmds = append(cmds, EditCommand{ID: id(), Author: user(), Body: "edited"})
		default:
			cmds = append(cmds, DeleteCommand{ID: id(), Author: user()})
		}
	}
	return cmds
}

// TestDeterminism applies the same commands to two databases, one command
// per batch in one and many per batch in the other, and compares digests
// and replies.
func TestDeterminism(t *testing.T) {
	cmds := randomCommands(1, 600)
	one := newTestEnv(t, t.TempDir())
	many := newTestEnv(t, t.TempDir())

	var batch = many.db.NewBatch()
	for i, cmd := range cmds {
		at := testStart.Add(time.Duration(i) * time.Second)
		op, payload, err := Encode(cmd)
		require.NoError(t, err)
		out1, err1 := one.applyRaw(op, payload, at)
		req := fsm.Request{Index: uint64(i + 1), Time: at, Op: op, Payload: payload}
		out2, err2 := many.d.Apply(batch, req)
		require.Equal(t, errCode(err1), errCode(err2), "#%d %#v", i, cmd)
		require.Equal(t, out1, out2, "#%d %#v", i, cmd)
		if i%17 == 16 {
			require.NoError(t, batch.Commit(false))
			batch.Close()
			batch = many.db.NewBatch()
		}
	}
	require.NoError(t, batch.Commit(false))
	batch.Close()
	require.Equal(t, one.digest(), many.digest())
}
