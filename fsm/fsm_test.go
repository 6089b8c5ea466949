package fsm_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/storage"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openFSM(t *testing.T, dir string) (*fsm.FSM, *storage.StateDB) {
	t.Helper()
	db, err := storage.OpenState(dir, quiet)
	require.NoError(t, err)
	f, err := fsm.New(fsm.Config{DB: db, Logger: quiet,
		Domains: map[fsm.DomainID]fsm.Domain{fsm.DomainStocks: stocks.Domain{}}})
	require.NoError(t, err)
	return f, db
}

func entry(t *testing.T, index uint64, cmd fsm.Command) *raft.Log {
	t.Helper()
	data, err := cmd.MarshalBinary()
	require.NoError(t, err)
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func put(symbol, price string, at int64, key string) fsm.Command {
	cmd := stocks.PutCommand{Symbol: symbol, Price: price}.Command()
	cmd.Time, cmd.IdempotencyKey = at, key
	return cmd
}

func TestCommandRoundTrip(t *testing.T) {
	for i, cmd := range []fsm.Command{
		{Domain: fsm.DomainStocks, Op: 1, Time: 42, Payload: []byte(`{"x":1}`)},
		{Domain: fsm.DomainText, Op: 7, Time: -1, IdempotencyKey: "k-1", Payload: nil},
		{Domain: fsm.DomainComments, Op: 255, Time: 1 << 62, IdempotencyKey: "ü",
			Payload: bytes.Repeat([]byte{0}, 1000)},
	} {
		data, err := cmd.MarshalBinary()
		require.NoError(t, err, "#%d", i)
		var got fsm.Command
		require.NoError(t, got.UnmarshalBinary(data), "#%d", i)
		require.Equal(t, cmd.Domain, got.Domain, "#%d", i)
		require.Equal(t, cmd.Op, got.Op, "#%d", i)
		require.Equal(t, cmd.Time, got.Time, "#%d", i)
		require.Equal(t, cmd.IdempotencyKey, got.IdempotencyKey, "#%d", i)
		require.Equal(t, string(cmd.Payload), string(got.Payload), "#%d", i)
	}
}

func TestCommandRejectsMalformed(t *testing.T) {
	good, err := (&fsm.Command{Domain: 1, Op: 1, IdempotencyKey: "abc"}).MarshalBinary()
	require.NoError(t, err)
	newer := append([]byte{fsm.CommandVersion + 1}, good[1:]...)
	badKeyLen := append(append([]byte{}, good[:11]...), 0xff, 0xff, 0x01)
	for i, data := range [][]byte{nil, {1}, good[:10], newer, badKeyLen, good[:12]} {
		var cmd fsm.Command
		require.ErrorIs(t, cmd.UnmarshalBinary(data), fsm.ErrBadCommand, "#%d", i)
	}
	_, err = (&fsm.Command{IdempotencyKey: string(make([]byte, 129))}).MarshalBinary()
	require.Error(t, err)
}

func TestApplyBatchIsOneAtomicStepAndSkipsAppliedEntries(t *testing.T) {
	dir := t.TempDir()
	f, db := openFSM(t, dir)
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

	results := f.ApplyBatch([]*raft.Log{
		entry(t, 1, put("AAPL", "1", at, "")),
		{Index: 2, Term: 1, Type: raft.LogConfiguration},
		entry(t, 3, put("AAPL", "2", at, "")),
		entry(t, 4, put("bad symbol", "2", at, "")),
	})
	require.Len(t, results, 4)
	require.Nil(t, results[1])
	require.Nil(t, results[0].(*fsm.Result).Err)
	require.Equal(t, fsm.CodeInvalid, results[3].(*fsm.Result).Err.Code)
	require.Equal(t, uint64(4), f.AppliedIndex())

	q, err := stocks.Get(db, "AAPL")
	require.NoError(t, err)
	require.Equal(t, "2", q.Price, "equal times: the later write in log order wins")
	require.Equal(t, uint64(3), q.Index)

	// After a restart the FSM resumes from its stored index and skips what
	// raft replays from the log.
	require.NoError(t, db.Close())
	f, db = openFSM(t, dir)
	defer db.Close()
	require.Equal(t, uint64(4), f.AppliedIndex())
	before, err := storage.Digest(db)
	require.NoError(t, err)
	results = f.ApplyBatch([]*raft.Log{
		entry(t, 3, put("AAPL", "999", at+1, "")),
		entry(t, 4, put("AAPL", "999", at+1, "")),
	})
	require.Equal(t, []interface{}{nil, nil}, results)
	after, err := storage.Digest(db)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

func TestIdempotencyKeyReturnsFirstResult(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

	first := f.ApplyBatch([]*raft.Log{entry(t, 1, put("IBM", "10", at, "retry-1"))})[0]
	f.ApplyBatch([]*raft.Log{entry(t, 2, put("IBM", "11", at+1, ""))})
	again := f.ApplyBatch([]*raft.Log{entry(t, 3, put("IBM", "10", at+2, "retry-1"))})[0]

	require.Equal(t, first, again, "a retry returns the first result, index included")
	q, err := stocks.Get(db, "IBM")
	require.NoError(t, err)
	require.Equal(t, "11", q.Price, "the retry applied nothing")
	require.Equal(t, uint64(3), f.AppliedIndex())
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src, srcDB := openFSM(t, t.TempDir())
	defer srcDB.Close()
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var batch []*raft.Log
	for i := uint64(1); i <= 100; i++ {
		batch = append(batch, entry(t, i, put("S"+string(rune('A'+i%26)), "1.5", at+int64(i), "")))
	}
	src.ApplyBatch(batch)

	snap, err := src.Snapshot()
	require.NoError(t, err)
	sink := &memorySink{}
	require.NoError(t, snap.Persist(sink))
	snap.Release()

	dst, dstDB := openFSM(t, t.TempDir())
	defer dstDB.Close()
	require.NoError(t, dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))))
	require.Equal(t, uint64(100), dst.AppliedIndex())
	a, err := storage.Digest(srcDB)
	require.NoError(t, err)
	b, err := storage.Digest(dstDB)
	require.NoError(t, err)
	require.Equal(t, a, b)
}

func TestSystemDomainRecordsMembers(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	m := fsm.Member{ID: "n2", HTTP: "127.0.0.1:8082", Raft: "127.0.0.1:9082"}
	f.ApplyBatch([]*raft.Log{
		entry(t, 1, fsm.MemberCommand(fsm.OpSetMember, m)),
		entry(t, 2, fsm.MemberCommand(fsm.OpSetMember, fsm.Member{ID: "n3", HTTP: "h", Raft: "r"})),
		entry(t, 3, fsm.MemberCommand(fsm.OpRemoveMember, fsm.Member{ID: "n3"})),
	})
	got, err := fsm.LookupMember(db, "n2")
	require.NoError(t, err)
	require.Equal(t, m, got)
	members, err := fsm.Members(db)
	require.NoError(t, err)
	raw, _ := json.Marshal(members)
	require.JSONEq(t, `[{"id":"n2","http":"127.0.0.1:8082","raft":"127.0.0.1:9082"}]`, string(raw))
}

type memorySink struct{ bytes.Buffer }

func (s *memorySink) ID() string    { return "memory" }
func (s *memorySink) Cancel() error { return nil }
func (s *memorySink) Close() error  { return nil }

func TestIdempotencyKeyReusedForAnotherRequestIsAConflict(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

	f.ApplyBatch([]*raft.Log{entry(t, 1, put("IDK", "1", at, "k1"))})
	other := f.ApplyBatch([]*raft.Log{entry(t, 2, put("IDK2", "3", at, "k1"))})[0].(*fsm.Result)
	require.NotNil(t, other.Err)
	require.Equal(t, fsm.CodeConflict, other.Err.Code)
	_, err := stocks.Get(db, "IDK2")
	require.ErrorIs(t, err, storage.ErrNotFound, "the conflicting write applied nothing")

	// A rejected command is not remembered: fixed and resent under the
	// same key, it is carried out.
	bad := f.ApplyBatch([]*raft.Log{entry(t, 3, put("FIX", "0", at, "k2"))})[0].(*fsm.Result)
	require.NotNil(t, bad.Err)
	good := f.ApplyBatch([]*raft.Log{entry(t, 4, put("FIX", "2", at, "k2"))})[0].(*fsm.Result)
	require.Nil(t, good.Err)
	q, err := stocks.Get(db, "FIX")
	require.NoError(t, err)
	require.Equal(t, "2", q.Price)
}

// TestRestoreRetiresUnpersistedSnapshot is the follower that installs the
// leader's snapshot while Raft holds one of its own, unpersisted, waiting
// for the goroutine that runs the restore. Restore must not wait for that
// snapshot: it retires it, and its Persist then fails without writing.
func TestRestoreRetiresUnpersistedSnapshot(t *testing.T) {
	src, srcDB := openFSM(t, t.TempDir())
	defer srcDB.Close()
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	src.ApplyBatch([]*raft.Log{entry(t, 1, put("LEAD", "2", at, ""))})
	snap, err := src.Snapshot()
	require.NoError(t, err)
	sink := &memorySink{}
	require.NoError(t, snap.Persist(sink))
	snap.Release()

	dst, dstDB := openFSM(t, t.TempDir())
	defer dstDB.Close()
	dst.ApplyBatch([]*raft.Log{entry(t, 1, put("OWN", "1", at, ""))})
	own, err := dst.Snapshot()
	require.NoError(t, err)

	restored := make(chan error, 1)
	go func() { restored <- dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))) }()
	select {
	case err := <-restored:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Restore is waiting for a snapshot that only its caller can release")
	}
	q, err := stocks.Get(dstDB, "LEAD")
	require.NoError(t, err)
	require.Equal(t, "2", q.Price)

	late := &memorySink{}
	require.Error(t, own.Persist(late), "a retired snapshot persists nothing")
	require.Zero(t, late.Len())
	own.Release()
	own.Release()

	// Snapshots taken after the restore work as before.
	next, err := dst.Snapshot()
	require.NoError(t, err)
	require.NoError(t, next.Persist(&memorySink{}))
	next.Release()
}
