package fsm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/storage"
)

// FuzzCommandUnmarshal feeds arbitrary bytes to the command decoder, which
// reads every Raft entry and every forwarded write: it must never panic,
// must reject with ErrBadCommand, and what it accepts must survive an
// encode and decode unchanged. Seeds are in
// testdata/fuzz/FuzzCommandUnmarshal.
func FuzzCommandUnmarshal(f *testing.F) {
	for _, cmd := range []fsm.Command{
		put("AAPL", "116.03", 1606262400000000000, ""),
		put("MSFT", "1", 0, "client-1-42"),
		fsm.MemberCommand(fsm.OpSetMember, fsm.Member{ID: "n1", HTTP: "h:1", Raft: "r:2"}),
		{Domain: fsm.DomainText, Op: 9, Time: -1},
	} {
		data, err := cmd.MarshalBinary()
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
		0x80, 0x80, 0x01})

	f.Fuzz(func(t *testing.T, data []byte) {
		var cmd fsm.Command
		if err := cmd.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("rejection %v does not wrap ErrBadCommand", err)
			}
			return
		}
		if len(cmd.IdempotencyKey) > 128 {
			t.Fatalf("accepted a %d-byte idempotency key", len(cmd.IdempotencyKey))
		}
		encoded, err := cmd.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		var again fsm.Command
		if err := again.UnmarshalBinary(encoded); err != nil {
			t.Fatalf("a re-encoded command does not decode: %v", err)
		}
		if again.Domain != cmd.Domain || again.Op != cmd.Op || again.Time != cmd.Time ||
			again.IdempotencyKey != cmd.IdempotencyKey ||
			!bytes.Equal(again.Payload, cmd.Payload) {
			t.Fatalf("round trip changed the command: %+v became %+v", cmd, again)
		}
	})
}

// FuzzApplyEntry applies arbitrary Raft entries, one after another, to one
// state machine holding the stocks and system domains. A committed entry is
// applied on every node, so one that panics would crash the whole cluster:
// none may. Every command entry gets a result, and one the state machine
// rejects changes nothing but the applied index and, with an idempotency
// key, the remembered result. Seeds are in testdata/fuzz/FuzzApplyEntry.
func FuzzApplyEntry(f *testing.F) {
	at := time.Date(2020, 11, 25, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, cmd := range []fsm.Command{
		put("AAPL", "116.03", at, ""),
		put("AAPL", "116.03", at, "key-1"),
		stocks.PutCommand{Symbol: "TSLA", Price: "574", Time: time.Unix(0, at)}.Command(),
		{Domain: fsm.DomainStocks, Op: stocks.OpPut, Payload: []byte(`{"symbol":"A"}`)},
		{Domain: fsm.DomainStocks, Op: 2, Payload: []byte(`{}`)},
		{Domain: 77, Op: 1, Payload: []byte(`x`)},
		fsm.MemberCommand(fsm.OpRemoveMember, fsm.Member{ID: "n9"}),
	} {
		data, err := cmd.MarshalBinary()
		require.NoError(f, err)
		f.Add(data)
	}

	db, err := storage.OpenState(f.TempDir(), quiet)
	require.NoError(f, err)
	f.Cleanup(func() { _ = db.Close() })
	f2, err := fsm.New(fsm.Config{DB: db, Logger: quiet,
		Domains: map[fsm.DomainID]fsm.Domain{fsm.DomainStocks: stocks.Domain{}}})
	require.NoError(f, err)
	index := f2.AppliedIndex()

	f.Fuzz(func(t *testing.T, data []byte) {
		before := digestWithoutApplied(t, db)
		index++
		results := f2.ApplyBatch([]*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand,
			Data: data}})
		if f2.AppliedIndex() != index {
			t.Fatalf("applied index %d after applying %d", f2.AppliedIndex(), index)
		}
		var cmd fsm.Command
		keyed := cmd.UnmarshalBinary(data) == nil && cmd.IdempotencyKey != ""
		result, ok := results[0].(*fsm.Result)
		// A repeated idempotency key answers with the first result, index
		// included.
		if !ok || result == nil || result.Index != index && !keyed {
			t.Fatalf("entry %d got result %#v", index, results[0])
		}
		if result.Err == nil {
			if !json.Valid(result.Value) {
				t.Fatalf("reply %q is not JSON", result.Value)
			}
			return
		}
		// A rejection changes nothing, not even under an idempotency key:
		// only a command that was carried out is remembered.
		if after := digestWithoutApplied(t, db); after != before {
			t.Fatalf("rejected entry (%v) changed the state", result.Err)
		}
	})
}

// digestWithoutApplied hashes the whole state but the applied index.
func digestWithoutApplied(t *testing.T, r storage.Reader) [32]byte {
	t.Helper()
	hash := sha256.New()
	err := r.Scan(nil, nil, false, func(key, value []byte) error {
		if string(key) == "sys/applied" {
			return nil
		}
		hash.Write(key)
		hash.Write([]byte{0})
		hash.Write(value)
		hash.Write([]byte{0})
		return nil
	})
	require.NoError(t, err)
	var sum [32]byte
	copy(sum[:], hash.Sum(nil))
	return sum
}
