package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWaitReadyRefusesAnotherNode checks that a ready node answering on a
// member's address as another id is not taken for the member. A real node
// cannot be made to answer there (Start checks that the ports are free
// first), so a stand-in answers.
func TestWaitReadyRefusesAnotherNode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(nodeHeader, "n1")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := &Cluster{running: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	err := c.waitReady(ctx, Member{ID: "n2", HTTP: addr, Log: "n2.log"}, nil)
	require.ErrorContains(t, err, `answers as node "n1", not as n2`)
	require.NoError(t, ctx.Err())
	require.NoError(t, c.waitReady(ctx, Member{ID: "n1", HTTP: addr}, nil))
}

func TestSupervisorAliveFollowsPidAndStartTime(t *testing.T) {
	me := self()
	require.Equal(t, os.Getpid(), me.Pid)
	require.NotZero(t, me.Start)
	require.True(t, SupervisorAlive(State{Supervisor: me}))
	require.False(t, SupervisorAlive(State{Supervisor: &Process{Pid: me.Pid, Start: me.Start + 1}}),
		"a reused pid is another process")
	require.False(t, SupervisorAlive(State{}))
}
