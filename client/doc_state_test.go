package client

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm/text"
)

// modelServer is the server's side of the protocol in a few lines: one
// log, each submit transformed against the ops after its revision, as
// Transform(incoming, applied), and deduplicated on (client, seq).
type modelServer struct {
	text    string
	log     []DocOp
	replies map[string]DocOp
}

func newModelServer(initial string) *modelServer {
	return &modelServer{text: initial, replies: make(map[string]DocOp)}
}

func (s *modelServer) submit(t *testing.T, sub DocSubmit) DocOp {
	t.Helper()
	key := fmt.Sprintf("%s/%d", sub.Client, sub.Seq)
	if reply, ok := s.replies[key]; ok {
		return reply
	}
	require.LessOrEqual(t, sub.Rev, uint64(len(s.log)), "rev ahead of the server")

	op := sub.Op
	for _, applied := range s.log[sub.Rev:] {
		var err error
		op, _, err = text.Transform(op, applied.Op)
		require.NoError(t, err)
	}
	next, err := text.Apply(s.text, op)
	require.NoError(t, err)
	s.text = next
	committed := DocOp{Rev: uint64(len(s.log)) + 1, Op: op, Client: sub.Client, Seq: sub.Seq}
	s.log = append(s.log, committed)
	s.replies[key] = committed
	return committed
}

func splice(t *testing.T, pos, deleted int, inserted string, docLen int) text.Op {
	t.Helper()
	op, err := text.FromSplice(pos, deleted, inserted, docLen)
	require.NoError(t, err)
	return op
}

// submitOf returns what the core would send for its in-flight op.
func submitOf(c *docCore) DocSubmit {
	return DocSubmit{Rev: c.inflight.baseRev, Client: c.clientID, Seq: c.inflight.seq,
		Op: c.inflight.sent}
}

// offerAll offers committed ops and fails the test on an error.
func offerAll(t *testing.T, c *docCore, ops ...DocOp) (steps []docStep, send bool) {
	t.Helper()
	for _, op := range ops {
		s, more, err := c.offer(op)
		require.NoError(t, err)
		steps = append(steps, s...)
		send = send || more
	}
	return steps, send
}

func TestDocCoreStatesFollowOTJS(t *testing.T) {
	server := newModelServer("")
	c := newDocCore("c1", "", 0)
	now := time.Now()
	require.Equal(t, DocSynchronized, c.state())

	// The first edit goes in flight; the next ones compose behind it.
	send, err := c.local(splice(t, 0, 0, "hello", 0), now)
	require.NoError(t, err)
	assert.True(t, send)
	assert.Equal(t, DocAwaitingConfirm, c.state())
	first := submitOf(c)
	assert.Equal(t, uint64(1), first.Seq)

	send, err = c.local(splice(t, 5, 0, " world", 5), now)
	require.NoError(t, err)
	assert.False(t, send)
	assert.Equal(t, DocAwaitingWithBuffer, c.state())
	send, err = c.local(splice(t, 0, 1, "H", 11), now)
	require.NoError(t, err)
	assert.False(t, send)
	assert.Equal(t, `["H",-1,4," world"]`, c.buffer.op.String(), "edits compose into one buffer")
	assert.Len(t, c.buffer.edits, 2)

	// The ack moves the buffer in flight, against the new revision.
	steps, send := offerAll(t, c, server.submit(t, first))
	require.Len(t, steps, 1)
	require.NotNil(t, steps[0].ack)
	assert.Equal(t, uint64(1), steps[0].ack.seq)
	assert.True(t, send)
	assert.Equal(t, DocAwaitingConfirm, c.state())
	second := submitOf(c)
	assert.Equal(t, uint64(2), second.Seq)
	assert.Equal(t, uint64(1), second.Rev)

	// The last ack leaves the client synchronized with the server's text.
	_, send = offerAll(t, c, server.submit(t, second))
	assert.False(t, send)
	assert.Equal(t, DocSynchronized, c.state())
	assert.Equal(t, uint64(2), c.rev)
	assert.Equal(t, "Hello world", c.text.String())
	assert.Equal(t, server.text, c.text.String())
}

func TestDocCoreTransformsIncomingPastInflightAndBuffer(t *testing.T) {
	// Two clients start from "abc" at revision 1.
	server := newModelServer("")
	base := server.submit(t, DocSubmit{Client: "seed", Seq: 1, Op: splice(t, 0, 0, "abc", 0)})
	c1 := newDocCore("c1", "abc", base.Rev)
	c2 := newDocCore("c2", "abc", base.Rev)
	now := time.Now()

	// c1 has "X" at 0 in flight and a buffer that deletes "c" and types
	// "Y" at the end; c2 types "Z" after "a" and commits first.
	_, err := c1.local(splice(t, 0, 0, "X", 3), now)
	require.NoError(t, err)
	_, err = c1.local(splice(t, 3, 1, "Y", 4), now)
	require.NoError(t, err)
	require.Equal(t, DocAwaitingWithBuffer, c1.state())
	require.Equal(t, "XabY", c1.text.String())

	_, err = c2.local(splice(t, 1, 0, "Z", 3), now)
	require.NoError(t, err)
	fromC2 := server.submit(t, submitOf(c2))

	// c1 sees c2's op while its own ops are pending.
	steps, send := offerAll(t, c1, fromC2)
	require.Len(t, steps, 1)
	assert.Nil(t, steps[0].ack)
	assert.False(t, send)
	assert.Equal(t, `[2,"Z",2]`, steps[0].applied.String(),
		"the incoming op moves right past the in-flight insert")
	assert.Equal(t, "XaZbY", c1.text.String())
	assert.Equal(t, `["X",4]`, c1.inflight.op.String(), "in-flight op rebased")
	assert.Equal(t, uint64(1), c1.inflight.baseRev, "a resend still names the old revision")

	// The server gets c1's op made at revision 1 and transforms it alike.
	ack := server.submit(t, submitOf(c1))
	assert.Equal(t, c1.inflight.op.String(), ack.Op.String())
	_, send = offerAll(t, c1, ack)
	require.True(t, send)
	offerAll(t, c1, server.submit(t, submitOf(c1)))
	offerAll(t, c2, server.log[1:]...)

	assert.Equal(t, "XaZbY", server.text)
	assert.Equal(t, server.text, c1.text.String())
	assert.Equal(t, server.text, c2.text.String())
	assert.Equal(t, DocSynchronized, c1.state())
	assert.Equal(t, DocSynchronized, c2.state())
}

func TestDocCoreTieAtSamePositionAgreesWithServer(t *testing.T) {
	for _, c2First := range []bool{true, false} {
		t.Run(fmt.Sprintf("c2First=%v", c2First), func(t *testing.T) {
			server := newModelServer("")
			c1 := newDocCore("c1", "", 0)
			c2 := newDocCore("c2", "", 0)
			now := time.Now()
			_, err := c1.local(splice(t, 0, 0, "one", 0), now)
			require.NoError(t, err)
			_, err = c2.local(splice(t, 0, 0, "two", 0), now)
			require.NoError(t, err)

			order := []*docCore{c1, c2}
			if c2First {
				order = []*docCore{c2, c1}
			}
			for _, c := range order {
				server.submit(t, submitOf(c))
			}
			offerAll(t, c1, server.log...)
			offerAll(t, c2, server.log...)
			assert.Equal(t, server.text, c1.text.String())
			assert.Equal(t, server.text, c2.text.String())
		})
	}
}

func TestDocCoreHoldsEarlyOpsAndIgnoresDuplicates(t *testing.T) {
	server := newModelServer("")
	for i := range 4 {
		server.submit(t, DocSubmit{Client: "other", Seq: uint64(i + 1), Rev: uint64(i),
			Op: splice(t, i, 0, string(rune('a'+i)), i)})
	}
	c := newDocCore("c1", "", 0)

	// Revisions 3 and 4 wait for 1 and 2; repeats change nothing.
	steps, _ := offerAll(t, c, server.log[3], server.log[2], server.log[3])
	assert.Empty(t, steps)
	assert.True(t, c.gap())
	steps, _ = offerAll(t, c, server.log[0])
	assert.Len(t, steps, 1)
	steps, _ = offerAll(t, c, server.log[1])
	assert.Len(t, steps, 3, "revision 2 releases 3 and 4")
	assert.False(t, c.gap())
	steps, _ = offerAll(t, c, server.log...)
	assert.Empty(t, steps)
	assert.Equal(t, "abcd", c.text.String())
	assert.Equal(t, uint64(4), c.rev)
}

func TestDocCoreResendIsAppliedOnce(t *testing.T) {
	// The first submit commits but its reply is lost; the resend of the
	// same (client, seq) gets the first result and nothing applies twice.
	server := newModelServer("")
	c := newDocCore("c1", "", 0)
	_, err := c.local(splice(t, 0, 0, "once", 0), time.Now())
	require.NoError(t, err)
	sub := submitOf(c)

	server.submit(t, sub) // reply lost
	reply := server.submit(t, sub)
	assert.Len(t, server.log, 1)
	offerAll(t, c, reply)
	offerAll(t, c, server.log...) // the stream delivers it too
	assert.Equal(t, "once", c.text.String())
	assert.Equal(t, DocSynchronized, c.state())
}

func TestDocCoreDetectsDivergence(t *testing.T) {
	c := newDocCore("c1", "abc", 1)
	_, _, err := c.offer(DocOp{Rev: 2, Op: splice(t, 0, 0, "x", 5), Client: "other"})
	require.ErrorIs(t, err, ErrDiverged)
	assert.Equal(t, "abc", c.text.String(), "a failing op changes nothing")
	assert.Equal(t, uint64(1), c.rev)

	// The server applying the client's own op differently is caught too.
	_, err = c.local(splice(t, 0, 0, "x", 3), time.Now())
	require.NoError(t, err)
	_, _, err = c.offer(DocOp{Rev: 2, Op: splice(t, 1, 0, "x", 3), Client: "c1"})
	require.ErrorIs(t, err, ErrDiverged)
}

func TestDocCoreRejectsOpsThatDoNotFit(t *testing.T) {
	c := newDocCore("c1", "abc", 1)
	_, err := c.local(splice(t, 0, 0, "x", 5), time.Now())
	require.ErrorIs(t, err, text.ErrLengthMismatch)
	assert.Equal(t, DocSynchronized, c.state())
	send, err := c.local(splice(t, 0, 0, "", 3), time.Now())
	require.NoError(t, err)
	assert.False(t, send, "a no-op is not sent")
	assert.Equal(t, DocSynchronized, c.state())
}

// TestDocCoreConvergesUnderRandomSchedules runs several clients against
// the model server with random edits, random delivery of the log, lost
// replies and resends, and checks that every copy ends equal to the
// server's text with nothing pending.
func TestDocCoreConvergesUnderRandomSchedules(t *testing.T) {
	const alphabet = "abé日🙂\u0301xy \n"
	runes := []rune(alphabet)
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		server := newModelServer("")
		clients := make([]*docCore, 2+rng.IntN(3))
		delivered := make([]int, len(clients)) // log entries each has been offered
		for i := range clients {
			clients[i] = newDocCore(fmt.Sprintf("c%d", i), "", 0)
		}
		sent := make([]uint64, len(clients)) // seq last submitted, per client

		step := func(i int) {
			c := clients[i]
			switch r := rng.IntN(10); {
			case r < 5: // a local edit
				n := c.text.Len()
				pos := rng.IntN(n + 1)
				del := 0
				if n > pos && rng.IntN(3) == 0 {
					del = 1 + rng.IntN(min(3, n-pos))
				}
				var ins strings.Builder
				for range rng.IntN(3) {
					ins.WriteRune(runes[rng.IntN(len(runes))])
				}
				_, err := c.local(splice(t, pos, del, ins.String(), n), time.Time{})
				require.NoError(t, err, "seed %d", seed)
			case r < 7: // the in-flight op reaches the server
				if c.inflight == nil || sent[i] == c.inflight.seq && rng.IntN(4) > 0 {
					return
				}
				sent[i] = c.inflight.seq
				reply := server.submit(t, submitOf(c))
				if rng.IntN(3) == 0 { // the reply arrives, maybe before the stream
					_, _, err := c.offer(reply)
					require.NoError(t, err, "seed %d", seed)
				}
			default: // the stream delivers some of the log
				for k := rng.IntN(3); k >= 0 && delivered[i] < len(server.log); k-- {
					_, _, err := c.offer(server.log[delivered[i]])
					require.NoError(t, err, "seed %d", seed)
					delivered[i]++
				}
			}
		}
		for range 200 {
			step(rng.IntN(len(clients)))
		}

		// Drain: send whatever is pending and deliver everything.
		for busy := true; busy; {
			busy = false
			for i, c := range clients {
				for delivered[i] < len(server.log) {
					_, _, err := c.offer(server.log[delivered[i]])
					require.NoError(t, err, "seed %d", seed)
					delivered[i]++
					busy = true
				}
				if c.inflight != nil {
					server.submit(t, submitOf(c))
					busy = true
				}
			}
		}
		for i, c := range clients {
			require.Equal(t, server.text, c.text.String(), "seed %d client %d", seed, i)
			require.Equal(t, DocSynchronized, c.state(), "seed %d client %d", seed, i)
			require.Equal(t, uint64(len(server.log)), c.rev, "seed %d client %d", seed, i)
		}
	}
}
