package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/cluster"
)

// runShoal runs the command line args in this process and returns its
// error and output. Flags keep their values between Execute calls, so it
// resets every flag of every command afterwards.
func runShoal(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	defer func() {
		rootCmd.SetOut(nil)
		rootCmd.SetErr(nil)
		rootCmd.SetArgs(nil)
		resetFlags(rootCmd)
	}()
	err := rootCmd.Execute()
	return out.String(), err
}

func resetFlags(cmd *cobra.Command) {
	reset := func(f *pflag.Flag) {
		if slice, ok := f.Value.(pflag.SliceValue); ok {
			def := strings.Trim(f.DefValue, "[]")
			var vals []string
			if def != "" {
				vals = strings.Split(def, ",")
			}
			_ = slice.Replace(vals)
		} else {
			_ = f.Value.Set(f.DefValue)
		}
		f.Changed = false
	}
	cmd.Flags().VisitAll(reset)
	cmd.PersistentFlags().VisitAll(reset)
	for _, sub := range cmd.Commands() {
		resetFlags(sub)
	}
}

// deadAddr returns a 127.0.0.1 address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestBadFlagsFailBeforeWork runs every command with a bad numeric or enum
// flag: each fails naming the flag and what it accepts, before it
// contacts a node (the --addr has none) or reads its file.
func TestBadFlagsFailBeforeWork(t *testing.T) {
	dead := deadAddr(t)
	file := filepath.Join(t.TempDir(), "missing.csv")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "comments", file, "--page-size", "500"}, "--page-size 500: want 1-100"},
		{[]string{"replay", "comments", file, "--page-size", "0"}, "--page-size 0: want 1-100"},
		{[]string{"replay", "comments", file, "--concurrency", "0"}, "--concurrency 0: want 1-1000"},
		{[]string{"replay", "stocks", file, "--concurrency", "0"}, "--concurrency 0: want 1-1000"},
		{[]string{"replay", "stocks", file, "--concurrency", "-3"}, "--concurrency -3: want 1-1000"},
		{[]string{"replay", "text", file, "--clients", "0"}, "--clients 0: want 1-1000"},
		{[]string{"replay", "text", file, "--block", "0"}, "--block 0: want at least 1"},
		{[]string{"replay", "text", file, "--docs", "-1"}, "--docs -1: want 1-1000"},
		{[]string{"replay", "text", file, "--limit", "-1"}, "--limit -1: want at least 0"},
		{[]string{"bench", "--clients", "0"}, "--clients 0: want 1-10000"},
		{[]string{"bench", "--workload", "nope"}, `--workload "nope": want one of`},
		{[]string{"bench", "--duration", "0s"}, "--duration 0s: want a positive duration"},
		{[]string{"bench", "--rate", "-1"}, "--rate -1: want 0"},
		{[]string{"bench", "--read-fraction", "1.5"}, "--read-fraction 1.5: want 0-1"},
		{[]string{"bench", "--consistency", "linear"}, `--consistency "linear": want one of local, strong`},
		{[]string{"bench", "--workload", "redis-get"}, "needs --redis"},
		{[]string{"chaos", "--duration", "-1s"}, "--duration -1s: want a positive duration"},
		{[]string{"chaos", "--clients", "0"}, "--clients 0: want 1-1000"},
		{[]string{"node", "--id", "n1", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"node", "--id", "n1", "--election-timeout", "-1s"}, "--election-timeout -1s"},
		{[]string{"cluster", "up", "--nodes", "0"}, "--nodes 0: want 1-99"},
		{[]string{"cluster", "up", "--http-base", "70000"}, "--http-base 70000: want 1-65533"},
		{[]string{"cluster", "up", "--nodes", "5", "--http-base", "8081", "--raft-base", "8083"},
			"the ports of 5 nodes overlap"},
	} {
		args := tc.args
		if args[0] != "chaos" && args[0] != "node" && args[0] != "cluster" {
			args = append(args, "--addr", dead)
		}
		if args[0] == "cluster" {
			args = append(args, "--dir", t.TempDir())
		}
		out, err := runShoal(t, args...)
		require.Error(t, err, "%v", tc.args)
		require.Contains(t, err.Error(), tc.want, "%v", tc.args)
		require.NotContains(t, out, "running", "%v wrote before failing", tc.args)
	}
	_, err := os.Stat(file)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestReplaysAndBenchFailFastWithoutCluster checks that with no node at
// --addr each command stops at once, before reading its file.
func TestReplaysAndBenchFailFastWithoutCluster(t *testing.T) {
	dead := deadAddr(t)
	file := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{
		{"replay", "stocks", file, "--addr", dead},
		{"replay", "stocks", file, "--addr", "garbage"},
		{"replay", "text", file, "--addr", dead},
		{"replay", "comments", file, "--addr", dead + "," + deadAddr(t)},
		{"bench", "--addr", dead, "--duration", "1h"},
	} {
		out, err := runShoal(t, args...)
		require.Error(t, err, "%v", args)
		require.Contains(t, err.Error(), "no shoal node answers at", "%v", args)
		require.NotContains(t, out, "running", "%v", args)
	}
}

// fakeNode answers GET /v1/cluster as node id of a one-node cluster.
func fakeNode(t *testing.T, id string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Shoal-Node", id)
		host := strings.TrimPrefix(r.Host, "http://")
		_ = json.NewEncoder(w).Encode(map[string]any{"leader": id, "term": 2,
			"nodes": []map[string]any{{"id": id, "http": host, "state": "leader",
				"applied_index": 7}}})
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestProbeClusterFindsOneAnsweringNode(t *testing.T) {
	live := fakeNode(t, "n2")
	require.NoError(t, probeCluster(context.Background(), []string{deadAddr(t), live}))
}

// TestStatusSkipsNodeOfAnotherCluster checks that a node answering on a
// member's address as another id is not taken for that member.
func TestStatusSkipsNodeOfAnotherCluster(t *testing.T) {
	other := fakeNode(t, "n1")
	_, err := anyStatus(context.Background(), []target{{addr: other, id: "n2"}})
	require.ErrorContains(t, err, `answers as node "n1", not as n2`)

	status, err := anyStatus(context.Background(), []target{{addr: other, id: "n1"}})
	require.NoError(t, err)
	require.Equal(t, "n1", status.Node)
}

// TestStatusOfStoppedClusterIsAnError checks that `cluster status --dir`
// asks no address of a cluster whose recorded processes are gone, even
// when a node (of another cluster) answers there.
func TestStatusOfStoppedClusterIsAnError(t *testing.T) {
	dir := t.TempDir()
	other := fakeNode(t, "n1")
	writeState(t, dir, cluster.State{Members: []*cluster.Member{{ID: "n1", HTTP: other,
		Raft: "127.0.0.1:1", Pid: os.Getpid()}}})
	out, err := runShoal(t, "cluster", "status", "--dir", dir)
	require.ErrorContains(t, err, "no node of the cluster in "+dir+" is running")
	require.Empty(t, out)
}

func writeState(t *testing.T, dir string, state cluster.State) {
	t.Helper()
	raw, err := json.Marshal(state)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, cluster.StateFile), raw, 0o644))
}

// TestUpRefusesFlagsThatDisagreeWithItsDirectory checks that explicit
// ports or a node count other than the directory's are refused, and that
// the message says what the directory holds.
func TestUpRefusesFlagsThatDisagreeWithItsDirectory(t *testing.T) {
	dir := t.TempDir()
	writeState(t, dir, cluster.State{Members: []*cluster.Member{
		{ID: "n1", HTTP: "127.0.0.1:8081", Raft: "127.0.0.1:9081"},
		{ID: "n2", HTTP: "127.0.0.1:8082", Raft: "127.0.0.1:9082"},
		{ID: "n3", HTTP: "127.0.0.1:8083", Raft: "127.0.0.1:9083"},
	}})
	for _, args := range [][]string{
		{"--http-base", "7081", "--raft-base", "7091"},
		{"--nodes", "5"},
		{"--node-arg=--snapshot-threshold=100"},
	} {
		_, err := runShoal(t, append([]string{"cluster", "up", "--dir", dir}, args...)...)
		require.ErrorContains(t, err, dir+" holds a cluster of 3 nodes with HTTP on "+
			"127.0.0.1:8081, 127.0.0.1:8082, 127.0.0.1:8083 and Raft on 127.0.0.1:9081", "%v", args)
		flag, _, _ := strings.Cut(args[0], "=")
		require.ErrorContains(t, err, flag, "%v", args)
	}
	// The same values as the directory's are no conflict.
	cfg := cluster.Config{Nodes: 3, HTTPBase: 8081, RaftBase: 9081}
	up, _, err := rootCmd.Find([]string{"cluster", "up"})
	require.NoError(t, err)
	require.NoError(t, up.ParseFlags([]string{"--nodes", "3", "--http-base", "8081"}))
	t.Cleanup(func() { resetFlags(rootCmd) })
	require.NoError(t, checkFlagsAgainstDir(up, dir, cfg))
}

func TestStatusTableShowsNoIndexForUnreachableNodes(t *testing.T) {
	var status cluster.Status
	require.NoError(t, json.Unmarshal([]byte(`{"leader": "n1", "term": 3, "nodes": [
		{"id": "n1", "http": "127.0.0.1:8081", "state": "leader", "applied_index": 12},
		{"id": "n2", "http": "127.0.0.1:8082", "state": "unreachable", "applied_index": 0}]}`),
		&status))
	var out bytes.Buffer
	printTable(&out, "", status, nil)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4)
	require.Equal(t, "12", lastField(lines[2]))
	require.Equal(t, "-", lastField(lines[3]))
}

func lastField(line string) string {
	fields := strings.Fields(line)
	return fields[len(fields)-1]
}

// TestUpReportsItsRedisExiting checks that `cluster up` says so when the
// redis-server it started dies, and stays quiet when it stops it itself.
func TestUpReportsItsRedisExiting(t *testing.T) {
	run := func(r *cluster.Redis, stopping chan struct{}) <-chan string {
		done := make(chan string)
		go func() {
			var out bytes.Buffer
			watchRedis(&out, r, "DIR/redis", stopping)
			done <- out.String()
		}()
		return done
	}

	r := cluster.StartRedisTest(t)
	out := run(r, make(chan struct{}))
	r.Kill()
	require.Contains(t, <-out, "redis-server on "+r.Addr()+" exited (see DIR/redis/redis.log)")

	require.NoError(t, r.Start(context.Background()))
	stopping := make(chan struct{})
	out = run(r, stopping)
	close(stopping)
	r.Stop()
	require.Empty(t, <-out)
}
