package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/text"
	"github.com/shoal-db/shoal/internal/nodetest"
)

// cutTransport stands in for a network that loses a client's reads of
// one document for a while: while cut, its GETs of .../events and
// .../ops fail before they reach the node.
type cutTransport struct {
	cut atomic.Bool
}

func (ct *cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if ct.cut.Load() && req.Method == http.MethodGet &&
		(strings.HasSuffix(req.URL.Path, "/events") || strings.HasSuffix(req.URL.Path, "/ops")) {
		return nil, errors.New("cut off")
	}
	return http.DefaultTransport.RoundTrip(req)
}

// startPruningNode starts a real one-node cluster whose text domain
// prunes ops more than maxBehind revisions old.
func startPruningNode(t *testing.T, maxBehind uint64) *nodetest.Server {
	t.Helper()
	return nodetest.Start(t, nodetest.Config{Domains: map[fsm.DomainID]fsm.Domain{
		fsm.DomainText: text.NewDomain(text.Config{MaxBehind: maxBehind}),
	}})
}

// typeUntilPruned makes writer type long lines into its document until the
// node's op log no longer holds the ops after revision after.
func typeUntilPruned(t *testing.T, server *nodetest.Server, writer *Doc, after uint64) {
	t.Helper()
	line := strings.Repeat("abcdefghij", 20) + "\n"
	for i := 0; text.CheckFrom(server.Node.State(), writer.ID(), after) == nil; i++ {
		require.Less(t, i, 5000, "the log was never pruned")
		require.NoError(t, writer.Edit(text.Splice{Pos: 0, Deleted: min(writer.Len(), 150),
			Inserted: fmt.Sprintf("%d %s", i, line)}))
		waitSynced(t, writer, 0)
	}
}

// TestDocRecoversFromAPrunedRevision cuts a reader off, lets the node
// prune the log past the reader's revision, and checks that the reader,
// back in touch, replaces its copy with the exact current text and
// follows the document on from there.
func TestDocRecoversFromAPrunedRevision(t *testing.T) {
	server := startPruningNode(t, 10)
	c := newTestClient(t, Config{Addrs: []string{server.Addr}, Timeout: 5 * time.Second})
	writer := openDoc(t, c, "doc", DocConfig{ClientID: "w"})
	require.NoError(t, writer.Edit(text.Splice{Inserted: "hello"}))
	rev := waitSynced(t, writer, 0)

	cut := &cutTransport{}
	rc := newTestClient(t, Config{Addrs: []string{server.Addr}, Timeout: 5 * time.Second,
		HTTPClient: &http.Client{Transport: cut}})
	var mu sync.Mutex
	var resets []DocChange
	reader := openDoc(t, rc, "doc", DocConfig{ClientID: "r", OnChange: func(ch DocChange) {
		if ch.Reset {
			mu.Lock()
			resets = append(resets, ch)
			mu.Unlock()
		}
	}})
	waitSynced(t, reader, rev)
	require.Equal(t, "hello", reader.Text())

	// Cut off and the open stream broken, the reader stays at rev while
	// the writer goes on until the node has pruned past it.
	cut.cut.Store(true)
	require.NoError(t, reader.Reconnect(""))
	typeUntilPruned(t, server, writer, rev)
	require.Equal(t, rev, reader.Rev(), "the reader heard nothing while cut off")

	cut.cut.Store(false)
	head := waitSynced(t, writer, 0)
	got := waitSynced(t, reader, head)
	require.Equal(t, head, got)
	want, err := c.GetDoc(context.Background(), "doc", ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, want.Text, reader.Text())
	require.Equal(t, 1, reader.Stats().Resets)
	mu.Lock()
	require.Len(t, resets, 1)
	require.Greater(t, resets[0].Rev, rev)
	replaced, err := text.Apply("hello", resets[0].Op)
	mu.Unlock()
	require.NoError(t, err)
	require.NotEqual(t, "hello", replaced)

	// It follows the document on, and edits of its own are applied.
	require.NoError(t, reader.Edit(text.Splice{Inserted: "R"}))
	require.NoError(t, writer.Edit(text.Splice{Pos: writer.Len(), Inserted: "W"}))
	head = max(waitSynced(t, writer, 0), waitSynced(t, reader, 0))
	waitSynced(t, writer, head)
	waitSynced(t, reader, head)
	require.Equal(t, writer.Text(), reader.Text())
	want, err = c.GetDoc(context.Background(), "doc", ReadOptions{MinIndex: reader.MaxIndex()})
	require.NoError(t, err)
	require.Equal(t, want.Text, reader.Text())
	require.Equal(t, head, want.Rev)
	require.NoError(t, reader.Err())
}

// TestDocFromStartOfAPrunedLogStartsFromTheText opens a document whose log
// no longer starts at revision 1 from the start: the Doc starts from the
// current text, with one reset.
func TestDocFromStartOfAPrunedLogStartsFromTheText(t *testing.T) {
	server := startPruningNode(t, 10)
	c := newTestClient(t, Config{Addrs: []string{server.Addr}, Timeout: 5 * time.Second})
	writer := openDoc(t, c, "doc", DocConfig{ClientID: "w"})
	typeUntilPruned(t, server, writer, 0)
	head := waitSynced(t, writer, 0)

	reader := openDoc(t, c, "doc", DocConfig{ClientID: "r", FromStart: true})
	require.Equal(t, head, waitSynced(t, reader, head))
	require.Equal(t, writer.Text(), reader.Text())
	require.Equal(t, 1, reader.Stats().Resets)
	require.Zero(t, reader.Stats().Remote, "no op of the pruned log was applied")

	// The op log read says the same: a 410 that IsHistoryTruncated names.
	_, err := c.DocOps(context.Background(), "doc", 0, 10, ReadOptions{})
	require.True(t, IsHistoryTruncated(err), "%v", err)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusGone, apiErr.Status)
}

// TestDocCoreResetKeepsNoPendingEdit checks the state machine's side of a
// reset: it replaces text and revision, keeps ops that arrived beyond the
// new revision, and refuses while local edits are pending.
func TestDocCoreResetKeepsNoPendingEdit(t *testing.T) {
	c := newDocCore("me", "old", 3)
	_, _ = offerAll(t, c, DocOp{Rev: 9, Op: splice(t, 0, 0, "x", 5), Client: "o"},
		DocOp{Rev: 12, Op: splice(t, 0, 0, "y", 7), Client: "o"})
	require.NoError(t, c.reset("12345", 8))
	require.Equal(t, "12345", c.text.String())
	require.Equal(t, uint64(8), c.rev)
	require.True(t, c.gap(), "the ops of revisions 9 and 12 still wait")

	// As Doc.resync does: the held op right after the new revision goes on.
	offerAll(t, c, c.early[9])
	require.Equal(t, "x12345", c.text.String())
	offerAll(t, c, DocOp{Rev: 10, Op: splice(t, 6, 0, "z", 6), Client: "o"},
		DocOp{Rev: 11, Op: splice(t, 0, 0, "", 7), Client: "o"})
	require.Equal(t, "yx12345z", c.text.String())
	require.Equal(t, uint64(12), c.rev)

	send, err := c.local(splice(t, 0, 0, "L", 8), time.Now())
	require.NoError(t, err)
	require.True(t, send)
	err = c.reset("new", 20)
	require.ErrorIs(t, err, ErrHistoryTruncated)
	require.Equal(t, "Lyx12345z", c.text.String(), "a refused reset changes nothing")
	require.Equal(t, uint64(12), c.rev)
}
