package storage

import (
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// openRaftStore opens a RaftStore in dir and closes it when the test ends.
func openRaftStore(t *testing.T, dir string) *RaftStore {
	t.Helper()
	store, err := OpenRaftStore(dir, discardLogger())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	return store
}

func requireIndexes(t *testing.T, store *RaftStore, first, last uint64) {
	t.Helper()
	got, err := store.FirstIndex()
	require.NoError(t, err)
	require.Equal(t, first, got, "first index")
	got, err = store.LastIndex()
	require.NoError(t, err)
	require.Equal(t, last, got, "last index")
}

func TestRaftStoreLogs(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenRaftStore(dir, discardLogger())
	require.NoError(t, err)
	requireIndexes(t, store, 0, 0)

	appendedAt := time.Unix(1_700_000_000, 123456789)
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{
			Index:      i,
			Term:       i/4 + 1,
			Type:       raft.LogCommand,
			Data:       []byte{byte(i), 0, byte(i)},
			Extensions: []byte("ext"),
			AppendedAt: appendedAt.Add(time.Duration(i)),
		})
	}
	require.NoError(t, store.StoreLogs(logs[:9]))
	require.NoError(t, store.StoreLog(logs[9]))
	require.NoError(t, store.StoreLog(&raft.Log{Index: 11, Term: 3, Type: raft.LogNoop}))
	requireIndexes(t, store, 1, 11)

	for _, want := range logs {
		var got raft.Log
		require.NoError(t, store.GetLog(want.Index, &got))
		require.True(t, want.AppendedAt.Equal(got.AppendedAt), "index %d", want.Index)
		got.AppendedAt = want.AppendedAt
		require.Equal(t, *want, got)
	}
	var noop raft.Log
	require.NoError(t, store.GetLog(11, &noop))
	require.Equal(t, raft.Log{Index: 11, Term: 3, Type: raft.LogNoop}, noop)

	var missing raft.Log
	require.ErrorIs(t, store.GetLog(0, &missing), raft.ErrLogNotFound)
	require.ErrorIs(t, store.GetLog(12, &missing), raft.ErrLogNotFound)

	// Compaction removes the head, a conflicting suffix the tail.
	require.NoError(t, store.DeleteRange(1, 3))
	requireIndexes(t, store, 4, 11)
	require.ErrorIs(t, store.GetLog(3, &missing), raft.ErrLogNotFound)
	require.NoError(t, store.DeleteRange(9, 11))
	requireIndexes(t, store, 4, 8)

	// The log survives a restart.
	require.NoError(t, store.Close())
	store = openRaftStore(t, dir)
	requireIndexes(t, store, 4, 8)
	var got raft.Log
	require.NoError(t, store.GetLog(8, &got))
	require.Equal(t, logs[7].Data, got.Data)

	require.NoError(t, store.DeleteRange(0, ^uint64(0)))
	requireIndexes(t, store, 0, 0)
}

func TestRaftStoreStable(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenRaftStore(dir, discardLogger())
	require.NoError(t, err)

	// hashicorp/raft tells a missing key by this exact text.
	value, err := store.Get([]byte("missing"))
	require.EqualError(t, err, "not found")
	require.Empty(t, value)
	number, err := store.GetUint64([]byte("missing"))
	require.EqualError(t, err, "not found")
	require.Zero(t, number)

	require.NoError(t, store.Set([]byte("name"), []byte("value")))
	require.NoError(t, store.SetUint64([]byte("CurrentTerm"), 42))

	// Stable keys live apart from log entries.
	requireIndexes(t, store, 0, 0)

	require.NoError(t, store.Close())
	store = openRaftStore(t, dir)
	value, err = store.Get([]byte("name"))
	require.NoError(t, err)
	require.Equal(t, []byte("value"), value)
	number, err = store.GetUint64([]byte("CurrentTerm"))
	require.NoError(t, err)
	require.Equal(t, uint64(42), number)

	_, err = store.GetUint64([]byte("name"))
	require.Error(t, err)
}

// listFSM records the commands it applies.
type listFSM struct {
	mu       sync.Mutex
	commands []string
}

func (f *listFSM) Apply(log *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, string(log.Data))
	return nil
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("snapshots not supported")
}

func (f *listFSM) Restore(io.ReadCloser) error {
	return errors.New("snapshots not supported")
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commands)
}

// startRaft starts a single-node raft on store and waits until it leads.
func startRaft(
	t *testing.T, store *RaftStore, snapshots raft.SnapshotStore, fsm raft.FSM,
) *raft.Raft {
	t.Helper()
	config := raft.DefaultConfig()
	config.LocalID = "node1"
	config.HeartbeatTimeout = 50 * time.Millisecond
	config.ElectionTimeout = 50 * time.Millisecond
	config.LeaderLeaseTimeout = 50 * time.Millisecond
	config.CommitTimeout = 5 * time.Millisecond
	config.LogOutput = io.Discard

	_, transport := raft.NewInmemTransport("node1")
	r, err := raft.NewRaft(config, fsm, store, store, snapshots, transport)
	require.NoError(t, err)
	return r
}

func TestRaftStoreWithRaft(t *testing.T) {
	raftDir, snapDir := t.TempDir(), t.TempDir()
	snapshots, err := raft.NewFileSnapshotStore(snapDir, 1, io.Discard)
	require.NoError(t, err)

	store, err := OpenRaftStore(raftDir, discardLogger())
	require.NoError(t, err)
	fsm := &listFSM{}
	r := startRaft(t, store, snapshots, fsm)
	bootstrap := raft.Configuration{Servers: []raft.Server{{ID: "node1", Address: "node1"}}}
	require.NoError(t, r.BootstrapCluster(bootstrap).Error())
	require.Eventually(t, func() bool { return r.State() == raft.Leader },
		5*time.Second, 10*time.Millisecond)

	want := []string{"one", "two", "three"}
	for _, command := range want {
		require.NoError(t, r.Apply([]byte(command), time.Second).Error())
	}
	require.Equal(t, want, fsm.list())
	require.NoError(t, r.Shutdown().Error())
	require.NoError(t, store.Close())

	// After a restart raft finds its term, configuration and log, and
	// replays the commands into a fresh state machine.
	store = openRaftStore(t, raftDir)
	term, err := store.GetUint64([]byte("CurrentTerm"))
	require.NoError(t, err)
	require.NotZero(t, term)

	fsm = &listFSM{}
	r = startRaft(t, store, snapshots, fsm)
	defer func() { require.NoError(t, r.Shutdown().Error()) }()
	require.Eventually(t, func() bool { return slices.Equal(want, fsm.list()) },
		5*time.Second, 10*time.Millisecond)

	future := r.GetConfiguration()
	require.NoError(t, future.Error())
	require.Equal(t, bootstrap.Servers[0].ID, future.Configuration().Servers[0].ID)
}
