package stocks_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/storage"
)

func TestParsePrice(t *testing.T) {
	for i, tc := range []struct {
		in, want string
	}{
		{`"116.03"`, "116.03"},
		{`116.03`, "116.03"},
		{`"574.0"`, "574"},
		{`574.0`, "574"},
		{`"0.50"`, "0.5"},
		{`"007.10"`, "7.1"},
		{`"0.00000001"`, "0.00000001"},
		{`"123456789012345.12345678"`, "123456789012345.12345678"},
		{`"1."`, ""},
		{`".5"`, ""},
		{`"0"`, ""},
		{`"0.000"`, ""},
		{`-1`, ""},
		{`"-1"`, ""},
		{`"+1"`, ""},
		{`1e5`, ""},
		{`"1E5"`, ""},
		{`"NaN"`, ""},
		{`"Infinity"`, ""},
		{`"0.000000001"`, ""},
		{`"1.123456789"`, ""},
		{`"1234567890123456"`, ""},
		{`""`, ""},
		{`" 1"`, ""},
		{`"1,5"`, ""},
		{`true`, ""},
		{`null`, ""},
		{`"\u0031"`, "1"},
	} {
		got, err := stocks.ParsePrice(json.RawMessage(tc.in))
		if tc.want == "" {
			var fe *fsm.Error
			require.True(t, errors.As(err, &fe), "#%d %s: want rejection, got %q", i, tc.in, got)
			require.Equal(t, fsm.CodeInvalid, fe.Code, "#%d", i)
			continue
		}
		require.NoError(t, err, "#%d %s", i, tc.in)
		require.Equal(t, tc.want, got, "#%d %s", i, tc.in)
	}
}

func TestValidSymbol(t *testing.T) {
	for _, ok := range []string{"AAPL", "BRK.B", "BF-B", "A", "0123456789"} {
		require.True(t, stocks.ValidSymbol(ok), ok)
	}
	for _, bad := range []string{"", "aapl", "TOOLONGSYMB", "A B", "A/B", "ÄPL", "A_B",
		".", "..", "-", ".A"} {
		require.False(t, stocks.ValidSymbol(bad), bad)
	}
}

// apply runs one command at index through the domain in its own batch.
func apply(t *testing.T, db *storage.StateDB, index uint64, leader time.Time,
	cmd stocks.PutCommand) stocks.Quote {
	t.Helper()
	b := db.NewBatch()
	defer b.Close()
	out, err := stocks.Domain{}.Apply(b, fsm.Request{Index: index, Time: leader, Op: stocks.OpPut,
		Payload: cmd.Command().Payload})
	require.NoError(t, err)
	require.NoError(t, b.Commit(false))
	var q stocks.Quote
	require.NoError(t, json.Unmarshal(out.Value, &q))
	return q
}

func TestLatestQuoteRules(t *testing.T) {
	db, err := storage.OpenState(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer db.Close()
	day := func(d int) time.Time { return time.Date(2020, 11, d, 0, 0, 0, 0, time.UTC) }
	now := day(30)

	q := apply(t, db, 1, now, stocks.PutCommand{Symbol: "AAPL", Price: "115", Time: day(24)})
	require.Equal(t, "115", q.Price)

	q = apply(t, db, 2, now, stocks.PutCommand{Symbol: "AAPL", Price: "116.03", Time: day(25)})
	require.Equal(t, "116.03", q.Price)

	// An older quote arriving later is accepted and leaves the newer one.
	q = apply(t, db, 3, now, stocks.PutCommand{Symbol: "AAPL", Price: "1", Time: day(23)})
	require.Equal(t, "116.03", q.Price)
	require.Equal(t, uint64(2), q.Index)

	// At equal quote times the later write in log order wins.
	q = apply(t, db, 4, now, stocks.PutCommand{Symbol: "AAPL", Price: "116.5", Time: day(25)})
	require.Equal(t, "116.5", q.Price)

	// Without a time the leader's clock applies...
	q = apply(t, db, 5, day(26), stocks.PutCommand{Symbol: "AAPL", Price: "117"})
	require.Equal(t, day(26), q.Time)

	// ...but never earlier than the stored time: a leader whose clock is
	// behind still wins by log order.
	q = apply(t, db, 6, day(1), stocks.PutCommand{Symbol: "AAPL", Price: "118"})
	require.Equal(t, "118", q.Price)
	require.Equal(t, day(26), q.Time)

	got, err := stocks.Get(db, "AAPL")
	require.NoError(t, err)
	require.Equal(t, q, got)

	list, err := stocks.List(db)
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestApplyRejectsBadCommandsAndWritesNothing(t *testing.T) {
	db, err := storage.OpenState(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer db.Close()
	for i, payload := range []string{
		`{`, `{"symbol":"aapl","price":"1"}`, `{"symbol":"AAPL","price":"1.0"}`,
		`{"symbol":"AAPL","price":"0"}`, `{"symbol":"AAPL","price":"abc"}`,
	} {
		b := db.NewBatch()
		_, err := stocks.Domain{}.Apply(b, fsm.Request{Index: 1, Op: stocks.OpPut,
			Payload: []byte(payload)})
		var fe *fsm.Error
		require.True(t, errors.As(err, &fe), "#%d", i)
		require.NoError(t, b.Close())
	}
	list, err := stocks.List(db)
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestQuoteFromTheFarFutureIsRejected(t *testing.T) {
	db, err := storage.OpenState(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer db.Close()
	leader := time.Date(2020, 11, 30, 0, 0, 0, 0, time.UTC)
	cmd := stocks.PutCommand{Symbol: "AAPL", Price: "5",
		Time: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}

	b := db.NewBatch()
	defer b.Close()
	_, err = stocks.Domain{}.Apply(b, fsm.Request{Index: 1, Time: leader, Op: stocks.OpPut,
		Payload: cmd.Command().Payload})
	var fe *fsm.Error
	require.True(t, errors.As(err, &fe))
	require.Equal(t, fsm.CodeInvalid, fe.Code)

	// Within a day ahead is a clock difference, and accepted.
	q := apply(t, db, 2, leader, stocks.PutCommand{Symbol: "AAPL", Price: "5",
		Time: leader.Add(time.Hour)})
	require.Equal(t, "5", q.Price)
}
