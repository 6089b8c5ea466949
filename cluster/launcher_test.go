package cluster_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
)

func testBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real node processes; skipped with -short")
	}
	bin, err := cluster.Binary()
	require.NoError(t, err)
	return bin
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// TestUpOnPortsOfAnotherClusterFails starts a second cluster on the ports
// of a running one: Start must fail naming the taken address, start no
// process and record nothing, instead of taking the other cluster's
// nodes for its own.
func TestUpOnPortsOfAnotherClusterFails(t *testing.T) {
	running := cluster.StartTest(t, 1)
	bin := testBinary(t)
	m := running.Members()[0]
	free, err := cluster.FreePort()
	require.NoError(t, err)

	dir := t.TempDir()
	ctx := testContext(t, time.Minute)
	_, err = cluster.Start(ctx, cluster.Config{Binary: bin, Dir: dir, Nodes: 1,
		HTTPBase: port(t, m.HTTP), RaftBase: free})
	require.ErrorIs(t, err, cluster.ErrPortInUse)
	require.ErrorContains(t, err, "n1's HTTP address "+m.HTTP)
	_, err = os.Stat(filepath.Join(dir, cluster.StateFile))
	require.ErrorIs(t, err, os.ErrNotExist, "a failed new cluster must record nothing")
	_, err = os.Stat(filepath.Join(dir, "n1.log"))
	require.ErrorIs(t, err, os.ErrNotExist, "no node may have been started")
}

// TestUpFailsWhenANodeExitsAtStart gives every node a flag it refuses:
// Start must notice the process exit and quote the end of its log rather
// than wait out its deadline.
func TestUpFailsWhenANodeExitsAtStart(t *testing.T) {
	bin := testBinary(t)
	dir := t.TempDir()
	ctx := testContext(t, time.Minute)
	_, err := cluster.Start(ctx, cluster.Config{Binary: bin, Dir: dir, Nodes: 1,
		NodeArgs: []string{"--log-level=loud"}})
	require.ErrorContains(t, err, "n1 exited at start")
	require.ErrorContains(t, err, `--log-level "loud"`)
	require.NoError(t, ctx.Err(), "Start waited for its deadline instead of noticing the exit")
}

// TestRestartNeedsItsSupervisor checks that a node is started detached
// only while the process that started the cluster runs: here the test
// itself, then a supervisor that is gone.
func TestRestartNeedsItsSupervisor(t *testing.T) {
	c := cluster.StartTest(t, 1)
	m := c.Members()[0]
	dir := filepath.Dir(m.Data)
	state, err := cluster.Load(dir)
	require.NoError(t, err)
	require.NotNil(t, state.Supervisor)
	require.Equal(t, os.Getpid(), state.Supervisor.Pid)
	require.True(t, cluster.SupervisorAlive(state))

	require.NoError(t, c.Stop(m.ID))
	started, err := cluster.StartDetached(dir, m.ID)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = cluster.SignalMember(dir, m.ID, syscall.SIGTERM) })
	require.True(t, cluster.Alive(started))
	_, err = cluster.SignalMember(dir, m.ID, syscall.SIGKILL)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !cluster.Alive(started) }, 10*time.Second,
		20*time.Millisecond)

	// The same directory once its supervisor is gone: a process that
	// started at another time than the one recorded.
	state, err = cluster.Load(dir)
	require.NoError(t, err)
	state.Supervisor.Start++
	raw, err := json.Marshal(state)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, cluster.StateFile), raw, 0o644))
	require.False(t, cluster.SupervisorAlive(state))
	_, err = cluster.StartDetached(dir, m.ID)
	require.ErrorIs(t, err, cluster.ErrNotSupervised)
	require.ErrorContains(t, err, "shoal cluster up --dir "+dir)
	after, err := cluster.Load(dir)
	require.NoError(t, err)
	require.False(t, cluster.Alive(*after.Members[0]), "nothing may have been started")
}

// TestUpAgainOnBusyPortsFails restarts a stopped cluster whose recorded
// port another process took meanwhile.
func TestUpAgainOnBusyPortsFails(t *testing.T) {
	c := cluster.StartTest(t, 1)
	bin := testBinary(t)
	m := c.Members()[0]
	c.Close()

	l, err := net.Listen("tcp", m.Raft)
	require.NoError(t, err)
	defer l.Close()
	ctx := testContext(t, time.Minute)
	_, err = cluster.Start(ctx, cluster.Config{Binary: bin, Dir: filepath.Dir(m.Data)})
	require.ErrorIs(t, err, cluster.ErrPortInUse)
	require.ErrorContains(t, err, "n1's Raft address "+m.Raft)
}
