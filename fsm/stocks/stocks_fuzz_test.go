package stocks_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/storage"
)

// canonicalForm is what every accepted price looks like.
var canonicalForm = regexp.MustCompile(`^(0|[1-9][0-9]{0,14})(\.[0-9]{0,7}[1-9])?$`)

// FuzzParsePrice checks the price parser on arbitrary JSON values: no
// panic, every rejection an invalid_argument *fsm.Error, and every accepted
// price canonical, positive, idempotent and equal in value to its input.
// Seeds are in testdata/fuzz/FuzzParsePrice.
func FuzzParsePrice(f *testing.F) {
	for _, seed := range []string{`"116.03"`, `116.03`, `"574.0"`, `"0.00000001"`, `1e5`,
		`"-1"`, `"NaN"`, `"\u0031.5"`, `"123456789012345.12345678"`, `null`, `"1."`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		price, err := stocks.ParsePrice(raw)
		if err != nil {
			var fe *fsm.Error
			if !errors.As(err, &fe) || fe.Code != fsm.CodeInvalid {
				t.Fatalf("rejection %v is not an invalid_argument *fsm.Error", err)
			}
			return
		}
		if !canonicalForm.MatchString(price) {
			t.Fatalf("%q parsed to %q, which is not canonical", raw, price)
		}
		again, err := stocks.CanonicalPrice(price)
		if err != nil || again != price {
			t.Fatalf("canonical %q does not parse to itself: %q, %v", price, again, err)
		}

		// The value is the input's: read the input as an exact rational.
		text := strings.TrimSpace(string(raw))
		var s string
		if json.Unmarshal(raw, &s) == nil {
			text = s
		}
		in, ok := new(big.Rat).SetString(text)
		out, _ := new(big.Rat).SetString(price)
		if !ok || in.Cmp(out) != 0 || out.Sign() <= 0 {
			t.Fatalf("%q parsed to %q, a different or non-positive value", raw, price)
		}
	})
}

// FuzzApply applies arbitrary stocks payloads, one after another, to one
// state database: no panic; a rejection is an *fsm.Error and writes
// nothing; an accepted quote is stored and the stored time per symbol
// never goes back. Seeds are in testdata/fuzz/FuzzApply.
func FuzzApply(f *testing.F) {
	at := time.Date(2020, 11, 25, 0, 0, 0, 0, time.UTC).UnixNano()
	f.Add(uint8(stocks.OpPut), []byte(`{"symbol":"AAPL","price":"116.03"}`), at)
	f.Add(uint8(stocks.OpPut), []byte(`{"symbol":"AAPL","price":"1","time":"2019-01-01T00:00:00Z"}`),
		at)
	f.Add(uint8(stocks.OpPut), []byte(`{"symbol":"AAPL","price":"1.10"}`), at)
	f.Add(uint8(stocks.OpPut), []byte(`{"symbol":"aapl","price":"1"}`), at)
	f.Add(uint8(stocks.OpPut), []byte(`{"symbol":"A","price":"1","time":"10000-01-01T00:00:00Z"}`),
		int64(-1))
	f.Add(uint8(9), []byte(`{}`), at)

	db, err := storage.OpenState(f.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(f, err)
	f.Cleanup(func() { _ = db.Close() })
	var index uint64

	f.Fuzz(func(t *testing.T, op uint8, payload []byte, at int64) {
		index++
		var cmd stocks.PutCommand
		_ = json.Unmarshal(payload, &cmd)
		before, _ := stocks.Get(db, cmd.Symbol)
		digest, err := storage.Digest(db)
		require.NoError(t, err)

		batch := db.NewBatch()
		defer batch.Close()
		out, err := stocks.Domain{}.Apply(batch, fsm.Request{Index: index,
			Time: time.Unix(0, at).UTC(), Op: op, Payload: payload})
		require.NoError(t, batch.Commit(false))
		if err != nil {
			var fe *fsm.Error
			if !errors.As(err, &fe) {
				t.Fatalf("rejection %v is not an *fsm.Error", err)
			}
			after, derr := storage.Digest(db)
			require.NoError(t, derr)
			if after != digest {
				t.Fatalf("rejected payload %q changed the state", payload)
			}
			return
		}
		var reply stocks.Quote
		if err := json.Unmarshal(out.Value, &reply); err != nil {
			t.Fatalf("reply %q: %v", out.Value, err)
		}
		stored, err := stocks.Get(db, reply.Symbol)
		if err != nil || stored != reply {
			t.Fatalf("reply %+v but stored %+v (%v)", reply, stored, err)
		}
		if stored.Time.Before(before.Time) {
			t.Fatalf("%s went back in time from %v to %v", reply.Symbol, before.Time,
				stored.Time)
		}
	})
}
