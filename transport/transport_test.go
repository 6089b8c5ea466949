package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
)

// stubLeader is a Leader whose answers the test chooses. The handler's own
// rules (membership, decoding, status mapping) are what these tests check;
// a real node cannot be made to return each error on demand. The node
// package's tests run the same handler in front of real nodes.
type stubLeader struct {
	members map[string]bool

	mu         sync.Mutex
	proposeErr error
	readErr    error
	proposed   [][]byte
	readCalls  int
}

func newStubLeader(members ...string) *stubLeader {
	s := &stubLeader{members: map[string]bool{}}
	for _, m := range members {
		s.members[m] = true
	}
	return s
}

func (s *stubLeader) ProposeAsLeader(_ context.Context, cmd []byte) (*fsm.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proposed = append(s.proposed, append([]byte(nil), cmd...))
	if s.proposeErr != nil {
		return nil, s.proposeErr
	}
	return &fsm.Result{Index: uint64(len(s.proposed)) + 40, Value: json.RawMessage(`{"echo":true}`)}, nil
}

func (s *stubLeader) ReadIndexAsLeader(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readCalls++
	if s.readErr != nil {
		return 0, s.readErr
	}
	return 77, nil
}

func (s *stubLeader) PeerStatus() PeerStatus {
	return PeerStatus{ID: "n1", State: "leader", Term: 3, AppliedIndex: 9, CommitIndex: 9, Leader: "n1"}
}

func (s *stubLeader) IsMember(id string) bool { return s.members[id] }

func (s *stubLeader) calls() (proposed, reads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.proposed), s.readCalls
}

func (s *stubLeader) setErrors(propose, read error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proposeErr, s.readErr = propose, read
}

// serve runs Handler(target) on a real local HTTP server and returns its
// host:port.
func serve(t *testing.T, target Leader) string {
	t.Helper()
	server := httptest.NewServer(Handler(target))
	t.Cleanup(server.Close)
	return strings.TrimPrefix(server.URL, "http://")
}

// encodedCommand returns a well-formed encoded command.
func encodedCommand(t *testing.T, key string) []byte {
	t.Helper()
	cmd := fsm.Command{Domain: fsm.DomainStocks, Op: 1, IdempotencyKey: key,
		Payload: []byte(`{"symbol":"AAPL","price":"1"}`)}
	data, err := cmd.MarshalBinary()
	require.NoError(t, err)
	return data
}

// rawRequest sends one request by hand, so the test controls the header
// and body exactly, and returns the status.
func rawRequest(t *testing.T, method, addr, path, from string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(body))
	require.NoError(t, err)
	if from != "" {
		req.Header.Set(HeaderFrom, from)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	return resp.StatusCode
}

func TestHandlerRefusesNonMembers(t *testing.T) {
	leader := newStubLeader("n2")
	addr := serve(t, leader)
	cmd := encodedCommand(t, "")

	for _, from := range []string{"", "n9", "N2", "n"} {
		require.Equal(t, http.StatusForbidden,
			rawRequest(t, http.MethodPost, addr, PathPropose, from, cmd), "propose from %q", from)
		require.Equal(t, http.StatusForbidden,
			rawRequest(t, http.MethodGet, addr, PathReadIndex, from, nil), "read-index from %q", from)
	}
	proposed, reads := leader.calls()
	require.Zero(t, proposed, "a refused propose reached the leader")
	require.Zero(t, reads, "a refused read-index reached the leader")

	// The client sees a refusal as ErrRefused, which forwarding does not retry.
	stranger := NewClient("n9")
	_, err := stranger.Propose(context.Background(), addr, cmd)
	require.ErrorIs(t, err, ErrRefused)
	_, err = stranger.ReadIndex(context.Background(), addr)
	require.ErrorIs(t, err, ErrRefused)

	// Status answers anyone, so tools can see a node that has not joined.
	status, err := stranger.Status(context.Background(), addr)
	require.NoError(t, err)
	require.Equal(t, leader.PeerStatus(), status)

	// A member is answered, and the leader sees the command byte for byte.
	member := NewClient("n2")
	result, err := member.Propose(context.Background(), addr, cmd)
	require.NoError(t, err)
	require.Equal(t, uint64(41), result.Index)
	require.JSONEq(t, `{"echo":true}`, string(result.Value))
	require.Equal(t, [][]byte{cmd}, leader.proposed)

	index, err := member.ReadIndex(context.Background(), addr)
	require.NoError(t, err)
	require.Equal(t, uint64(77), index)
	status, err = member.Status(context.Background(), addr)
	require.NoError(t, err)
	require.Equal(t, leader.PeerStatus(), status)
}

func TestHandlerRefusesMalformedRequests(t *testing.T) {
	leader := newStubLeader("n2")
	addr := serve(t, leader)
	good := encodedCommand(t, "k1")

	badVersion := append([]byte(nil), good...)
	badVersion[0] = fsm.CommandVersion + 1
	badKeyLength := append([]byte(nil), good[:11]...)
	badKeyLength = append(badKeyLength, 100, 'x') // says 100 key bytes, has 1

	cases := map[string]struct {
		method string
		body   []byte
		want   int
	}{
		"empty body":        {http.MethodPost, nil, http.StatusBadRequest},
		"short header":      {http.MethodPost, good[:10], http.StatusBadRequest},
		"unknown version":   {http.MethodPost, badVersion, http.StatusBadRequest},
		"bad key length":    {http.MethodPost, badKeyLength, http.StatusBadRequest},
		"JSON, not binary":  {http.MethodPost, []byte(`{"symbol":"AAPL"}`), http.StatusBadRequest},
		"over the size cap": {http.MethodPost, append(good, make([]byte, maxCommandBytes)...), http.StatusRequestEntityTooLarge},
		"wrong method":      {http.MethodGet, good, http.StatusMethodNotAllowed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := rawRequest(t, c.method, addr, PathPropose, "n2", c.body)
			require.Equal(t, c.want, got)
			require.Less(t, got, 500)
		})
	}
	proposed, _ := leader.calls()
	require.Zero(t, proposed, "a malformed command reached the leader")

	// Through the client, a malformed command is ErrRefused.
	_, err := NewClient("n2").Propose(context.Background(), addr, badVersion)
	require.ErrorIs(t, err, ErrRefused)
	_, err = NewClient("n2").Propose(context.Background(), addr,
		append(good, make([]byte, maxCommandBytes)...))
	require.ErrorIs(t, err, ErrRefused)
}

func TestClientMapsLeaderErrors(t *testing.T) {
	leader := newStubLeader("n2")
	addr := serve(t, leader)
	client := NewClient("n2")
	cmd := encodedCommand(t, "")

	cases := []struct {
		name string
		err  error
		want error // nil: none of the sentinels
	}{
		{"not leader", fmt.Errorf("wrapped: %w", ErrNotLeader), ErrNotLeader},
		{"no leader", ErrNoLeader, ErrNoLeader},
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded},
		{"canceled", context.Canceled, context.DeadlineExceeded},
		{"other", errors.New("disk on fire"), nil},
	}
	sentinels := []error{ErrNotLeader, ErrNoLeader, ErrRefused, context.DeadlineExceeded}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leader.setErrors(c.err, c.err)
			_, proposeErr := client.Propose(context.Background(), addr, cmd)
			_, readErr := client.ReadIndex(context.Background(), addr)
			for _, err := range []error{proposeErr, readErr} {
				require.Error(t, err)
				for _, s := range sentinels {
					require.Equal(t, s == c.want, errors.Is(err, s), "%v is %v", err, s)
				}
			}
			if c.want == nil {
				require.Contains(t, proposeErr.Error(), "disk on fire",
					"the leader's reason is lost")
			}
		})
	}
}

func TestClientUnreachablePeer(t *testing.T) {
	// A port nobody listens on: the error must be a connection refusal
	// that forwarding recognises as safe to retry.
	addr := closedAddr(t)
	_, err := NewClient("n2").Propose(context.Background(), addr, encodedCommand(t, ""))
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.NotErrorIs(t, err, ErrRefused)
}

// closedAddr returns a local host:port that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// freeAddr returns a local host:port that was free a moment ago.
func freeAddr(t *testing.T) string { return closedAddr(t) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newRaftTransport starts a Raft stream layer on a free local port.
func newRaftTransport(t *testing.T) *raft.NetworkTransport {
	t.Helper()
	var trans *raft.NetworkTransport
	// The port may be taken between the probe and the listen; try again.
	require.Eventually(t, func() bool {
		var err error
		trans, err = NewRaft(freeAddr(t), "", quiet())
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	t.Cleanup(func() { _ = trans.Close() })
	return trans
}

// answerVotes grants every vote request trans receives and counts them,
// until the test ends.
func answerVotes(t *testing.T, trans *raft.NetworkTransport) *atomic.Int32 {
	t.Helper()
	var seen atomic.Int32
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case rpc := <-trans.Consumer():
				req, ok := rpc.Command.(*raft.RequestVoteRequest)
				if !ok {
					rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command))
					continue
				}
				seen.Add(1)
				rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
			}
		}
	}()
	return &seen
}

func requestVote(from *raft.NetworkTransport, to raft.ServerAddress) (*raft.RequestVoteResponse, error) {
	req := &raft.RequestVoteRequest{
		RPCHeader:    raft.RPCHeader{ID: []byte("n1"), Addr: []byte(from.LocalAddr())},
		Term:         7,
		LastLogIndex: 3,
		LastLogTerm:  2,
	}
	var resp raft.RequestVoteResponse
	err := from.RequestVote("n2", to, req, &resp)
	return &resp, err
}

func TestRaftTransportConnectsTwoNodes(t *testing.T) {
	a, b := newRaftTransport(t), newRaftTransport(t)
	seen := answerVotes(t, b)

	resp, err := requestVote(a, b.LocalAddr())
	require.NoError(t, err)
	require.True(t, resp.Granted)
	require.Equal(t, uint64(7), resp.Term)
	require.Equal(t, int32(1), seen.Load())

	// The advertised address is what peers are told to dial.
	advertise := freeAddr(t)
	trans, err := NewRaft(freeAddr(t), advertise, quiet())
	if err == nil { // the probed bind port may have been taken meanwhile
		t.Cleanup(func() { _ = trans.Close() })
		require.Equal(t, raft.ServerAddress(advertise), trans.LocalAddr())
	}
}

func TestRaftTransportRejectsBadAddresses(t *testing.T) {
	_, err := NewRaft("127.0.0.1:0", "no-port-here", quiet())
	require.ErrorContains(t, err, "resolve raft address")

	taken := newRaftTransport(t)
	_, err = NewRaft(string(taken.LocalAddr()), "", quiet())
	require.ErrorContains(t, err, "listen for raft")
}

func TestDialMapRedirects(t *testing.T) {
	b := newRaftTransport(t)
	seen := answerVotes(t, b)
	ghost := raft.ServerAddress(closedAddr(t))

	// Without the map, the ghost address is unreachable.
	plain := newRaftTransport(t)
	_, err := requestVote(plain, ghost)
	require.Error(t, err)
	require.Zero(t, seen.Load())

	peer := serve(t, newStubLeader("n1"))
	httpGhost := closedAddr(t)
	t.Setenv(DialMapEnv, fmt.Sprintf(" %s=%s , %s=%s ", ghost, b.LocalAddr(), httpGhost, peer))

	// Raft connections meant for the ghost reach b.
	rerouted := newRaftTransport(t)
	resp, err := requestVote(rerouted, ghost)
	require.NoError(t, err)
	require.True(t, resp.Granted)
	require.Equal(t, int32(1), seen.Load())
	// Addresses not in the map are dialled as they are.
	resp, err = requestVote(rerouted, b.LocalAddr())
	require.NoError(t, err)
	require.True(t, resp.Granted)
	require.Equal(t, int32(2), seen.Load())

	// Forwarded requests follow the map too.
	status, err := NewClient("n1").Status(context.Background(), httpGhost)
	require.NoError(t, err)
	require.Equal(t, "n1", status.ID)
}

func TestDialMapMalformed(t *testing.T) {
	for _, spec := range []string{"nonsense", "a=", "=b", "127.0.0.1:1=127.0.0.1:2,x"} {
		t.Setenv(DialMapEnv, spec)
		_, err := NewRaft("127.0.0.1:0", "", quiet())
		require.ErrorContains(t, err, DialMapEnv, "spec %q", spec)
	}
}

// failingBody gives some bytes, then fails as a dropped connection does.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.sent {
		return 0, io.ErrUnexpectedEOF
	}
	b.sent = true
	return copy(p, "\x01"), nil
}

func (b *failingBody) Close() error { return nil }

// A body that breaks off is a bad request, not a command too large, and
// never reaches the leader. A real server cannot be made to fail a read
// on cue, so the handler is called directly.
func TestHandlerBodyReadError(t *testing.T) {
	leader := newStubLeader("n2")
	req := httptest.NewRequest(http.MethodPost, PathPropose, &failingBody{})
	req.Header.Set(HeaderFrom, "n2")
	rec := httptest.NewRecorder()
	Handler(leader).ServeHTTP(rec, req)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	proposed, _ := leader.calls()
	require.Zero(t, proposed)
}
