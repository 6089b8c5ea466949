package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseEdit checks that no input panics ParseEdit, that every error
// wraps ErrInvalidOp, and that every edit it accepts turns into a
// normalized op that survives a JSON round trip. Seeds are in
// testdata/fuzz/FuzzParseEdit.
func FuzzParseEdit(f *testing.F) {
	f.Add([]byte(`[5, "hi", -2, 10]`))
	f.Add([]byte(`{"splice": [5, 2, "hi"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParsedEdit(t, data)
	})
}

// FuzzTransform checks convergence of Transform, and that Compose and
// Rope.Apply agree with Apply, for ops that the fuzzer's bytes describe
// (see opFromBytes) on the fuzzer's document. Seeds are in
// testdata/fuzz/FuzzTransform.
func FuzzTransform(f *testing.F) {
	f.Add("héllo 中文 😀", []byte{0, 2, 2, 1, 1, 3}, []byte{0, 2, 2, 4})
	f.Fuzz(func(t *testing.T, doc string, opA, opB []byte) {
		doc = strings.ToValidUTF8(doc, "?")
		docLen := utf8.RuneCountInString(doc)
		a, b := opFromBytes(docLen, opA), opFromBytes(docLen, opB)

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

		ab, err := Compose(a, b2)
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, ab)
		if got := mustApply(t, doc, ab); got != viaA {
			t.Fatalf("compose(%v, %v) gives %q, sequential apply %q", a, b2, got, viaA)
		}

		r := NewRope(doc)
		if err := r.Apply(b); err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(a2); err != nil {
			t.Fatal(err)
		}
		checkRope(t, r)
		if got := r.String(); got != viaA {
			t.Fatalf("rope %q, string Apply %q", got, viaA)
		}
	})
}

// opFromBytes reads an op on a document of baseLen code points from pairs
// of bytes: kind%3 then an argument. Kind 0 retains and 1 deletes up to
// argument code points, as many as are left; kind 2 inserts the code point
// of alphabet the argument picks. What the op leaves out is retained.
func opFromBytes(baseLen int, data []byte) Op {
	var b opBuilder
	left := baseLen
	for ; len(data) >= 2; data = data[2:] {
		kind, arg := data[0]%3, int(data[1])
		switch kind {
		case 0:
			n := min(arg, left)
			b.retain(n)
			left -= n
		case 1:
			n := min(arg, left)
			b.delete(n)
			left -= n
		case 2:
			b.insert(string(alphabet[arg%len(alphabet)]))
		}
	}
	b.retain(left)
	return b.op()
}
