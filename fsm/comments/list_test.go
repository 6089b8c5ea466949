package comments

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/shoal-db/shoal/fsm"
)

// modelComment is a comment as the brute-force model of the property test
// knows it, counted from scratch.
type modelComment struct {
	id       uint64
	thread   string
	parent   uint64
	author   string
	body     string
	created  int64
	depth    int
	votes    map[string]vote
	likes    map[string]bool
	children []uint64
	deleted  bool
}

type model struct {
	comments []*modelComment // comment id i at i-1
	threads  []string        // threads with comments, in creation order
}

func (m *model) get(id uint64) *modelComment {
	if id == 0 || id > uint64(len(m.comments)) {
		return nil
	}
	return m.comments[id-1]
}

func (c *modelComment) counts() (ups, downs, likes int64) {
	for _, v := range c.votes {
		switch v {
		case voteUp:
			ups++
		case voteDown:
			downs++
		}
	}
	for _, l := range c.likes {
		if l {
			likes++
		}
	}
	return ups, downs, likes
}

func (m *model) descendants(c *modelComment) int64 {
	n := int64(len(c.children))
	for _, id := range c.children {
		n += m.descendants(m.get(id))
	}
	return n
}

// sorted returns the comments of one scope sorted by brute force.
func (m *model) sorted(thread string, parent uint64, sort string) []*modelComment {
	var cs []*modelComment
	for _, c := range m.comments {
		if c.thread == thread && c.parent == parent {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *modelComment) int {
		au, ad, _ := a.counts()
		bu, bd, _ := b.counts()
		var r int
		switch sort {
		case SortNew:
			r = cmp.Compare(b.created, a.created)
		case SortOld:
			r = cmp.Compare(a.created, b.created)
		case SortTop:
			r = cmp.Compare(bu-bd, au-ad)
		case SortReplies:
			r = cmp.Compare(len(b.children), len(a.children))
		case SortBest:
			r = cmp.Compare(wilsonLowerBound(uint64(bu), uint64(bd)),
				wilsonLowerBound(uint64(au), uint64(ad)))
		case SortControversial:
			r = cmp.Compare(controversy(uint64(bu), uint64(bd)),
				controversy(uint64(au), uint64(ad)))
		default:
			panic(sort)
		}
		if r != 0 {
			return r
		}
		return cmp.Compare(a.id, b.id)
	})
	return cs
}

func modelIDs(cs []*modelComment) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = formatID(c.id)
	}
	return out
}

// checkComment compares a comment as read with the model.
func (m *model) checkComment(t require.TestingT, mc *modelComment, c Comment) {
	ups, downs, likes := mc.counts()
	want := Comment{
		ID:              formatID(mc.id),
		Thread:          mc.thread,
		Created:         time.Unix(0, mc.created).UTC(),
		Depth:           mc.depth,
		Upvotes:         ups,
		Downvotes:       downs,
		Likes:           likes,
		ReplyCount:      int64(len(mc.children)),
		DescendantCount: m.descendants(mc),
		Score:           ups - downs,
		Best:            wilsonLowerBound(uint64(ups), uint64(downs)),
		Deleted:         mc.deleted,
	}
	if mc.parent != 0 {
		want.Parent = formatID(mc.parent)
	}
	if !mc.deleted {
		want.Author, want.Body = mc.author, mc.body
	}
	c.Edited, c.Replies = nil, nil
	require.Equal(t, want, c)
}

// TestListingsMatchBruteForce is the index consistency property: after any
// sequence of creates (random trees over two threads), votes, likes, edits
// and deletes, some of them failing, every comment reads as the model
// counts it, and every listing order of every thread and every parent,
// paged through cursors with small limits, equals a brute-force sort.
func TestListingsMatchBruteForce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		e := newTestEnv(t, t.TempDir())
		defer e.close()
		m := &model{}
		users := []string{"ann", "bob", "cat", "dan"}
		threads := []string{"t", "u", "t/x\x00y"}
		drawUser := rapid.SampledFrom(users)
		// Ids up to two past the last, so that unknown ones come up too.
		drawID := func(label string) uint64 {
			return rapid.Uint64Range(1, uint64(len(m.comments))+2).Draw(rt, label)
		}
		now := testStart

		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			// Time may stand still or go back: ties in new/old must hold.
			now = now.Add(time.Duration(rapid.IntRange(-1, 2).Draw(rt, "dt")) * time.Second)
			var cmd Command
			var wantCode string
			kind := rapid.IntRange(0, 9).Draw(rt, "kind")
			if len(m.comments) == 0 {
				kind = 0
			}
			switch {
			case kind < 4:
				c := CreateCommand{
					Thread: rapid.SampledFrom(threads).Draw(rt, "thread"),
					Author: drawUser.Draw(rt, "author"),
					Body:   fmt.Sprintf("body %d", i),
				}
				var parent *modelComment
				if len(m.comments) > 0 && rapid.Bool().Draw(rt, "reply") {
					pid := drawID("parent")
					c.Parent = formatID(pid)
					parent = m.get(pid)
					switch {
					case parent == nil:
						wantCode = fsm.CodeNotFound
					case parent.thread != c.Thread:
						wantCode = fsm.CodeInvalid
					case parent.deleted:
						wantCode = fsm.CodeConflict
					}
				}
				cmd = c
				if wantCode == "" {
					mc := &modelComment{
						id: uint64(len(m.comments) + 1), thread: c.Thread,
						author: c.Author, body: c.Body, created: now.UnixNano(),
						votes: map[string]vote{}, likes: map[string]bool{},
					}
					if parent != nil {
						mc.parent, mc.depth = parent.id, parent.depth+1
						parent.children = append(parent.children, mc.id)
					}
					if !slices.Contains(m.threads, c.Thread) {
						m.threads = append(m.threads, c.Thread)
					}
					m.comments = append(m.comments, mc)
				}
			case kind < 7:
				v := VoteCommand{
					ID:   formatID(drawID("id")),
					User: drawUser.Draw(rt, "user"),
					Vote: rapid.SampledFrom([]string{VoteUp, VoteDown, VoteNone}).Draw(rt, "vote"),
				}
				cmd = v
				mc := m.get(mustParseID(v.ID))
				switch {
				case mc == nil:
					wantCode = fsm.CodeNotFound
				case mc.deleted:
					wantCode = fsm.CodeConflict
				default:
					mc.votes[v.User], _ = parseVote(v.Vote)
				}
			case kind < 8:
				l := LikeCommand{
					ID:   formatID(drawID("id")),
					User: drawUser.Draw(rt, "user"),
					Like: rapid.Bool().Draw(rt, "like"),
				}
				cmd = l
				mc := m.get(mustParseID(l.ID))
				switch {
				case mc == nil:
					wantCode = fsm.CodeNotFound
				case mc.deleted:
					wantCode = fsm.CodeConflict
				default:
					mc.likes[l.User] = l.Like
				}
			case kind < 9:
				ed := EditCommand{
					ID:     formatID(drawID("id")),
					Author: drawUser.Draw(rt, "author"),
					Body:   fmt.Sprintf("edit %d", i),
				}
				cmd = ed
				mc := m.get(mustParseID(ed.ID))
				switch {
				case mc == nil:
					wantCode = fsm.CodeNotFound
				case mc.author != ed.Author:
					wantCode = fsm.CodeForbidden
				case mc.deleted:
					wantCode = fsm.CodeConflict
				default:
					mc.body = ed.Body
				}
			default:
				d := DeleteCommand{ID: formatID(drawID("id")), Author: drawUser.Draw(rt, "author")}
				cmd = d
				mc := m.get(mustParseID(d.ID))
				switch {
				case mc == nil:
					wantCode = fsm.CodeNotFound
				case mc.author != d.Author:
					wantCode = fsm.CodeForbidden
				default:
					mc.deleted, mc.body = true, ""
				}
			}

			// Not Encode, which refuses new names with control characters:
			// the thread "t/x\x00y" stands for one an older log holds.
			require.NoError(rt, cmd.Validate())
			payload, err := json.Marshal(cmd)
			require.NoError(rt, err)
			_, err = e.applyRaw(cmd.Op(), payload, now)
			require.Equal(rt, wantCode, errCode(err), "step %d %#v: %v", i, cmd, err)
		}

		// Every comment reads as the model has it.
		for _, mc := range m.comments {
			c, err := Get(e.db, formatID(mc.id))
			require.NoError(rt, err)
			m.checkComment(rt, mc, c)
		}
		_, err := Get(e.db, formatID(uint64(len(m.comments)+1)))
		require.Equal(rt, fsm.CodeNotFound, errCode(err))

		// Every listing, paged, equals the brute-force order.
		limit := rapid.IntRange(1, 4).Draw(rt, "limit")
		for _, sort := range Sorts() {
			for _, thread := range m.threads {
				got := e.listAll(Query{Thread: thread, Sort: sort, Limit: limit})
				want := m.sorted(thread, 0, sort)
				require.Equal(rt, modelIDs(want), ids(got), "thread %q sort %s", thread, sort)
				for i := range got {
					m.checkComment(rt, want[i], got[i])
				}
			}
			for _, mc := range m.comments {
				if len(mc.children) == 0 && mc.id%3 != 0 {
					continue // a few empty reply listings suffice
				}
				got := e.listAll(Query{Parent: formatID(mc.id), Sort: sort, Limit: limit})
				want := m.sorted(mc.thread, mc.id, sort)
				require.Equal(rt, modelIDs(want), ids(got), "parent %d sort %s", mc.id, sort)
			}
		}

		// Nested replies: each nested list is the start of the brute-force
		// order of that comment's replies, and its cursor continues it.
		if len(m.threads) > 0 {
			q := Query{
				Thread:  m.threads[0],
				Sort:    rapid.SampledFrom(Sorts()).Draw(rt, "nestSort"),
				Limit:   limit,
				Replies: rapid.IntRange(1, 3).Draw(rt, "replies"),
				Depth:   rapid.IntRange(1, 3).Draw(rt, "depth"),
			}
			p, err := List(e.db, q)
			require.NoError(rt, err)
			checkNested(rt, e, m, q, p.Comments, q.Depth)
		}
	})
}

// checkNested checks the nested replies of listed comments, levels deep.
func checkNested(t require.TestingT, e *testEnv, m *model, q Query, listed []Comment, levels int) {
	for _, c := range listed {
		if levels == 0 {
			require.Nil(t, c.Replies, "comment %s below the depth", c.ID)
			continue
		}
		require.NotNil(t, c.Replies, "comment %s not expanded", c.ID)
		mc := m.get(mustParseID(c.ID))
		want := m.sorted(mc.thread, mc.id, q.Sort)
		n := min(q.Replies, len(want))
		require.Equal(t, modelIDs(want[:n]), ids(c.Replies.Comments), "replies of %s", c.ID)
		require.Equal(t, len(want) > n, c.Replies.NextCursor != nil, "cursor of %s", c.ID)
		if c.Replies.NextCursor != nil {
			rest := e.listAll(Query{Parent: c.ID, Sort: q.Sort, Limit: q.Replies,
				Cursor: *c.Replies.NextCursor})
			require.Equal(t, modelIDs(want[n:]), ids(rest), "more replies of %s", c.ID)
		}
		checkNested(t, e, m, q, c.Replies.Comments, levels-1)
	}
}

func mustParseID(s string) uint64 {
	id, err := parseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// TestCursorStability takes the first page of a listing, then changes
// comments not yet seen in ways that keep them after the page's last
// position, and adds comments anywhere: the rest of the listing must hold
// every unseen comment exactly once, none of the first page, and in order
// every comment after the position.
func TestCursorStability(t *testing.T) {
	for _, sort := range Sorts() {
		t.Run(sort, func(t *testing.T) {
			e := newTestEnv(t, t.TempDir())
			rng := rand.New(rand.NewPCG(7, uint64(len(sort))))
			users := []string{"a", "b", "c", "d", "e", "f"}
			for i := 0; i < 40; i++ {
				e.now = e.now.Add(time.Duration(rng.IntN(3)-1) * time.Second)
				e.must(CreateCommand{Thread: "t", Author: "x", Body: "b"})
			}
			votes := map[string]string{} // id/user -> vote
			vote := func(id, user, v string) {
				e.must(VoteCommand{ID: id, User: user, Vote: v})
				votes[id+"/"+user] = v
			}
			for i := 0; i < 150; i++ {
				vote(fmt.Sprint(1+rng.IntN(40)), users[rng.IntN(len(users))],
					[]string{VoteUp, VoteDown}[rng.IntN(2)])
			}

			first, err := List(e.db, Query{Thread: "t", Sort: sort, Limit: 10})
			require.NoError(t, err)
			require.NotNil(t, first.NextCursor)
			scope := scopeKey("t", 0, mustOrder(sort))
			cursorPos, err := decodeCursor(*first.NextCursor, scope)
			require.NoError(t, err)
			seen := map[string]bool{}
			for _, c := range first.Comments {
				seen[c.ID] = true
			}
			position := func(rec *record) []byte {
				pos := binary.BigEndian.AppendUint64(nil, sortKey(rec, mustOrder(sort)))
				return binary.BigEndian.AppendUint64(pos, rec.id)
			}

			// Change unseen comments, but only where they stay after the
			// position; add new comments and replies anywhere.
			moved := 0
			for i := 0; i < 300; i++ {
				id := fmt.Sprint(1 + rng.IntN(40))
				if seen[id] {
					continue
				}
				rec, err := readComment(e.db, mustParseID(id))
				require.NoError(t, err)
				after := *rec
				switch k := rng.IntN(10); {
				case k < 7:
					user := users[rng.IntN(len(users))]
					v := []string{VoteUp, VoteDown, VoteNone}[rng.IntN(3)]
					switch votes[id+"/"+user] {
					case VoteUp:
						after.ups--
					case VoteDown:
						after.downs--
					}
					switch v {
					case VoteUp:
						after.ups++
					case VoteDown:
						after.downs++
					}
					if bytes.Compare(position(&after), cursorPos) <= 0 {
						continue
					}
					vote(id, user, v)
				case k < 9:
					after.replies++
					if bytes.Compare(position(&after), cursorPos) <= 0 {
						continue
					}
					e.must(CreateCommand{Thread: "t", Parent: id, Author: "y", Body: "r"})
				default:
					e.must(CreateCommand{Thread: "t", Author: "z", Body: "new"})
				}
				moved++
			}
			require.Greater(t, moved, 50)

			// The rest of the listing.
			rest := e.listAll(Query{Thread: "t", Sort: sort, Limit: 7,
				Cursor: *first.NextCursor})
			var want []*record
			for id := uint64(1); ; id++ {
				rec, err := readComment(e.db, id)
				if errCode(err) == fsm.CodeNotFound {
					break
				}
				require.NoError(t, err)
				if rec.parent == 0 && bytes.Compare(position(rec), cursorPos) > 0 {
					want = append(want, rec)
				}
			}
			slices.SortFunc(want, func(a, b *record) int {
				return bytes.Compare(position(a), position(b))
			})
			wantIDs := make([]string, len(want))
			for i, rec := range want {
				wantIDs[i] = formatID(rec.id)
			}
			require.Equal(t, wantIDs, ids(rest))

			got := map[string]int{}
			for _, c := range rest {
				got[c.ID]++
				require.False(t, seen[c.ID], "comment %s of page 1 repeated", c.ID)
			}
			for id := 1; id <= 40; id++ {
				if s := fmt.Sprint(id); !seen[s] {
					require.Equal(t, 1, got[s], "unseen comment %s", s)
				}
			}
		})
	}
}

func mustOrder(sort string) order {
	o, ok := parseSort(sort)
	if !ok {
		panic(sort)
	}
	return o
}
