package cluster

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
)

// chaosDurationEnv overrides the length of TestChaos's workload, for a
// longer run by hand: SHOAL_CHAOS_DURATION=5m go test -run TestChaos.
const chaosDurationEnv = "SHOAL_CHAOS_DURATION"

// TestChaos is the short chaos run of `make test`, about two minutes with
// setup and checks: a three-node cluster under kill -9, SIGSTOP and
// network partitions with a fixed seed, its register history checked for
// linearizability, then every node checked for the same applied index and
// state digest. `make chaos` (shoal chaos) is the long run.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real node processes; skipped with -short")
	}
	bin, err := Binary()
	require.NoError(t, err)
	duration := 100 * time.Second
	if v := os.Getenv(chaosDurationEnv); v != "" {
		duration, err = time.ParseDuration(v)
		require.NoError(t, err, chaosDurationEnv)
	}
	seed := uint64(1)
	if v := os.Getenv("SHOAL_CHAOS_SEED"); v != "" {
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
	}

	// With redis-server at hand (CI installs it) strong reads go through
	// the hot tier, and Redis itself is paused and killed too.
	_, lookErr := exec.LookPath("redis-server")
	if lookErr != nil {
		t.Log("redis-server not found: the run leaves the hot tier out")
	}

	dir := t.TempDir()
	report, err := RunChaos(context.Background(), ChaosConfig{
		Binary:   bin,
		Dir:      dir,
		Duration: duration,
		Seed:     seed,
		Redis:    lookErr == nil,
		Logf:     t.Logf,
	})
	require.NoError(t, err)
	t.Log("\n" + report.String())
	if !report.OK() {
		dumpLogs(t, dir)
		if report.Visualization != "" {
			raw, _ := os.ReadFile(report.Visualization)
			if out := os.Getenv("SHOAL_CHAOS_ARTIFACTS"); out != "" {
				_ = os.WriteFile(out, raw, 0o644)
			}
		}
	}
	require.Empty(t, report.Anomalies)
	require.True(t, report.Converged)
	require.Equal(t, "Ok", string(report.CheckResult))
	require.NotEmpty(t, report.FaultEvents, "the run injected no fault")
	require.Positive(t, report.WritesOK)
	require.Positive(t, report.ReadsOK)
}

// TestRegisterCheckerFindsAnomalies runs the register checker on small
// hand-made histories, so that a checker that accepts everything cannot
// pass for a cluster without anomalies.
func TestRegisterCheckerFindsAnomalies(t *testing.T) {
	w := func(client int, value string, call, ret int64, outcome string) registerOp {
		return registerOp{Client: client, Input: registerInput{Key: "K", Write: true,
			Value: value}, Call: call, Return: ret, Outcome: outcome}
	}
	r := func(client int, value string, call, ret int64) registerOp {
		return registerOp{Client: client, Input: registerInput{Key: "K"},
			Output: registerOutput{Value: value}, Call: call, Return: ret, Outcome: outcomeOK}
	}
	for i, tc := range []struct {
		history []registerOp
		want    porcupine.CheckResult
		unknown int // unknown writes kept for the checker
	}{
		{history: []registerOp{w(0, "1", 0, 10, outcomeOK), r(1, "1", 20, 30)},
			want: porcupine.Ok},
		{history: []registerOp{r(1, "", 0, 5), w(0, "1", 10, 20, outcomeOK), r(1, "", 12, 15)},
			want: porcupine.Ok},
		// A stale read: 2 was acknowledged before the read began.
		{history: []registerOp{w(0, "1", 0, 10, outcomeOK), w(0, "2", 20, 30, outcomeOK),
			r(1, "1", 40, 50)}, want: porcupine.Illegal},
		// A lost write: acknowledged, then the initial state is read.
		{history: []registerOp{w(0, "1", 0, 10, outcomeOK), r(1, "", 20, 30)},
			want: porcupine.Illegal},
		// An unknown write seen long after its call took effect late.
		{history: []registerOp{w(0, "1", 0, 10, outcomeUnknown), r(1, "", 20, 30),
			r(1, "1", 40, 50)}, want: porcupine.Ok, unknown: 1},
		// An unknown write nobody saw is dropped.
		{history: []registerOp{w(0, "1", 0, 10, outcomeUnknown), r(1, "", 20, 30)},
			want: porcupine.Ok},
		// An unknown write seen, then not seen, then seen again.
		{history: []registerOp{w(0, "1", 0, 10, outcomeUnknown), r(1, "1", 20, 30),
			r(1, "", 40, 50), r(1, "1", 60, 70)}, want: porcupine.Illegal, unknown: 1},
		// A value read before anyone wrote it.
		{history: []registerOp{r(1, "1", 0, 5), w(0, "1", 10, 20, outcomeUnknown)},
			want: porcupine.Illegal, unknown: 1},
	} {
		work := &registerWorkload{history: tc.history}
		got := work.check(time.Minute)
		require.Equal(t, tc.want, got.Result, "#%d", i)
		require.Equal(t, tc.unknown, got.Unknown, "#%d", i)
	}
}

// TestNetworkCutsAndHeals checks the proxies on their own: bytes flow
// through a link, a cut link swallows them without closing anything, and
// a healed link carries new connections again.
func TestNetworkCutsAndHeals(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer echo.Close()
	go func() {
		for {
			conn, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn) }()
		}
	}()

	network := NewNetwork()
	defer network.Close()
	a := Member{ID: "a", Raft: echo.Addr().String(), HTTP: echo.Addr().String()}
	b := Member{ID: "b", Raft: echo.Addr().String(), HTTP: echo.Addr().String()}
	env := network.ProcessEnv(a, []Member{a, b})
	require.Len(t, env, 1)
	_, spec, _ := strings.Cut(env[0], "=")
	_, proxyAddr, _ := strings.Cut(strings.Split(spec, ",")[0], "=")

	// A healthy round trip gets all the time it needs; a cut one is
	// expected to deliver nothing, which a short wait shows well enough.
	roundTrip := func(conn net.Conn, wait time.Duration) error {
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 4)
		_, err := io.ReadFull(conn, buf)
		return err
	}
	conn, err := net.Dial("tcp", proxyAddr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, roundTrip(conn, time.Minute))

	network.Cut("a", "b")
	require.Equal(t, []string{"a→b"}, network.Cuts())
	err = roundTrip(conn, 300*time.Millisecond)
	var netErr net.Error
	require.ErrorAs(t, err, &netErr, "a cut link times out")
	require.True(t, netErr.Timeout())

	network.HealAll()
	require.Empty(t, network.Cuts())
	fresh, err := net.Dial("tcp", proxyAddr)
	require.NoError(t, err)
	defer fresh.Close()
	require.NoError(t, roundTrip(fresh, time.Minute))
}
