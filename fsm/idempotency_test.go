package fsm_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/storage"
)

// day is the default idempotency window in Unix nanoseconds.
const day = int64(fsm.DefaultIdempotencyWindow)

// t0 is the leader time the tests below start from.
var t0 = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// openFSMWindow is openFSM with an idempotency window.
func openFSMWindow(t testing.TB, dir string, window time.Duration) (*fsm.FSM, *storage.StateDB) {
	t.Helper()
	db, err := storage.OpenState(dir, quiet)
	require.NoError(t, err)
	f, err := fsm.New(fsm.Config{DB: db, Logger: quiet, IdempotencyWindow: window,
		Domains: map[fsm.DomainID]fsm.Domain{fsm.DomainStocks: stocks.Domain{}}})
	require.NoError(t, err)
	return f, db
}

// applyOne applies cmd as entry index in a batch of its own.
func applyOne(t testing.TB, f *fsm.FSM, index uint64, cmd fsm.Command) *fsm.Result {
	t.Helper()
	data, err := cmd.MarshalBinary()
	require.NoError(t, err)
	return f.ApplyBatch([]*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand,
		Data: data}})[0].(*fsm.Result)
}

// idemKeys lists the idempotency keys with a remembered result in r, and
// checks that each has exactly one entry in the expiry index.
func idemKeys(t *testing.T, r storage.Reader) []string {
	t.Helper()
	var keys, indexed []string
	require.NoError(t, r.Scan([]byte("sys/idem/"), storage.PrefixEnd([]byte("sys/idem/")),
		false, func(key, _ []byte) error {
			keys = append(keys, string(key[len("sys/idem/"):]))
			return nil
		}))
	prefix := []byte("sys/idem-expiry/")
	require.NoError(t, r.Scan(prefix, storage.PrefixEnd(prefix), false,
		func(key, value []byte) error {
			require.Len(t, value, 0)
			require.Greater(t, len(key), len(prefix)+8, "index key %q", key)
			indexed = append(indexed, string(key[len(prefix)+8:]))
			return nil
		}))
	require.ElementsMatch(t, keys, indexed, "remembered results and expiry index disagree")
	return keys
}

// idemClock reads the idempotency clock stored in r.
func idemClock(t *testing.T, r storage.Reader) int64 {
	t.Helper()
	raw, err := r.Get([]byte("sys/idem-clock"))
	require.NoError(t, err)
	require.Len(t, raw, 8)
	return int64(binary.BigEndian.Uint64(raw))
}

func TestIdempotencyRetryWithinWindowChangesNothing(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()

	first := applyOne(t, f, 1, put("IBM", "10", t0, "k"))
	require.Nil(t, first.Err)
	applyOne(t, f, 2, put("IBM", "11", t0+1, ""))
	before := digestWithoutApplied(t, db)

	// The window is inclusive: a retry stamped exactly a day later still
	// gets the first result, and leaves the clock where it was.
	for i, at := range []int64{t0, t0 + day/2, t0 + day, 0} {
		again := applyOne(t, f, uint64(3+i), put("IBM", "10", at, "k"))
		require.Equal(t, first, again, "#%d", i)
		require.Equal(t, before, digestWithoutApplied(t, db), "#%d: the retry changed the state", i)
	}
	q, err := stocks.Get(db, "IBM")
	require.NoError(t, err)
	require.Equal(t, "11", q.Price)
}

func TestIdempotencyKeyExpiresAfterWindow(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()

	first := applyOne(t, f, 1, put("IBM", "10", t0, "k"))
	require.Nil(t, first.Err)
	require.Equal(t, []string{"k"}, idemKeys(t, db))
	retry := put("IBM", "10", 0, "k")
	_, ok := fsm.Remembered(db, &retry)
	require.True(t, ok)

	// Another write just past the window expires the key.
	applyOne(t, f, 2, put("MSFT", "1", t0+day+1, ""))
	require.Empty(t, idemKeys(t, db))
	require.Equal(t, t0+day+1, idemClock(t, db))
	_, ok = fsm.Remembered(db, &retry)
	require.False(t, ok)

	// The same request under the key applies anew, with its own index...
	again := applyOne(t, f, 3, put("IBM", "10", t0+day+2, "k"))
	require.Nil(t, again.Err)
	require.Equal(t, uint64(3), again.Index)
	q, err := stocks.Get(db, "IBM")
	require.NoError(t, err)
	require.Equal(t, uint64(3), q.Index)

	// ...and is remembered for a window from then on.
	require.Equal(t, again, applyOne(t, f, 4, put("IBM", "10", t0+2*day+2, "k")))

	// After that window the key may carry a different request, and the
	// retry itself, stamped past the window with nothing in between,
	// applies anew.
	other := applyOne(t, f, 5, put("ORCL", "7", t0+3*day+3, "k"))
	require.Nil(t, other.Err, "an expired key is free for another request")
	require.Equal(t, uint64(5), other.Index)
	require.Equal(t, []string{"k"}, idemKeys(t, db))
	require.Equal(t, other, applyOne(t, f, 6, put("ORCL", "7", t0+3*day+4, "k")))
	conflict := applyOne(t, f, 7, put("IBM", "10", t0+3*day+5, "k"))
	require.NotNil(t, conflict.Err)
	require.Equal(t, fsm.CodeConflict, conflict.Err.Code)
}

func TestIdempotencyWindowIsConfigurable(t *testing.T) {
	f, db := openFSMWindow(t, t.TempDir(), time.Minute)
	defer db.Close()
	minute := int64(time.Minute)

	first := applyOne(t, f, 1, put("IBM", "10", t0, "k"))
	require.Equal(t, first, applyOne(t, f, 2, put("IBM", "10", t0+minute, "k")))
	again := applyOne(t, f, 3, put("IBM", "10", t0+minute+1, "k"))
	require.Equal(t, uint64(3), again.Index, "a retry past a one-minute window applies anew")

	_, err := fsm.New(fsm.Config{DB: db, IdempotencyWindow: -time.Second})
	require.Error(t, err)
}

func TestIdempotencyExpiryIsBoundedPerCommand(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()

	// 10 keys remembered at t0, in one batch.
	var batch []*raft.Log
	for i := range 10 {
		batch = append(batch, entry(t, uint64(i+1), put(fmt.Sprintf("S%d", i), "1", t0,
			fmt.Sprintf("k%02d", i))))
	}
	f.ApplyBatch(batch)
	require.Len(t, idemKeys(t, db), 10)

	// The first write after the window deletes the two oldest only; the
	// rest are expired all the same, but go with later commands.
	applyOne(t, f, 11, put("X", "1", t0+day+1, ""))
	require.Equal(t, []string{"k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09"},
		idemKeys(t, db))
	for i := range 10 {
		retry := put(fmt.Sprintf("S%d", i), "1", 0, fmt.Sprintf("k%02d", i))
		_, ok := fsm.Remembered(db, &retry)
		require.False(t, ok, "k%02d is past its window", i)
	}

	// A rejected command and a retry answered from memory are not carried
	// out: they delete nothing.
	require.NotNil(t, applyOne(t, f, 12, put("bad symbol", "1", t0+day+2, "")).Err)
	fresh := applyOne(t, f, 13, put("Y", "1", t0+day+2, "fresh"))
	require.Len(t, idemKeys(t, db), 7, "k02 and k03 went, fresh came")
	require.Equal(t, fresh, applyOne(t, f, 14, put("Y", "1", t0+day+3, "fresh")))
	require.Len(t, idemKeys(t, db), 7)

	// A batch of three writes deletes at most six.
	f.ApplyBatch([]*raft.Log{
		entry(t, 15, put("Z", "1", t0+day+4, "")),
		entry(t, 16, put("Z", "2", t0+day+4, "")),
		entry(t, 17, put("Z", "3", t0+day+4, "")),
	})
	require.Equal(t, []string{"fresh"}, idemKeys(t, db))
}

func TestIdempotencyClockNeverGoesBackwards(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()

	for i := range 4 {
		applyOne(t, f, uint64(i+1), put(fmt.Sprintf("S%d", i), "1", t0, fmt.Sprintf("k%d", i)))
	}
	applyOne(t, f, 5, put("X", "1", t0+day+1, ""))
	require.Equal(t, []string{"k2", "k3"}, idemKeys(t, db), "k2 and k3 expired, not deleted")
	mark := idemClock(t, db)

	// Commands stamped earlier, or not at all, neither move the clock back
	// nor bring k2 back: its retry applies anew.
	again := applyOne(t, f, 6, put("S2", "1", t0, "k2"))
	require.Equal(t, uint64(6), again.Index)
	applyOne(t, f, 7, put("X", "2", 0, ""))
	applyOne(t, f, 8, put("X", "3", -1, ""))
	require.Equal(t, mark, idemClock(t, db))

	// A key remembered by a command stamped earlier than the clock is kept
	// for a window of the clock, not of its own stamp...
	early := applyOne(t, f, 9, put("E", "1", 0, "early"))
	require.Equal(t, early, applyOne(t, f, 10, put("E", "1", mark+day, "early")))
	require.Contains(t, idemKeys(t, db), "early")

	// ...and no longer: an old stamp keeps nothing alive.
	applyOne(t, f, 11, put("X", "4", mark+day+1, ""))
	applyOne(t, f, 12, put("X", "5", 0, ""))
	require.Empty(t, idemKeys(t, db))
	require.Equal(t, mark+day+1, idemClock(t, db))
}

func TestIdempotencyClockSurvivesSnapshotAndReopen(t *testing.T) {
	src, srcDB := openFSM(t, t.TempDir())
	defer srcDB.Close()
	for i := range 5 {
		applyOne(t, src, uint64(i+1), put(fmt.Sprintf("S%d", i), "1", t0, fmt.Sprintf("k%d", i)))
	}
	applyOne(t, src, 6, put("X", "1", t0+day+1, ""))
	require.Len(t, idemKeys(t, srcDB), 3, "three expired keys are left to delete")

	snap, err := src.Snapshot()
	require.NoError(t, err)
	sink := &memorySink{}
	require.NoError(t, snap.Persist(sink))
	snap.Release()

	dir := t.TempDir()
	dst, dstDB := openFSM(t, dir)
	require.NoError(t, dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))))
	require.NoError(t, dstDB.Close())
	dst, dstDB = openFSM(t, dir)
	defer dstDB.Close()
	require.Equal(t, uint64(6), dst.AppliedIndex())
	require.Equal(t, t0+day+1, idemClock(t, dstDB))

	// Without the clock, k4 would look live to a retry stamped at t0.
	retry := put("S4", "1", t0, "k4")
	_, ok := fsm.Remembered(dstDB, &retry)
	require.False(t, ok)

	// Both go on identically from there.
	log := []*raft.Log{
		entry(t, 7, retry),
		entry(t, 8, put("Y", "1", 0, "")),
		entry(t, 9, put("Y", "2", t0+day+2, "y")),
	}
	for _, f := range []*fsm.FSM{src, dst} {
		results := f.ApplyBatch(log)
		require.Equal(t, uint64(7), results[0].(*fsm.Result).Index, "k4 applied anew")
	}
	a, err := storage.Digest(srcDB)
	require.NoError(t, err)
	b, err := storage.Digest(dstDB)
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Equal(t, []string{"k4", "y"}, idemKeys(t, dstDB),
		"k2 and k3 expired; k4 is remembered anew")
}

// TestIdempotencyExpiryIsDeterministic applies one log, in which keys are
// remembered, retried, reused and expired, to two state machines that
// batch it differently, as a leader and a follower do, and to a third that
// restarts midway; all hold the same state at every common index.
func TestIdempotencyExpiryIsDeterministic(t *testing.T) {
	var log []*raft.Log
	var cmds []fsm.Command
	at := t0
	for i := range 600 {
		// Time mostly moves forward in half hours, sometimes back (a new
		// leader whose clock is behind) or is missing. Keys come back after
		// 17 or 71 entries, so within the window and after it; every 11th
		// command retries the one before.
		switch {
		case i%97 == 0:
			at -= 3 * int64(time.Hour)
		case i%5 != 0:
			at += int64(time.Hour) / 2
		}
		cmd := put(fmt.Sprintf("S%d", i%13), fmt.Sprint(1+i%7), at, "")
		switch {
		case i%11 == 0 && i > 0:
			cmd = cmds[i-1]
			cmd.Time = at
		case i%3 == 1:
			cmd.IdempotencyKey = fmt.Sprintf("a%d", i%71)
		case i%3 == 2:
			cmd.IdempotencyKey = fmt.Sprintf("b%d", i%17)
		}
		if i%41 == 0 {
			cmd.Time = 0
		}
		cmds = append(cmds, cmd)
		log = append(log, entry(t, uint64(i+1), cmd))
	}

	a, dbA := openFSM(t, t.TempDir())
	defer dbA.Close()
	b, dbB := openFSM(t, t.TempDir())
	defer dbB.Close()
	dirC := t.TempDir()
	c, dbC := openFSM(t, dirC)
	defer func() { dbC.Close() }()

	seen := map[string]bool{}
	var firstResults, appliedAnew, conflicts, deleted int
	var before []string
	for start := 0; start < len(log); start += 50 {
		chunk := log[start : start+50]
		for i, r := range a.ApplyBatch(chunk) {
			result, cmd := r.(*fsm.Result), cmds[start+i]
			switch {
			case cmd.IdempotencyKey == "":
			case result.Err != nil:
				require.Equal(t, fsm.CodeConflict, result.Err.Code)
				conflicts++
			case result.Index != chunk[i].Index:
				firstResults++
			case seen[cmd.IdempotencyKey]:
				appliedAnew++
			}
			seen[cmd.IdempotencyKey] = true
		}
		for _, e := range chunk {
			b.ApplyBatch([]*raft.Log{e})
		}
		for i := 0; i < len(chunk); i += 7 {
			c.ApplyBatch(chunk[i:min(i+7, len(chunk))])
		}
		if start == 300 {
			require.NoError(t, dbC.Close())
			c, dbC = openFSM(t, dirC)
		}

		da, err := storage.Digest(dbA)
		require.NoError(t, err)
		db, err := storage.Digest(dbB)
		require.NoError(t, err)
		dc, err := storage.Digest(dbC)
		require.NoError(t, err)
		require.Equal(t, da, db, "one batch against one entry a batch, at index %d",
			start+50)
		require.Equal(t, da, dc, "batches of 7 and a restart, at index %d", start+50)

		now := idemKeys(t, dbA)
		for _, k := range before {
			if !slices.Contains(now, k) {
				deleted++
			}
		}
		before = now
	}
	t.Logf("first results %d, conflicts %d, applied anew %d, deleted by expiry %d",
		firstResults, conflicts, appliedAnew, deleted)
	require.Positive(t, firstResults)
	require.Positive(t, conflicts)
	require.Positive(t, appliedAnew)
	require.Positive(t, deleted)
}
