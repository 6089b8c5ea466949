package text

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// mustOp builds an op from the wire form's parts: a positive int retains, a
// negative int deletes, a string inserts; a zero is left out.
func mustOp(tb testing.TB, parts ...any) Op {
	tb.Helper()

	comps := make([]Component, 0, len(parts))
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			if p < 0 {
				comps = append(comps, Component{Delete: -p})
			} else if p > 0 {
				comps = append(comps, Component{Retain: p})
			}
		case string:
			comps = append(comps, Component{Insert: p})
		default:
			tb.Fatalf("mustOp: part %v of type %T", p, p)
		}
	}

	op, err := NewOp(comps...)
	if err != nil {
		tb.Fatalf("NewOp(%v): %v", comps, err)
	}
	return op
}

// fataler is what the checks below need of a *testing.T or *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// checkNormalized fails unless op is in normal form and its cached lengths
// are right.
func checkNormalized(t fataler, op Op) {
	t.Helper()

	base, target := 0, 0
	prev := kindNone
	for i, c := range op.comps {
		if err := checkComponent(c); err != nil {
			t.Fatalf("op %v: component %d: %v", op, i, err)
		}

		k := c.kind()
		if k == prev {
			t.Fatalf("op %v: components %d and %d are both of kind %d", op, i-1, i, k)
		}
		if prev == kindDelete && k == kindInsert {
			t.Fatalf("op %v: delete before insert at component %d", op, i)
		}
		prev = k

		switch k {
		case kindRetain:
			base += c.Retain
			target += c.Retain
		case kindDelete:
			base += c.Delete
		case kindInsert:
			target += utf8.RuneCountInString(c.Insert)
		}
	}

	if base != op.BaseLen() || target != op.TargetLen() {
		t.Fatalf("op %v: lengths %d -> %d, cached %d -> %d",
			op, base, target, op.BaseLen(), op.TargetLen())
	}
}

// checkErr fails unless err wraps want and mentions every one of the
// substrings, or unless err is nil when want is nil.
func checkErr(t *testing.T, err, want error, substrings ...string) {
	t.Helper()

	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want one wrapping %v", err, want)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func TestParseOp(t *testing.T) {
	tests := []struct {
		in     string
		want   string // normalized wire form
		base   int
		target int
	}{
		{`[5, "hi", -2, 10]`, `[5,"hi",-2,10]`, 17, 17},
		{`[]`, `[]`, 0, 0},
		{" \n[ 1 ,\t2 ]\r\n", `[3]`, 3, 3},
		{`[-1, "x"]`, `["x",-1]`, 1, 1},
		{`["a", "b", -1, "c", -2]`, `["abc",-3]`, 3, 3},
		{`[1, -1, 1]`, `[1,-1,1]`, 3, 2},
		{`["😀", 1]`, `["😀",1]`, 1, 2},
		{`["\ud83d\ude00"]`, `["😀"]`, 0, 1},
		{`["e\u0301"]`, "[\"e\u0301\"]", 0, 2},
		{`["中文", 3]`, `["中文",3]`, 3, 5},
		{"[\"👨\u200d👩\u200d👧\"]", "[\"👨\u200d👩\u200d👧\"]", 0, 5},
		{`["<p>&amp;</p>\n\"\\"]`, `["<p>&amp;</p>\n\"\\"]`, 0, 15},
		{`["\u0000\u001f\u2028"]`, `["\u0000\u001f\u2028"]`, 0, 3},
		{`[2147483647]`, `[2147483647]`, 2147483647, 2147483647},
		{`[-2147483647]`, `[-2147483647]`, 2147483647, 0},
	}
	for i, tt := range tests {
		op, err := ParseOp([]byte(tt.in))
		if err != nil {
			t.Fatalf("#%d: ParseOp(%s): %v", i, tt.in, err)
		}
		checkNormalized(t, op)

		got, err := op.MarshalJSON()
		if err != nil {
			t.Fatalf("#%d: MarshalJSON: %v", i, err)
		}
		if string(got) != tt.want || op.BaseLen() != tt.base || op.TargetLen() != tt.target {
			t.Errorf("#%d: ParseOp(%s) = %s, %d -> %d; want %s, %d -> %d",
				i, tt.in, got, op.BaseLen(), op.TargetLen(), tt.want, tt.base, tt.target)
		}
	}
}

func TestParseOpRejects(t *testing.T) {
	tests := []struct {
		in      string
		mention string
	}{
		{``, "got nothing"},
		{`null`, "got null"},
		{`{"a": 1}`, "got an object"},
		{`"abc"`, "got a string"},
		{`5`, "got a number"},
		{`true`, "got a boolean"},
		{`x`, "not JSON"},
		{`[0]`, "component 0: 0 is not a length"},
		{`[1, -0]`, "component 1: 0 is not a length"},
		{`[1.5]`, "1.5 is not a whole number"},
		{`[1.0]`, "1.0 is not a whole number"},
		{`[1e3]`, "1e3 is not a whole number"},
		{`[2147483648]`, "exceeds the limit of 2147483647"},
		{`[-2147483648]`, "exceeds the limit"},
		{`[99999999999999999999999999999999]`, "999999999999999999999999... exceeds"},
		{`[2147483647, 1]`, "spans more than 2147483647"},
		{`["a", ""]`, `component 1: empty insert`},
		{"[\"\xff\"]", "not valid UTF-8 (bad byte 0xff at offset 2)"},
		{"[3, \"caf\xc3\"]", "not valid UTF-8"},
		{"[\"\xed\xa0\x80\"]", "not valid UTF-8"}, // a surrogate encoded in UTF-8
		{`["\ud800"]`, `lone high surrogate \ud800`},
		{`["\ud800x"]`, `lone high surrogate`},
		{`["\ud800\u0041"]`, `lone high surrogate`},
		{`["\udc00"]`, `lone low surrogate \udc00`},
		{`["\ude00\ud83d"]`, `lone low surrogate`},
		{`[true]`, "component 0: got a boolean, want a positive integer"},
		{`[1, null]`, "component 1: got null"},
		{`[[1]]`, "got an array"},
		{`[{}]`, "got an object"},
		{`[1,]`, "malformed JSON"},
		{`[1`, "malformed JSON"},
		{`[1] [2]`, "malformed JSON"},
	}
	for i, tt := range tests {
		_, err := ParseOp([]byte(tt.in))
		if err == nil {
			t.Errorf("#%d: ParseOp(%q) succeeded", i, tt.in)
			continue
		}
		if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("#%d: ParseOp(%q) = %v, want ErrInvalidOp mentioning %q",
				i, tt.in, err, tt.mention)
		}
	}
}

func TestParseOpEscapedBackslashIsNotAnEscape(t *testing.T) {
	// `\\ud800` is a backslash followed by the letters "ud800", no surrogate.
	op, err := ParseOp([]byte(`["\\ud800"]`))
	if err != nil {
		t.Fatal(err)
	}
	if got := op.Components()[0].Insert; got != `\ud800` {
		t.Fatalf("insert %q", got)
	}
}

func TestParseEdit(t *testing.T) {
	tests := []struct {
		in       string
		docLen   int
		want     string // the op, in wire form
		isSplice bool
	}{
		{`[5, "hi", -2, 10]`, 17, `[5,"hi",-2,10]`, false},
		{`{"splice": [5, 2, "hi"]}`, 17, `[5,"hi",-2,10]`, true},
		{` {"splice":[0,0,""]} `, 0, `[]`, true},
		{`{"splice": [0, 0, ""]}`, 4, `[4]`, true},
		{`{"splice": [2, 0, "😀"]}`, 2, `[2,"😀"]`, true},
		{`{"splice": [0, 2, "\ud83d\ude00"]}`, 3, `["😀",-2,1]`, true},
		{`{"splice": [1, 1, ""]}`, 2, `[1,-1]`, true},
	}
	for i, tt := range tests {
		edit, err := ParseEdit([]byte(tt.in))
		if err != nil {
			t.Fatalf("#%d: ParseEdit(%s): %v", i, tt.in, err)
		}
		if _, ok := edit.Splice(); ok != tt.isSplice {
			t.Errorf("#%d: Splice() ok = %v", i, ok)
		}

		op, err := edit.Op(tt.docLen)
		if err != nil {
			t.Fatalf("#%d: Op(%d): %v", i, tt.docLen, err)
		}
		checkNormalized(t, op)
		if op.String() != tt.want {
			t.Errorf("#%d: ParseEdit(%s).Op(%d) = %v, want %s", i, tt.in, tt.docLen, op, tt.want)
		}
	}
}

func TestParseEditRejects(t *testing.T) {
	tests := []struct {
		in      string
		mention string
	}{
		{`null`, "an edit must be an op such as"},
		{`"x"`, "got a string"},
		{`[0]`, "0 is not a length"},
		{`{}`, `want {"splice": [position, deleted, "inserted"]}, got fields []`},
		{`{"splice": [0, 0, ""], "extra": 1}`, `got fields ["extra", "splice"]`},
		{`{"Splice": [0, 0, ""]}`, `got fields ["Splice"]`},
		{`{"splice": null}`, "got null as the splice"},
		{`{"splice": "x"}`, "got a string as the splice"},
		{`{"splice": [1, 2]}`, "got 2 elements"},
		{`{"splice": [1, 2, "x", 4]}`, "got 4 elements"},
		{`{"splice": [-1, 0, ""]}`, "splice position: -1 is negative"},
		{`{"splice": [0, -3, ""]}`, "splice deleted count: -3 is negative"},
		{`{"splice": [1.5, 0, ""]}`, "splice position: 1.5 is not a whole number"},
		{`{"splice": [0, 1e2, ""]}`, "splice deleted count: 1e2 is not a whole number"},
		{`{"splice": [2147483648, 0, ""]}`, "exceeds the limit"},
		{`{"splice": ["0", 0, ""]}`, "splice position: got a string, want a whole number"},
		{`{"splice": [0, 0, 5]}`, "splice text: got a number, want a string"},
		{`{"splice": [0, 0, null]}`, "splice text: got null"},
		{`{"splice": [0, 0, "\udfff"]}`, "splice text: string escapes a lone low surrogate"},
		{"{\"splice\": [0, 0, \"\xc0\xaf\"]}", "not valid UTF-8"},
		{`{"splice": [0, 0, ""]`, "malformed JSON"},
	}
	for i, tt := range tests {
		_, err := ParseEdit([]byte(tt.in))
		if err == nil {
			t.Errorf("#%d: ParseEdit(%q) succeeded", i, tt.in)
			continue
		}
		if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("#%d: ParseEdit(%q) = %v, want ErrInvalidOp mentioning %q",
				i, tt.in, err, tt.mention)
		}
	}
}

func TestEditOpLengthMismatch(t *testing.T) {
	edit, err := ParseEdit([]byte(`[5, "hi", -2, 10]`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = edit.Op(10)
	checkErr(t, err, ErrLengthMismatch, "op expects a document of 17 code points, document has 10")

	edit, err = ParseEdit([]byte(`{"splice": [8, 4, ""]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = edit.Op(10)
	checkErr(t, err, ErrLengthMismatch, "deletes code points 8 to 12, but the document has 10")
}

func TestEditUnmarshalJSON(t *testing.T) {
	var msg struct {
		Edit Edit `json:"edit"`
		Op   Op   `json:"op"`
	}
	in := `{"edit": {"splice": [1, 0, "é"]}, "op": [1, "é"]}`
	if err := json.Unmarshal([]byte(in), &msg); err != nil {
		t.Fatal(err)
	}

	op, err := msg.Edit.Op(1)
	if err != nil {
		t.Fatal(err)
	}
	if !op.Equal(msg.Op) {
		t.Fatalf("edit %v, op %v", op, msg.Op)
	}

	// encoding/json hands UnmarshalJSON the raw bytes, so bad UTF-8 inside
	// a larger message is still caught.
	err = json.Unmarshal([]byte("{\"op\": [\"\xff\"]}"), &msg)
	checkErr(t, err, ErrInvalidOp, "not valid UTF-8")
}

func TestFromSplice(t *testing.T) {
	tests := []struct {
		pos, deleted int
		inserted     string
		docLen       int
		want         string
		wantErr      error
		mention      string
	}{
		{3, 2, "x", 10, `[3,"x",-2,5]`, nil, ""},
		{10, 0, "!", 10, `[10,"!"]`, nil, ""},
		{0, 10, "", 10, `[-10]`, nil, ""},
		{0, 0, "", 0, `[]`, nil, ""},
		{0, 0, "中文", 0, `["中文"]`, nil, ""},
		{11, 0, "", 10, "", ErrLengthMismatch,
			"splice at position 11 is past the end of the document, which has 10 code points"},
		{8, 4, "", 10, "", ErrLengthMismatch, "deletes code points 8 to 12"},
		{-1, 0, "", 10, "", ErrInvalidOp, "got -1, 0 and 10"},
		{0, -1, "", 10, "", ErrInvalidOp, "must not be negative"},
		{0, 0, "", -1, "", ErrInvalidOp, "must not be negative"},
		{0, 0, "\xff", 1, "", ErrInvalidOp, "not valid UTF-8"},
		{1 << 40, 0, "", 1 << 41, "", ErrInvalidOp, "limit"},
		{0, 0, "x", maxLen, "", ErrInvalidOp, "spans more than"},
	}
	for i, tt := range tests {
		op, err := FromSplice(tt.pos, tt.deleted, tt.inserted, tt.docLen)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("#%d: error %v, want %v mentioning %q", i, err, tt.wantErr, tt.mention)
			}
			continue
		}
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		checkNormalized(t, op)
		if op.String() != tt.want {
			t.Errorf("#%d: FromSplice = %v, want %s", i, op, tt.want)
		}
	}
}

func TestNewOp(t *testing.T) {
	op, err := NewOp(Component{Retain: 1}, Component{Retain: 2}, Component{Delete: 1},
		Component{Insert: "a"}, Component{Insert: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if op.String() != `[3,"ab",-1]` {
		t.Fatalf("NewOp = %v", op)
	}

	bad := []struct {
		c       Component
		mention string
	}{
		{Component{}, "empty component"},
		{Component{Retain: 1, Insert: "x"}, "more than one"},
		{Component{Retain: 1, Delete: 1}, "more than one"},
		{Component{Delete: -1}, "negative"},
		{Component{Retain: maxLen + 1}, "limit"},
		{Component{Insert: "a\xffb"}, "not valid UTF-8"},
	}
	for _, tt := range bad {
		_, err := NewOp(Component{Retain: 1}, tt.c)
		checkErr(t, err, ErrInvalidOp, "component 1", tt.mention)
	}
}

func TestOpAccessors(t *testing.T) {
	var zero Op
	if !zero.IsNoop() || zero.BaseLen() != 0 || zero.String() != "[]" {
		t.Fatalf("zero op %v", zero)
	}
	if !mustOp(t, 7).IsNoop() || mustOp(t, 7, "x").IsNoop() || mustOp(t, -1).IsNoop() {
		t.Fatal("IsNoop")
	}

	op := mustOp(t, 2, "ab")
	comps := op.Components()
	comps[0].Retain = 99
	if op.String() != `[2,"ab"]` {
		t.Fatalf("Components aliases the op: %v", op)
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		doc  string
		op   []any
		want string
	}{
		{"", []any{}, ""},
		{"", []any{"hi"}, "hi"},
		{"hello", []any{5, " world"}, "hello world"},
		{"hello", []any{-5}, ""},
		{"héllo", []any{1, "e", -1, 3}, "hello"},
		{"a😀b", []any{1, -1, 1}, "ab"},
		{"😀", []any{1, "x"}, "😀x"},
		{"e\u0301", []any{1, -1}, "e"}, // a combining mark is its own code point
		{"中文字", []any{"日本", -2, 1}, "日本字"},
		{"👨\u200d👩\u200d👧", []any{2, -3}, "👨\u200d"},
		{"ab\xffc", []any{2, -1, 1}, "abc"},
		{"ab\xffc", []any{4}, "ab\ufffdc"},
	}
	for i, tt := range tests {
		got, err := Apply(tt.doc, mustOp(t, tt.op...))
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if got != tt.want {
			t.Errorf("#%d: Apply(%q, %v) = %q, want %q", i, tt.doc, tt.op, got, tt.want)
		}
	}
}

func TestApplyLengthMismatch(t *testing.T) {
	tests := []struct {
		doc     string
		op      []any
		mention string
	}{
		{"hello", []any{3}, "op expects a document of 3 code points, document has 5"},
		{"😀", []any{4}, "op expects a document of 4 code points, document has 1"},
		{"", []any{-1}, "expects a document of 1 code points, document has 0"},
		{"中文", []any{"x"}, "expects a document of 0 code points, document has 2"},
	}
	for _, tt := range tests {
		_, err := Apply(tt.doc, mustOp(t, tt.op...))
		checkErr(t, err, ErrLengthMismatch, tt.mention)
	}
}

func TestTransformTies(t *testing.T) {
	tests := []struct {
		doc  string
		a, b []any
		want string
	}{
		// Both insert at one spot: a's text goes first.
		{"ab", []any{1, "X", 1}, []any{1, "Y", 1}, "aXYb"},
		{"", []any{"X"}, []any{"Y"}, "XY"},
		{"ab", []any{2, "X"}, []any{2, "Y"}, "abXY"},
		// An insert inside text the other deletes survives.
		{"abc", []any{1, "X", 2}, []any{-3}, "X"},
		// Both delete the same text: it is deleted once.
		{"abcd", []any{1, -2, 1}, []any{2, -2}, "a"},
		{"😀中", []any{"é", 2}, []any{"ü", -1, 1}, "éü中"},
	}
	for i, tt := range tests {
		a, b := mustOp(t, tt.a...), mustOp(t, tt.b...)
		a2, b2, err := Transform(a, b)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}

		viaA := mustApply(t, mustApply(t, tt.doc, a), b2)
		viaB := mustApply(t, mustApply(t, tt.doc, b), a2)
		if viaA != tt.want || viaB != tt.want {
			t.Errorf("#%d: a then b' = %q, b then a' = %q, want %q", i, viaA, viaB, tt.want)
		}
	}
}

func TestTransformAndComposeLengthMismatch(t *testing.T) {
	_, _, err := Transform(mustOp(t, 3), mustOp(t, 4))
	checkErr(t, err, ErrLengthMismatch, "one expects 3 code points and the other 4")

	_, err = Compose(mustOp(t, 3, "x"), mustOp(t, 3))
	checkErr(t, err, ErrLengthMismatch,
		"second op expects a document of 3 code points, but the first produces 4")
}

func mustApply(t fataler, doc string, op Op) string {
	t.Helper()

	out, err := Apply(doc, op)
	if err != nil {
		t.Fatalf("Apply(%q, %v): %v", doc, op, err)
	}
	return out
}

// alphabet is what random documents and inserts are made of: ASCII, JSON
// specials, precomposed and combining accents, CJK, emoji beyond the BMP,
// a zero-width joiner and a skin-tone modifier.
var alphabet = []rune{
	'a', 'b', ' ', '\n', '"', '\\', '<', '\x00',
	'é', 'e', '\u0301', '中', '文', '😀', '👍', '\u200d', '🏽', '\u2028',
}

// genText generates text of up to maxRunes code points from alphabet.
func genText(maxRunes int) *rapid.Generator[string] {
	return rapid.StringOfN(rapid.SampledFrom(alphabet), 0, maxRunes, -1)
}

// drawOp draws a random op on a document of baseLen code points. Small
// lengths make inserts and deletes of concurrent ops collide often.
func drawOp(t *rapid.T, baseLen int, label string) Op {
	var b opBuilder
	left := baseLen
	for {
		kind := rapid.IntRange(0, 3).Draw(t, label+" kind")
		if left == 0 && kind != 2 {
			break
		}

		switch kind {
		case 0, 3:
			n := rapid.IntRange(1, max(left, 1)).Draw(t, label+" retain")
			b.retain(min(n, left))
			left -= min(n, left)
		case 1:
			n := rapid.IntRange(1, max(left, 1)).Draw(t, label+" delete")
			b.delete(min(n, left))
			left -= min(n, left)
		case 2:
			b.insert(genText(6).Draw(t, label+" insert"))
		}
	}
	return b.op()
}

func TestTransformConvergesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		doc := genText(12).Draw(t, "doc")
		docLen := utf8.RuneCountInString(doc)
		a := drawOp(t, docLen, "a")
		b := drawOp(t, docLen, "b")

		a2, b2, err := Transform(a, b)
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, a2)
		checkNormalized(t, b2)

		viaA := mustApply(t, mustApply(t, doc, a), b2)
		viaB := mustApply(t, mustApply(t, doc, b), a2)
		if viaA != viaB {
			t.Fatalf("diverged on %q with a=%v b=%v: a,b'=%q b,a'=%q", doc, a, b, viaA, viaB)
		}
	})
}

func TestTransformSamePositionInsertsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		doc := genText(8).Draw(t, "doc")
		docLen := utf8.RuneCountInString(doc)
		pos := rapid.IntRange(0, docLen).Draw(t, "pos")
		textA := genText(3).Draw(t, "textA") + "A"
		textB := genText(3).Draw(t, "textB") + "B"

		a := mustOpT(t, pos, textA, docLen-pos)
		b := mustOpT(t, pos, textB, docLen-pos)
		a2, b2, err := Transform(a, b)
		if err != nil {
			t.Fatal(err)
		}

		head := string([]rune(doc)[:pos])
		tail := string([]rune(doc)[pos:])
		want := head + textA + textB + tail
		if got := mustApply(t, mustApply(t, doc, a), b2); got != want {
			t.Fatalf("a then b' = %q, want %q", got, want)
		}
		if got := mustApply(t, mustApply(t, doc, b), a2); got != want {
			t.Fatalf("b then a' = %q, want %q", got, want)
		}
	})
}

// mustOpT is mustOp for a rapid.T: a retain of 0 is left out.
func mustOpT(t *rapid.T, parts ...any) Op {
	var b opBuilder
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			if p < 0 {
				b.delete(-p)
			} else {
				b.retain(p)
			}
		case string:
			b.insert(p)
		}
	}
	op := b.op()
	checkNormalized(t, op)
	return op
}

func TestComposeProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		doc := genText(12).Draw(t, "doc")
		a := drawOp(t, utf8.RuneCountInString(doc), "a")
		mid := mustApply(t, doc, a)
		b := drawOp(t, utf8.RuneCountInString(mid), "b")

		ab, err := Compose(a, b)
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, ab)

		want := mustApply(t, mid, b)
		if got := mustApply(t, doc, ab); got != want {
			t.Fatalf("compose(%v, %v) = %v gives %q, sequential apply %q", a, b, ab, got, want)
		}
	})
}

func TestOpJSONRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		op := drawOp(t, rapid.IntRange(0, 30).Draw(t, "baseLen"), "op")
		checkNormalized(t, op)

		data, err := op.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) {
			t.Fatalf("MarshalJSON = %s, not JSON", data)
		}

		back, err := ParseOp(data)
		if err != nil {
			t.Fatalf("ParseOp(%s): %v", data, err)
		}
		if !back.Equal(op) || back.BaseLen() != op.BaseLen() || back.TargetLen() != op.TargetLen() {
			t.Fatalf("round trip %v -> %s -> %v", op, data, back)
		}

		// encoding/json agrees on the text of every insert.
		var generic []any
		if err := json.Unmarshal(data, &generic); err != nil {
			t.Fatal(err)
		}
		for i, c := range op.Components() {
			if c.Insert != "" && generic[i] != c.Insert {
				t.Fatalf("component %d: encoding/json reads %q, want %q", i, generic[i], c.Insert)
			}
		}
	})
}

// jsonish generates byte soup that is often nearly an op or a splice.
var jsonish = rapid.Custom(func(t *rapid.T) []byte {
	tokens := []string{
		"[", "]", "{", "}", ",", ":", " ", `"splice"`, `"x"`, `""`, `"é"`, `"😀"`,
		"0", "1", "-1", "7", "-0", "1.5", "1e9", "2147483648", "null", "true",
		`"\ud800"`, `"\ud83d\ude00"`, `"\u0041"`, `"\\"`, "\xff", "\xc3", "\"", "\\",
	}
	parts := rapid.SliceOfN(rapid.SampledFrom(tokens), 0, 16).Draw(t, "tokens")
	return []byte(strings.Join(parts, ""))
})

func TestParseEditNeverPanicsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		data := rapid.OneOf(rapid.SliceOfN(rapid.Byte(), 0, 64), jsonish).Draw(t, "data")
		checkParsedEdit(t, data)
	})
}

// checkParsedEdit parses data as an edit and, if that succeeds, checks
// that the edit is sound: its op is normalized and survives a round trip.
func checkParsedEdit(t fataler, data []byte) {
	t.Helper()

	edit, err := ParseEdit(data)
	if err != nil {
		if !errors.Is(err, ErrInvalidOp) {
			t.Fatalf("ParseEdit(%q) = %v, not ErrInvalidOp", data, err)
		}
		return
	}

	var op Op
	if s, ok := edit.Splice(); ok {
		if s.Pos < 0 || s.Deleted < 0 || !utf8.ValidString(s.Inserted) {
			t.Fatalf("ParseEdit(%q) = bad splice %+v", data, s)
		}
		op, err = edit.Op(s.Pos + s.Deleted)
	} else {
		op, err = ParseOp(data)
		if err == nil {
			op, err = edit.Op(op.BaseLen())
		}
	}
	if err != nil {
		t.Fatalf("ParseEdit(%q) succeeded but its op fails: %v", data, err)
	}
	checkNormalized(t, op)

	back, err := ParseOp([]byte(op.String()))
	if err != nil || !back.Equal(op) {
		t.Fatalf("ParseEdit(%q): op %v does not round trip: %v, %v", data, op, back, err)
	}
}
