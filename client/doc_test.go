package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client/clienttest"
	"github.com/shoal-db/shoal/fsm/text"
)

func newDocFake(t *testing.T, nodes int) (*clienttest.DocCluster, *Client) {
	t.Helper()
	fake := clienttest.NewDocCluster(nodes)
	t.Cleanup(fake.Close)
	c := newTestClient(t, Config{Addrs: fake.Addrs(), Timeout: 2 * time.Second})
	return fake, c
}

func openDoc(t *testing.T, c *Client, id string, cfg DocConfig) *Doc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.OpenDoc(ctx, id, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func waitSynced(t *testing.T, d *Doc, rev uint64) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := d.WaitSynced(ctx, rev)
	require.NoError(t, err)
	return got
}

// typeRandomly makes n random edits of d, small inserts and deletes.
func typeRandomly(t *testing.T, d *Doc, rng *rand.Rand, n int) {
	t.Helper()
	for i := range n {
		err := d.Update(func(view TextView) (text.Op, error) {
			length := view.Len()
			pos := rng.IntN(length + 1)
			del := 0
			if pos < length && rng.IntN(4) == 0 {
				del = 1 + rng.IntN(min(4, length-pos))
			}
			return text.FromSplice(pos, del, fmt.Sprintf("%s%d ", d.ClientID(), i), length)
		})
		require.NoError(t, err)
		if rng.IntN(8) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func TestDocConcurrentEditorsConverge(t *testing.T) {
	fake, c := newDocFake(t, 3)
	docs := make([]*Doc, 3)
	for i := range docs {
		docs[i] = openDoc(t, c, "shared", DocConfig{
			ClientID: fmt.Sprintf("c%d", i), Node: fake.Addrs()[i],
		})
	}

	var wg sync.WaitGroup
	for i, d := range docs {
		wg.Go(func() { typeRandomly(t, d, rand.New(rand.NewPCG(uint64(i), 1)), 150) })
	}
	wg.Wait()

	// Once every client is synchronized at the last revision, all agree.
	var last uint64
	for _, d := range docs {
		last = max(last, waitSynced(t, d, 0))
	}
	want, rev := fake.Text("shared")
	require.Equal(t, last, rev)
	for i, d := range docs {
		waitSynced(t, d, rev)
		assert.Equal(t, want, d.Text(), "client %d", i)
		assert.Equal(t, rev, d.Rev())
		assert.Equal(t, 150, d.Stats().Edits)
	}
	applied, _ := fake.Submits()
	assert.Less(t, applied, 450, "edits composed behind in-flight ops")
}

func TestDocLostReplyIsResentAndAppliedOnce(t *testing.T) {
	fake, c := newDocFake(t, 1)
	var acks []DocAck
	d := openDoc(t, c, "doc", DocConfig{ClientID: "c1", OnAck: func(a DocAck) {
		acks = append(acks, a)
	}})

	fake.DropReplies(1)
	require.NoError(t, d.Edit(text.Splice{Inserted: "once"}))
	waitSynced(t, d, 0)

	got, rev := fake.Text("doc")
	assert.Equal(t, "once", got)
	assert.Equal(t, uint64(1), rev)
	assert.Equal(t, "once", d.Text())
	applied, duplicates := fake.Submits()
	assert.Equal(t, 1, applied)
	// The stream may acknowledge the op before the resend goes out;
	// either way it applied once.
	assert.LessOrEqual(t, duplicates, 1)
	d.mu.Lock()
	require.Len(t, acks, 1)
	assert.Equal(t, uint64(1), acks[0].Seq)
	assert.Len(t, acks[0].Edits, 1)
	d.mu.Unlock()
}

func TestDocResendsUntilTheServerTakesIt(t *testing.T) {
	fake, c := newDocFake(t, 2)
	d := openDoc(t, c, "doc", DocConfig{ClientID: "c1"})

	// The client's own retries give up first; the Doc resends later.
	fake.RefuseSubmits(12)
	require.NoError(t, d.Edit(text.Splice{Inserted: "persist"}))
	require.NoError(t, d.Edit(text.Splice{Pos: 7, Inserted: "ent"}))
	waitSynced(t, d, 0)

	got, _ := fake.Text("doc")
	assert.Equal(t, "persistent", got)
	assert.Positive(t, d.Stats().Resends)
}

func TestDocStreamMovesToAnotherNodeWhenItsNodeDies(t *testing.T) {
	fake, c := newDocFake(t, 3)
	writer := openDoc(t, c, "doc", DocConfig{ClientID: "w", Node: fake.Addrs()[2]})
	reader := openDoc(t, c, "doc", DocConfig{ClientID: "r", Node: fake.Addrs()[0]})
	rng := rand.New(rand.NewPCG(1, 2))

	typeRandomly(t, writer, rng, 50)
	rev := waitSynced(t, writer, 0)
	waitSynced(t, reader, rev)

	// Node 0 dies mid-stream; the reader carries on from another node.
	fake.SetDown(0, true)
	typeRandomly(t, writer, rng, 50)
	rev = waitSynced(t, writer, 0)
	waitSynced(t, reader, rev)
	want, _ := fake.Text("doc")
	assert.Equal(t, want, reader.Text())
	assert.NotEqual(t, fake.Addrs()[0], reader.StreamNode())
	assert.Positive(t, reader.Stats().Reconnects)
}

func TestDocReconnectResumesWithoutGapOrDuplicate(t *testing.T) {
	fake, c := newDocFake(t, 3)
	writer := openDoc(t, c, "doc", DocConfig{ClientID: "w", Node: fake.Addrs()[0]})
	reader := openDoc(t, c, "doc", DocConfig{ClientID: "r", Node: fake.Addrs()[1]})
	rng := rand.New(rand.NewPCG(3, 4))

	for _, node := range []string{fake.Addrs()[2], fake.Addrs()[0], ""} {
		typeRandomly(t, writer, rng, 30)
		require.NoError(t, reader.Reconnect(node))
	}
	rev := waitSynced(t, writer, 0)
	waitSynced(t, reader, rev)
	want, _ := fake.Text("doc")
	assert.Equal(t, want, reader.Text())
	assert.Equal(t, int(rev), reader.Stats().Remote, "every op applied exactly once")
}

func TestDocFillsRevisionsTheStreamSkipped(t *testing.T) {
	fake, c := newDocFake(t, 2)
	writer := openDoc(t, c, "doc", DocConfig{ClientID: "w", Node: fake.Addrs()[0]})
	reader := openDoc(t, c, "doc", DocConfig{ClientID: "r", Node: fake.Addrs()[1],
		GapTimeout: time.Hour})

	require.NoError(t, writer.Edit(text.Splice{Inserted: "a"}))
	rev := waitSynced(t, writer, 0)
	waitSynced(t, reader, rev)

	fake.HideFromStreams(3)
	for i, s := range []string{"b", "c", "d", "e", "f"} {
		require.NoError(t, writer.Edit(text.Splice{Pos: i + 1, Inserted: s}))
		waitSynced(t, writer, 0)
	}
	waitSynced(t, reader, 6)
	assert.Equal(t, "abcdef", reader.Text())
	assert.Positive(t, reader.Stats().GapFills, "the stream's gap is read from the op log")
}

func TestDocAckAheadOfALaggingStreamIsFilledFromTheLog(t *testing.T) {
	fake, c := newDocFake(t, 1)
	fake.HoldStreams(0, true)
	d := openDoc(t, c, "doc", DocConfig{ClientID: "c1", GapTimeout: 20 * time.Millisecond})

	// Ops of another client commit while the stream lags; the reply of
	// this client's op names a later revision, so the Doc reads the log.
	other := openDoc(t, c, "doc", DocConfig{ClientID: "c2"})
	require.NoError(t, other.Edit(text.Splice{Inserted: "xy"}))
	waitSynced(t, other, 0)
	require.NoError(t, d.Edit(text.Splice{Inserted: "ab"}))
	waitSynced(t, d, 2)

	want, _ := fake.Text("doc")
	assert.Equal(t, want, d.Text())
	assert.Positive(t, d.Stats().GapFills)
}

func TestDocFromStartRebuildsTheWholeLog(t *testing.T) {
	fake, c := newDocFake(t, 2)
	writer := openDoc(t, c, "doc", DocConfig{ClientID: "w"})
	typeRandomly(t, writer, rand.New(rand.NewPCG(5, 6)), 80)
	rev := waitSynced(t, writer, 0)

	reader := openDoc(t, c, "doc", DocConfig{ClientID: "r", FromStart: true})
	waitSynced(t, reader, rev)
	want, _ := fake.Text("doc")
	assert.Equal(t, want, reader.Text())
	assert.Equal(t, int(rev), reader.Stats().Remote)
}

func TestDocStopsWhenTheServerRejectsAnOp(t *testing.T) {
	fake, c := newDocFake(t, 1)
	fake.SetHook(func(_ int, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost {
			return false
		}
		clienttest.WriteError(w, http.StatusBadRequest, "invalid_op", "no thanks")
		return true
	})
	d := openDoc(t, c, "doc", DocConfig{ClientID: "c1"})
	require.NoError(t, d.Edit(text.Splice{Inserted: "x"}))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.WaitSynced(ctx, 0)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadRequest, apiErr.Status)
	require.Error(t, d.Edit(text.Splice{Inserted: "y"}), "a stopped Doc takes no edits")
}

func TestDocCloseEndsWaitsAndEdits(t *testing.T) {
	_, c := newDocFake(t, 1)
	d := openDoc(t, c, "doc", DocConfig{})
	require.NoError(t, d.Close())
	_, err := d.WaitSynced(context.Background(), 100)
	require.ErrorIs(t, err, ErrDocClosed)
	require.ErrorIs(t, d.Edit(text.Splice{Inserted: "x"}), ErrDocClosed)
}

func TestEventReaderParsesTheStandardForm(t *testing.T) {
	body := ": hello\n\nid: 1\r\ndata: {\"rev\":1,\n" +
		"data: \"op\":[\"a\"],\"client\":\"c\"}\n\nretry: 10\nevent: op\nid: 2\n" +
		"data:{\"rev\":2,\"op\":[1,\"b\"],\"client\":\"d\"}\n\nid: 3\ndata: {\"rev\":3"
	r := newEventReader(strings.NewReader(body))

	ev, err := r.next()
	require.NoError(t, err)
	op, err := parseEventOp(ev)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), op.Rev)
	assert.Equal(t, `["a"]`, op.Op.String())

	ev, err = r.next()
	require.NoError(t, err)
	assert.Equal(t, "op", ev.kind)
	op, err = parseEventOp(ev)
	require.NoError(t, err)
	assert.Equal(t, "d", op.Client)

	_, err = r.next()
	require.Error(t, err, "an event cut off mid-way is dropped")
}
