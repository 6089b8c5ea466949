package text

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// logRevs returns the revisions of a document's op log entries, in order.
func logRevs(t *testing.T, r storage.Reader, id string) []uint64 {
	t.Helper()
	prefix := logPrefix(id)
	var revs []uint64
	require.NoError(t, r.Scan(prefix, storage.PrefixEnd(prefix), false,
		func(key, _ []byte) error {
			revs = append(revs, binary.BigEndian.Uint64(key[len(prefix):]))
			return nil
		}))
	return revs
}

// seenRevs returns the revisions the (client, seq) records of a document
// point at.
func seenRevs(t *testing.T, r storage.Reader, id string) []uint64 {
	t.Helper()
	prefix := append(append(append([]byte(nil), prefixSeen...), id...), '/')
	var revs []uint64
	require.NoError(t, r.Scan(prefix, storage.PrefixEnd(prefix), false,
		func(_, value []byte) error {
			revs = append(revs, binary.BigEndian.Uint64(value))
			return nil
		}))
	return revs
}

func mustMeta(t *testing.T, r storage.Reader, id string) meta {
	t.Helper()
	m, ok, err := readMeta(r, id)
	require.NoError(t, err)
	require.True(t, ok)
	return m
}

func requireTruncated(t *testing.T, err error) *fsm.Error {
	t.Helper()
	var fe *fsm.Error
	require.True(t, errors.As(err, &fe), "want a %s error, got %v", CodeHistoryTruncated, err)
	require.Equal(t, CodeHistoryTruncated, fe.Code, "%v", fe)
	return fe
}

// TestRetentionDropsOldOpsAndKeepsText edits one document many times with
// a small MaxBehind, some edits made against old revisions, and checks
// against a plain string model that the text stays exact while the log
// keeps only what edits and reads of the text still need.
func TestRetentionDropsOldOpsAndKeepsText(t *testing.T) {
	const maxBehind = 40
	dt := newDocTester(t, Config{MaxBehind: maxBehind, CacheDocs: 1})
	rng := rand.New(rand.NewPCG(11, 12))
	history := []string{""} // the model: the text at each revision
	lens := []int{0}
	seq := uint64(0)
	for i := range 3000 {
		rev := uint64(len(history) - 1)
		base := rev
		if rng.IntN(4) == 0 {
			// A client that saw an older revision, up to the limit.
			base = rev - uint64(rng.IntN(int(min(rev, maxBehind))+1))
		}
		seq++
		before, _, err := readMeta(dt.db, "d")
		require.NoError(t, err)
		res := dt.must("d", base, "c", seq, randomEdit(rng, lens[base]))
		require.Equal(t, rev+1, res.Rev)
		next, err := Apply(history[rev], res.Op)
		require.NoError(t, err)
		history = append(history, next)
		lens = append(lens, utf8.RuneCountInString(next))

		// Never past the target; towards it by pruneBatch or all the way.
		m := mustMeta(t, dt.db, "d")
		target := pruneTarget(m, maxBehind)
		require.LessOrEqual(t, m.pruned, target)
		require.GreaterOrEqual(t, m.pruned, min(target, before.pruned+pruneBatch), "op %d", i)

		if i%300 == 0 {
			// Another document evicts this one: the next edit rebuilds it
			// from the snapshot and the ops kept after it.
			dt.must(fmt.Sprintf("other%d", i), 0, "c", 1, `["x"]`)
			require.Equal(t, next, dt.text("d"))
		}
	}

	rev := uint64(len(history) - 1)
	require.Equal(t, history[rev], dt.text("d"))
	m := mustMeta(t, dt.db, "d")
	require.Greater(t, m.pruned, uint64(0))
	require.Less(t, rev-m.pruned, uint64(1000), "the log keeps a bounded tail")

	// The log and the (client, seq) records hold exactly pruned+1 to rev.
	revs := logRevs(t, dt.db, "d")
	require.Len(t, revs, int(rev-m.pruned))
	require.Equal(t, m.pruned+1, revs[0])
	require.Equal(t, rev, revs[len(revs)-1])
	require.ElementsMatch(t, revs, seenRevs(t, dt.db, "d"))

	// Ops below the floor are a clear error; from the floor on they are
	// all there and replay to the current text from the text there.
	_, _, err := Ops(dt.db, "d", m.pruned-1, 10)
	fe := requireTruncated(t, err)
	require.Contains(t, fe.Message, fmt.Sprintf("starts after revision %d", m.pruned))
	requireTruncated(t, CheckFrom(dt.db, "d", 0))
	require.NoError(t, CheckFrom(dt.db, "d", m.pruned))
	require.NoError(t, CheckFrom(dt.db, "missing", 0))
	entries, head, err := Ops(dt.db, "d", m.pruned, maxOpsInTest)
	require.NoError(t, err)
	require.Equal(t, rev, head)
	require.Len(t, entries, int(rev-m.pruned))
	replayed := history[m.pruned]
	for _, e := range entries {
		replayed, err = Apply(replayed, e.Op)
		require.NoError(t, err)
	}
	require.Equal(t, history[rev], replayed)

	// An edit MaxBehind behind is still transformed over the kept ops; one
	// further behind is rejected.
	dt.reject(fsm.CodeConflict, SubmitCommand{Doc: "d", Rev: rev - maxBehind - 1,
		Client: "late", Seq: 1, Edit: json.RawMessage(`["y"]`)})
	res := dt.must("d", rev-maxBehind, "late", 1, `{"splice": [0, 0, "y"]}`)
	want, err := Apply(history[rev], res.Op)
	require.NoError(t, err)
	require.Equal(t, want, dt.text("d"))

	// A resend of a kept op answers its first result; one of a pruned op
	// is too far behind to be applied again.
	m = mustMeta(t, dt.db, "d")
	first, _, err := Ops(dt.db, "d", m.pruned, 1)
	require.NoError(t, err)
	again := dt.must("d", first[0].Rev-1, "c", first[0].Seq, `["ignored"]`)
	require.Equal(t, first[0].Rev, again.Rev)
	dt.reject(fsm.CodeConflict, SubmitCommand{Doc: "d", Rev: 0, Client: "c", Seq: 1,
		Edit: json.RawMessage(`["twice"]`)})
}

// maxOpsInTest is a limit on Ops that no test reaches.
const maxOpsInTest = 1 << 20

// TestRetentionIsDeterministic runs one session of behind edits and
// resends with pruning through domains with different caches and
// batches, and through a snapshot and restore half-way: every run ends
// with byte-identical state and the same floors.
func TestRetentionIsDeterministic(t *testing.T) {
	cfg := func(c Config) Config { c.MaxBehind = 8; return c }
	run := func(dt *docTester, cmds []SubmitCommand, perBatch int) {
		for i := 0; i < len(cmds); i += perBatch {
			b := dt.db.NewBatch()
			for _, cmd := range cmds[i:min(i+perBatch, len(cmds))] {
				_, _ = dt.apply(b, cmd)
			}
			require.NoError(t, b.Commit(false))
			b.Close()
		}
	}

	// The session: edits of three documents against revisions up to a
	// little more than MaxBehind old, some resent, made and applied one
	// by one so that nearly all of them fit.
	first := newDocTester(t, cfg(Config{}))
	rng := rand.New(rand.NewPCG(21, 22))
	lens := map[string][]int{"a": {0}, "b": {0}, "c": {0}}
	seqs := map[string]uint64{}
	var cmds []SubmitCommand
	for range 4000 {
		doc := []string{"a", "b", "c"}[rng.IntN(3)]
		rev := len(lens[doc]) - 1
		base := rev - rng.IntN(min(rev, 10)+1)
		seq := seqs[doc] + 1
		if seq > 1 && rng.IntN(10) == 0 {
			seq -= 1 + uint64(rng.IntN(int(min(seq-1, 30)))) // a resend
		}
		cmd := SubmitCommand{Doc: doc, Rev: uint64(base), Client: "c", Seq: seq,
			Edit: json.RawMessage(randomEdit(rng, lens[doc][base]))}
		cmds = append(cmds, cmd)
		if _, err := first.submit(cmd); err == nil && seq > seqs[doc] {
			seqs[doc] = seq
			got, err := Get(first.db, doc)
			require.NoError(t, err)
			lens[doc] = append(lens[doc], utf8.RuneCountInString(got.Text))
		}
	}
	want := first.digest()
	for _, doc := range []string{"a", "b", "c"} {
		require.Greater(t, mustMeta(t, first.db, doc).pruned, uint64(0), "doc %s", doc)
	}

	for _, tc := range []struct {
		cfg      Config
		perBatch int
	}{
		{Config{}, 64},
		{Config{CacheDocs: 1}, 7},
	} {
		dt := newDocTester(t, cfg(tc.cfg))
		run(dt, cmds, tc.perBatch)
		require.Equal(t, want, dt.digest(), "%+v", tc)
	}

	// A node restored from a snapshot taken half-way goes on like the one
	// that applied everything.
	half := newDocTester(t, cfg(Config{}))
	run(half, cmds[:len(cmds)/2], 1)
	for _, doc := range []string{"a", "b", "c"} {
		require.Greater(t, mustMeta(t, half.db, doc).pruned, uint64(0), "doc %s", doc)
	}
	var buf bytes.Buffer
	snap := half.db.NewSnapshot()
	_, err := snap.WriteTo(&buf)
	require.NoError(t, err)
	require.NoError(t, snap.Close())
	restored := newDocTester(t, cfg(Config{}))
	require.NoError(t, restored.db.Restore(&buf))
	restored.d.Reset()
	restored.index = half.index
	for _, doc := range []string{"a", "b", "c"} {
		require.Equal(t, mustMeta(t, half.db, doc), mustMeta(t, restored.db, doc))
	}
	run(restored, cmds[len(cmds)/2:], 1)
	require.Equal(t, want, restored.digest())
}

// TestMetaEncodingKeepsTheOldFormUntilPruned checks both forms of meta.
func TestMetaEncodingKeepsTheOldFormUntilPruned(t *testing.T) {
	old := meta{rev: 300, length: 20, snapRev: 200, sinceSnap: 4000}
	raw := old.appendBinary(nil)
	require.Equal(t, byte(metaVersion), raw[0])
	got, err := decodeMeta(raw)
	require.NoError(t, err)
	require.Equal(t, old, got)

	pruned := old
	pruned.pruned = 150
	raw = pruned.appendBinary(nil)
	require.Equal(t, byte(metaVersionPruned), raw[0])
	got, err = decodeMeta(raw)
	require.NoError(t, err)
	require.Equal(t, pruned, got)
	for cut := range len(raw) {
		_, err := decodeMeta(raw[:cut])
		require.Error(t, err, "cut at %d", cut)
	}

	pruned.pruned = 201 // past the snapshot: the text could not be rebuilt
	_, err = decodeMeta(pruned.appendBinary(nil))
	require.ErrorIs(t, err, errCorrupt)
}
