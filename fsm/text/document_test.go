package text

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// docTester runs commands through a Domain into its own database, one
// command per batch unless batched.
type docTester struct {
	t     testing.TB
	db    *storage.StateDB
	d     *Domain
	index uint64
}

func newDocTester(t testing.TB, cfg Config) *docTester {
	t.Helper()
	db, err := storage.OpenState(t.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return &docTester{t: t, db: db, d: NewDomain(cfg)}
}

// leaderTime is the fixed clock of the tests' commands.
var leaderTime = time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)

// submit applies one command in its own batch and returns the domain's
// reply or its rejection.
func (dt *docTester) submit(cmd SubmitCommand) (SubmitResult, error) {
	dt.t.Helper()
	b := dt.db.NewBatch()
	defer b.Close()
	out, err := dt.apply(b, cmd)
	if err != nil {
		return SubmitResult{}, err
	}
	require.NoError(dt.t, b.Commit(false))
	return decodeResult(dt.t, out), nil
}

func (dt *docTester) apply(tx storage.ReadWriter, cmd SubmitCommand) (fsm.Output, error) {
	dt.index++
	return dt.d.Apply(tx, fsm.Request{Index: dt.index,
		Time: leaderTime.Add(time.Duration(dt.index) * time.Millisecond),
		Op:   OpSubmit, Payload: cmd.Command().Payload})
}

func decodeResult(t testing.TB, out fsm.Output) SubmitResult {
	var res SubmitResult
	require.NoError(t, json.Unmarshal(out.Value, &res))
	return res
}

// must applies cmd, which must be accepted.
func (dt *docTester) must(doc string, rev uint64, client string, seq uint64,
	edit string) SubmitResult {
	dt.t.Helper()
	res, err := dt.submit(SubmitCommand{Doc: doc, Rev: rev, Client: client, Seq: seq,
		Edit: json.RawMessage(edit)})
	require.NoError(dt.t, err, "submit %s", edit)
	return res
}

// reject applies cmd, which must be rejected with code, and checks that
// the state did not change.
func (dt *docTester) reject(code string, cmd SubmitCommand) *fsm.Error {
	dt.t.Helper()
	before := dt.digest()
	_, err := dt.submit(cmd)
	var fe *fsm.Error
	require.True(dt.t, errors.As(err, &fe), "want a %s rejection of %+v, got %v", code, cmd, err)
	require.Equal(dt.t, code, fe.Code, "%v", fe)
	require.Equal(dt.t, before, dt.digest(), "a rejected command changed the state")
	return fe
}

func (dt *docTester) text(doc string) string {
	dt.t.Helper()
	got, err := Get(dt.db, doc)
	require.NoError(dt.t, err)
	return got.Text
}

func (dt *docTester) digest() [32]byte {
	dt.t.Helper()
	sum, err := storage.Digest(dt.db)
	require.NoError(dt.t, err)
	return sum
}

// cachedText returns the text of the domain's cached rope of doc.
func (dt *docTester) cachedText(doc string) (string, bool) {
	c := dt.d.cache.get(doc)
	if c == nil {
		return "", false
	}
	return c.rope.String(), true
}

func TestSubmitCreatesAndEdits(t *testing.T) {
	dt := newDocTester(t, Config{})
	_, err := Get(dt.db, "notes")
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = Head(dt.db, "notes")
	require.ErrorIs(t, err, storage.ErrNotFound)

	res := dt.must("notes", 0, "c1", 1, `["hello"]`)
	require.Equal(t, uint64(1), res.Rev)
	require.Equal(t, `["hello"]`, res.Op.String())

	res = dt.must("notes", 1, "c1", 2, `{"splice": [5, 0, " world"]}`)
	require.Equal(t, uint64(2), res.Rev)
	require.Equal(t, `[5," world"]`, res.Op.String())
	require.Equal(t, "hello world", dt.text("notes"))

	got, err := Get(dt.db, "notes")
	require.NoError(t, err)
	require.Equal(t, Document{ID: "notes", Text: "hello world", Rev: 2}, got)

	entries, rev, err := Ops(dt.db, "notes", 0, 10)
	require.NoError(t, err)
	require.Equal(t, uint64(2), rev)
	require.Len(t, entries, 2)
	require.Equal(t, uint64(1), entries[0].Rev)
	require.Equal(t, "c1", entries[1].Client)
	require.Equal(t, uint64(2), entries[1].Seq)
	require.Equal(t, leaderTime.Add(2*time.Millisecond), entries[1].Time)
	require.Equal(t, uint64(2), entries[1].Index)

	entries, _, err = Ops(dt.db, "notes", 1, 10)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	entries, _, err = Ops(dt.db, "notes", 2, 10)
	require.NoError(t, err)
	require.Empty(t, entries)
	entries, _, err = Ops(dt.db, "notes", 0, 1)
	require.NoError(t, err)
	require.Len(t, entries, 1)

	// Another document is independent, even with a prefix of this id.
	dt.must("note", 0, "c1", 1, `["x"]`)
	require.Equal(t, "x", dt.text("note"))
	require.Equal(t, "hello world", dt.text("notes"))
}

func TestSubmitEvents(t *testing.T) {
	dt := newDocTester(t, Config{})
	b := dt.db.NewBatch()
	defer b.Close()
	out, err := dt.apply(b, SubmitCommand{Doc: "d", Rev: 0, Client: "c1", Seq: 1,
		Edit: json.RawMessage(`["a\n<b>"]`)})
	require.NoError(t, err)
	require.Len(t, out.Events, 1)
	ev := out.Events[0]
	require.Equal(t, fsm.DomainText, ev.Domain)
	require.Equal(t, "d", ev.Key)
	require.Equal(t, uint64(1), ev.Revision)
	var data struct {
		Rev    uint64 `json:"rev"`
		Op     Op     `json:"op"`
		Client string `json:"client"`
	}
	require.NoError(t, json.Unmarshal(ev.Data, &data))
	require.Equal(t, uint64(1), data.Rev)
	require.Equal(t, "c1", data.Client)
	require.Equal(t, `["a\n<b>"]`, data.Op.String())
	require.NotContains(t, string(ev.Data), "\n", "event data must be one line for SSE")
}

func TestSubmitTransformsConcurrentOps(t *testing.T) {
	dt := newDocTester(t, Config{})
	dt.must("d", 0, "a", 1, `["ab"]`)

	// Both clients insert at 1 against revision 1: the later one, in log
	// order, is transformed and goes to the left of the earlier insert.
	dt.must("d", 1, "a", 2, `[1, "X", 1]`)
	res := dt.must("d", 1, "b", 1, `[1, "Y", 1]`)
	require.Equal(t, `[1,"Y",2]`, res.Op.String())
	require.Equal(t, "aYXb", dt.text("d"))

	// A splice is relative to the document at its revision too: at
	// revision 1 ("ab") delete the "b".
	res = dt.must("d", 1, "c", 1, `{"splice": [1, 1, ""]}`)
	require.Equal(t, `[3,-1]`, res.Op.String())
	require.Equal(t, "aYX", dt.text("d"))

	// Overlapping deletes: against revision 4 ("aYX"), one client deletes
	// "YX" and another, unaware, deletes "aY" and types "z".
	dt.must("d", 4, "a", 3, `[1, -2]`)
	res = dt.must("d", 4, "b", 2, `[-2, "z", 1]`)
	require.Equal(t, `["z",-1]`, res.Op.String())
	require.Equal(t, "z", dt.text("d"))

	// Against revision 0, the empty document: an insert lands at the
	// start, before everything typed since.
	res = dt.must("d", 0, "late", 1, `["0"]`)
	require.Equal(t, `["0",1]`, res.Op.String())
	require.Equal(t, "0z", dt.text("d"))
	require.Equal(t, uint64(7), res.Rev)
}

func TestSubmitRepeatedSeqAppliesOnce(t *testing.T) {
	dt := newDocTester(t, Config{})
	first := dt.must("d", 0, "c1", 1, `["hi"]`)
	dt.must("d", 1, "c2", 1, `[2, "!"]`)
	before := dt.digest()

	// The same (client, seq), even with another op or revision, answers
	// the first result and writes nothing.
	for _, edit := range []string{`["hi"]`, `["other"]`, `{"splice": [0, 0, "x"]}`} {
		again := dt.must("d", 0, "c1", 1, edit)
		require.Equal(t, first.Rev, again.Rev)
		require.True(t, first.Op.Equal(again.Op), "%v vs %v", first.Op, again.Op)
	}
	b := dt.db.NewBatch()
	out, err := dt.apply(b, SubmitCommand{Doc: "d", Rev: 2, Client: "c1", Seq: 1,
		Edit: json.RawMessage(`[3]`)})
	require.NoError(t, err)
	require.Empty(t, out.Events, "a repeated submit publishes nothing")
	require.NoError(t, b.Commit(false))
	b.Close()
	require.Equal(t, before, dt.digest())
	require.Equal(t, "hi!", dt.text("d"))

	// The same seq from another client, or on another document, is new.
	dt.must("d", 2, "c3", 1, `[3, "?"]`)
	dt.must("e", 0, "c1", 1, `["e"]`)
	require.Equal(t, "hi!?", dt.text("d"))
}

func TestSubmitRejections(t *testing.T) {
	dt := newDocTester(t, Config{})
	dt.must("d", 0, "c1", 1, `["hello"]`)

	cmd := func(rev uint64, edit string) SubmitCommand {
		return SubmitCommand{Doc: "d", Rev: rev, Client: "c2", Seq: 9,
			Edit: json.RawMessage(edit)}
	}

	fe := dt.reject(fsm.CodeConflict, cmd(2, `[5, "!"]`))
	require.Contains(t, fe.Message, "revision 2 is ahead")

	fe = dt.reject(fsm.CodeInvalid, cmd(1, `[4, "!"]`))
	require.Contains(t, fe.Message, "expects a document of 4 code points")
	require.Contains(t, fe.Message, "has 5 code points")
	fe = dt.reject(fsm.CodeInvalid, cmd(1, `{"splice": [6, 0, "!"]}`))
	require.Contains(t, fe.Message, "past the end")
	fe = dt.reject(fsm.CodeInvalid, cmd(0, `[1, "!"]`))
	require.Contains(t, fe.Message, "has 0 code points")

	// A new document starts at revision 0.
	dt.reject(fsm.CodeConflict, SubmitCommand{Doc: "new", Rev: 1, Client: "c", Seq: 1,
		Edit: json.RawMessage(`["x"]`)})
	_, err := Get(dt.db, "new")
	require.ErrorIs(t, err, storage.ErrNotFound)

	for i, tc := range []struct {
		cmd  SubmitCommand
		code string
		want string
	}{
		{SubmitCommand{Doc: "", Client: "c", Seq: 1, Edit: json.RawMessage(`[5]`)},
			fsm.CodeInvalid, "document id is empty"},
		{SubmitCommand{Doc: "a/b", Client: "c", Seq: 1, Edit: json.RawMessage(`[5]`)},
			fsm.CodeInvalid, "'/'"},
		{SubmitCommand{Doc: strings.Repeat("x", 257), Client: "c", Seq: 1,
			Edit: json.RawMessage(`[5]`)}, fsm.CodeInvalid, "at most 256"},
		{SubmitCommand{Doc: "a\x00", Client: "c", Seq: 1, Edit: json.RawMessage(`[5]`)},
			fsm.CodeInvalid, "control character"},
		{SubmitCommand{Doc: "d", Client: "", Seq: 1, Edit: json.RawMessage(`[5]`)},
			fsm.CodeInvalid, "client id is empty"},
		{SubmitCommand{Doc: "d", Client: strings.Repeat("c", 129), Seq: 1,
			Edit: json.RawMessage(`[5]`)}, fsm.CodeInvalid, "at most 128"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 0, Edit: json.RawMessage(`[5]`)},
			fsm.CodeInvalid, "seq"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1}, fsm.CodeInvalid, "required"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1, Edit: json.RawMessage(`null`)},
			fsm.CodeInvalid, "required"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1, Edit: json.RawMessage(`[5, 0]`)},
			fsm.CodeInvalid, "not a length"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1, Edit: json.RawMessage(`[5, 1.5]`)},
			fsm.CodeInvalid, "whole number"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1, Edit: json.RawMessage(`"x"`)},
			fsm.CodeInvalid, "an edit must be"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1,
			Edit: json.RawMessage(`[5, "\ud800"]`)}, fsm.CodeInvalid, "surrogate"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1,
			Edit: json.RawMessage(`{"splice": [-1, 0, "x"]}`)}, fsm.CodeInvalid, "negative"},
		{SubmitCommand{Doc: "d", Client: "c", Seq: 1,
			Edit: json.RawMessage(`["` + strings.Repeat("x", MaxEditBytes) + `"]`)},
			fsm.CodeTooLarge, "at most"},
	} {
		fe := dt.reject(tc.code, tc.cmd)
		require.Contains(t, fe.Message, tc.want, "#%d", i)
	}
	require.Equal(t, "hello", dt.text("d"))

	// JSON encoding would turn these into U+FFFD; the validators see them
	// raw.
	require.ErrorContains(t, ValidDocID("a\xff"), "UTF-8")
	require.ErrorContains(t, ValidClientID("c\xff"), "UTF-8")
	require.NoError(t, ValidDocID("Ünïcödé 漢字 👋"))
}

func TestSubmitInvalidUTF8Payload(t *testing.T) {
	dt := newDocTester(t, Config{})
	before := dt.digest()
	b := dt.db.NewBatch()
	defer b.Close()
	for _, payload := range []string{
		`{"doc":"d","rev":0,"client":"c","seq":1,"op":["` + "\xff\xfe" + `"]}`,
		`{"doc":"d","rev":0,"client":"c","seq":1,"op":{"splice":[0,0,"` + "\xc3" + `"]}}`,
		`{"doc":"d","rev":0,"client":"c","seq":1,"op":["x"`,
	} {
		_, err := dt.d.Apply(b, fsm.Request{Index: 1, Op: OpSubmit, Payload: []byte(payload)})
		var fe *fsm.Error
		require.True(t, errors.As(err, &fe), "%q: %v", payload, err)
		require.Equal(t, fsm.CodeInvalid, fe.Code)
	}
	_, err := dt.d.Apply(b, fsm.Request{Index: 1, Op: 99, Payload: []byte(`{}`)})
	require.Error(t, err)
	require.NoError(t, b.Commit(false))
	require.Equal(t, before, dt.digest())
}

func TestSubmitTooFarBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("writes MaxBehind ops")
	}
	dt := newDocTester(t, Config{})
	dt.must("d", 0, "c", 1, `["."]`)

	// MaxBehind more ops, many to a batch.
	rev := uint64(1)
	for rev < MaxBehind+1 {
		b := dt.db.NewBatch()
		for i := 0; i < 1000 && rev < MaxBehind+1; i++ {
			_, err := dt.apply(b, SubmitCommand{Doc: "d", Rev: rev, Client: "c",
				Seq: rev + 1, Edit: json.RawMessage(`{"splice": [0, 1, "x"]}`)})
			require.NoError(t, err)
			rev++
		}
		require.NoError(t, b.Commit(false))
		b.Close()
	}

	fe := dt.reject(fsm.CodeConflict, SubmitCommand{Doc: "d", Rev: 0, Client: "late", Seq: 1,
		Edit: json.RawMessage(`["y"]`)})
	require.Contains(t, fe.Message, "too far behind")
	res := dt.must("d", 1, "late", 1, `{"splice": [1, 0, "y"]}`)
	require.Equal(t, `[1,"y"]`, res.Op.String())
	require.Equal(t, "xy", dt.text("d"))
}

func TestSubmitUnicode(t *testing.T) {
	dt := newDocTester(t, Config{})
	family := "👨‍👩‍👧" // 5 code points
	flag := "🇫🇷"      // 2 code points
	combining := "e\u0301"
	cjk := "漢字かな"
	dt.must("u", 0, "c", 1, `["`+family+flag+`"]`)
	require.Equal(t, 7, utf8.RuneCountInString(dt.text("u")))

	// Insert between the flag's two regional indicators, then after the
	// family: positions count code points.
	dt.must("u", 1, "c", 2, `{"splice": [6, 0, "`+combining+`"]}`)
	dt.must("u", 2, "c", 3, `[5, "`+cjk+`", 4]`)
	want := family + cjk + "🇫" + combining + "🇷"
	require.Equal(t, want, dt.text("u"))

	// Delete the combining mark alone, leaving its base letter, and one
	// CJK character; a concurrent edit against revision 3 inserts after
	// the family.
	dt.must("u", 3, "c", 4, `{"splice": [11, 1, ""]}`)
	dt.must("u", 3, "d", 1, `[5, -1, 7]`)
	dt.must("u", 3, "e", 1, `{"splice": [5, 0, "→"]}`)
	want = family + "→" + "字かな" + "🇫e🇷"
	require.Equal(t, want, dt.text("u"))
	require.True(t, utf8.ValidString(dt.text("u")))

	// Escaped surrogate pairs are the same code points as raw UTF-8.
	dt.must("u", 6, "c", 5, `[`+fmt.Sprint(utf8.RuneCountInString(want))+`, "\ud83d\ude00"]`)
	require.True(t, strings.HasSuffix(dt.text("u"), "😀"))
	text, _ := dt.cachedText("u")
	require.Equal(t, dt.text("u"), text)
}

// randomEdit returns a random edit, as an op or a splice, of a document of
// docLen code points, with some non-ASCII text.
func randomEdit(rng *rand.Rand, docLen int) string {
	words := []string{"a", "bc", "é", "e\u0301", "漢", "👨‍👩‍👧", "\n", "\"q\"", " "}
	word := words[rng.IntN(len(words))]
	pos := rng.IntN(docLen + 1)
	del := 0
	if docLen-pos > 0 && rng.IntN(3) == 0 {
		del = rng.IntN(min(docLen-pos, 5) + 1)
	}
	if rng.IntN(2) == 0 {
		ins, _ := json.Marshal(word)
		return fmt.Sprintf(`{"splice": [%d, %d, %s]}`, pos, del, ins)
	}
	op, err := FromSplice(pos, del, word, docLen)
	if err != nil {
		panic(err)
	}
	return op.String()
}

// randomSession returns a random editing session: commands made against
// recent revisions of a few documents, with some resends.
func randomSession(seed uint64, steps int) []SubmitCommand {
	rng := rand.New(rand.NewPCG(seed, 1))
	docs := []string{"a", "b", "c"}
	texts := map[string][]string{} // per document, text at each revision
	seqs := map[string]uint64{}
	var cmds []SubmitCommand
	for range steps {
		doc := docs[rng.IntN(len(docs))]
		history := texts[doc]
		if len(history) == 0 {
			history = []string{""}
		}
		// A client saw a recent revision, not always the latest.
		rev := len(history) - 1 - rng.IntN(min(len(history), 4))
		client := fmt.Sprintf("c%d", rng.IntN(3))
		seqs[client]++
		if rng.IntN(10) == 0 && seqs[client] > 1 {
			seqs[client]-- // a resend
		}
		base := history[rev]
		edit := randomEdit(rng, utf8.RuneCountInString(base))
		cmds = append(cmds, SubmitCommand{Doc: doc, Rev: uint64(rev), Client: client,
			Seq: seqs[client], Edit: json.RawMessage(edit)})

		// The script tracks revisions only roughly (it does not transform),
		// which is enough: what matters is that every run agrees.
		texts[doc] = append(history, base)
	}
	return cmds
}

func TestApplyIsDeterministic(t *testing.T) {
	cmds := randomSession(7, 3000)
	run := func(cfg Config, perBatch int) ([32]byte, *docTester) {
		dt := newDocTester(t, cfg)
		for i := 0; i < len(cmds); i += perBatch {
			b := dt.db.NewBatch()
			for _, cmd := range cmds[i:min(i+perBatch, len(cmds))] {
				_, _ = dt.apply(b, cmd)
			}
			require.NoError(t, b.Commit(false))
			b.Close()
		}
		return dt.digest(), dt
	}

	want, first := run(Config{}, 1)
	for _, tc := range []struct {
		cfg      Config
		perBatch int
	}{
		{Config{}, 1},
		{Config{}, 64},
		{Config{CacheDocs: 1}, 7}, // every document switch rebuilds
		{Config{CacheDocs: 3, CacheLen: 10}, 1},
	} {
		got, _ := run(tc.cfg, tc.perBatch)
		require.Equal(t, want, got, "%+v", tc)
	}

	// The text rebuilt from storage equals the rope the domain kept.
	for _, doc := range []string{"a", "b", "c"} {
		cached, ok := first.cachedText(doc)
		require.True(t, ok)
		require.Equal(t, cached, first.text(doc))
	}
}

func TestSnapshotsAndMaterialize(t *testing.T) {
	dt := newDocTester(t, Config{CacheDocs: 1})
	rng := rand.New(rand.NewPCG(3, 4))
	want := ""
	snapshots := 0
	for i := range 6000 {
		doc := "big"
		rev := uint64(i)
		edit := randomEdit(rng, utf8.RuneCountInString(want))
		if i%2 == 0 {
			// Some long inserts, so the document outgrows the log.
			edit = fmt.Sprintf(`{"splice": [%d, 0, %q]}`, utf8.RuneCountInString(want)/2,
				strings.Repeat("text ", rng.IntN(20)))
		}
		res := dt.must(doc, rev, "c", uint64(i+1), edit)
		var err error
		want, err = Apply(want, res.Op)
		require.NoError(t, err)

		m, _, err := readMeta(dt.db, doc)
		require.NoError(t, err)
		if m.snapRev == m.rev {
			snapshots++
		}
		if i%500 == 0 {
			// Another document evicts this one from the cache, so the
			// next edit rebuilds it from storage.
			dt.must(fmt.Sprintf("other%d", i), 0, "c", 1, `["x"]`)
			require.Equal(t, want, dt.text(doc))
		}
	}
	require.Equal(t, want, dt.text("big"))
	cached, ok := dt.cachedText("big")
	require.True(t, ok)
	require.Equal(t, want, cached)
	require.Greater(t, snapshots, 1)
	t.Logf("%d snapshots over 6000 ops, final length %d", snapshots,
		utf8.RuneCountInString(want))
}

func TestResetDropsCache(t *testing.T) {
	dt := newDocTester(t, Config{})
	dt.must("d", 0, "c", 1, `["abc"]`)
	_, ok := dt.cachedText("d")
	require.True(t, ok)

	// A restore replaced the state behind the domain's back.
	dt.d.Reset()
	_, ok = dt.cachedText("d")
	require.False(t, ok)
	dt.must("d", 1, "c", 2, `[3, "d"]`)
	require.Equal(t, "abcd", dt.text("d"))

	// A cached rope at a revision storage does not have is not used.
	dt.d.cache.get("d").rev = 99
	dt.must("d", 2, "c", 3, `[4, "e"]`)
	require.Equal(t, "abcde", dt.text("d"))
}

func TestLogEntryEncoding(t *testing.T) {
	op, err := ParseOp([]byte(`[3, "héllo 👋", -2, 1000000]`))
	require.NoError(t, err)
	e := LogEntry{Rev: 9, Op: op, Client: "client-é", Seq: 1 << 40, Time: leaderTime,
		Index: 12345}
	got, err := decodeEntry(9, e.appendBinary(nil))
	require.NoError(t, err)
	require.True(t, got.Op.Equal(op))
	got.Op = op
	require.Equal(t, e, got)

	raw := e.appendBinary(nil)
	for cut := range len(raw) {
		_, err := decodeEntry(9, raw[:cut])
		require.Error(t, err, "cut at %d", cut)
	}
}

// trace is an editing trace of ../shared/data.
type trace struct {
	EndContent string `json:"endContent"`
	Txns       []struct {
		Patches [][3]json.RawMessage `json:"patches"`
	} `json:"txns"`
}

func loadTrace(t testing.TB, name string) trace {
	t.Helper()
	f, err := os.Open("../../../shared/data/" + name)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is not beside the project", name)
	}
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	var tr trace
	require.NoError(t, json.Unmarshal(raw, &tr))
	return tr
}

// TestRealTraceThroughApply replays seph-blog1, every patch a splice
// submitted at the current revision, and checks the text rebuilt from
// storage against the trace's end.
func TestRealTraceThroughApply(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("replays a real trace, single-threaded: skipped with -short and -race")
	}
	tr := loadTrace(t, "seph-blog1.json.gz")
	dt := newDocTester(t, Config{})
	rev := uint64(0)
	b := dt.db.NewBatch()
	for _, txn := range tr.Txns {
		for _, p := range txn.Patches {
			edit := fmt.Sprintf(`{"splice": [%s, %s, %s]}`, p[0], p[1], p[2])
			_, err := dt.apply(b, SubmitCommand{Doc: "blog", Rev: rev, Client: "seph",
				Seq: rev + 1, Edit: json.RawMessage(edit)})
			require.NoError(t, err, "rev %d", rev)
			rev++
			if rev%1000 == 0 {
				require.NoError(t, b.Commit(false))
				b.Close()
				b = dt.db.NewBatch()
			}
		}
	}
	require.NoError(t, b.Commit(false))
	b.Close()
	require.Equal(t, tr.EndContent, dt.text("blog"))
	cached, _ := dt.cachedText("blog")
	require.Equal(t, tr.EndContent, cached)
}
