package text

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// checkRope fails unless every node of r keeps the tree's invariants:
// right sums, priorities in heap order, chunks of valid UTF-8 that are
// neither empty nor over maxChunk bytes.
func checkRope(t fataler, r *Rope) {
	t.Helper()

	var walk func(n *ropeNode) (runes, bytes int)
	walk = func(n *ropeNode) (runes, bytes int) {
		if n == nil {
			return 0, 0
		}

		for _, child := range []*ropeNode{n.left, n.right} {
			if child != nil && child.priority > n.priority {
				t.Fatalf("child priority %x above parent %x", child.priority, n.priority)
			}
		}
		if n.chunk == "" || len(n.chunk) > maxChunk || !utf8.ValidString(n.chunk) {
			t.Fatalf("bad chunk of %d bytes: %q", len(n.chunk), n.chunk)
		}
		if got := utf8.RuneCountInString(n.chunk); got != n.runes {
			t.Fatalf("chunk %q has %d code points, node says %d", n.chunk, got, n.runes)
		}

		leftRunes, leftBytes := walk(n.left)
		rightRunes, rightBytes := walk(n.right)
		runes = leftRunes + n.runes + rightRunes
		bytes = leftBytes + len(n.chunk) + rightBytes
		if runes != n.sumRunes || bytes != n.sumBytes {
			t.Fatalf("subtree has %d code points and %d bytes, node says %d and %d",
				runes, bytes, n.sumRunes, n.sumBytes)
		}
		return runes, bytes
	}
	walk(r.root)
}

// shape describes r's tree, priorities included, for comparing two trees.
func shape(r *Rope) string {
	var out strings.Builder
	var walk func(n *ropeNode)
	walk = func(n *ropeNode) {
		if n == nil {
			out.WriteString(".")
			return
		}
		fmt.Fprintf(&out, "(%x %q ", n.priority, n.chunk)
		walk(n.left)
		walk(n.right)
		out.WriteString(")")
	}
	walk(r.root)
	return out.String()
}

func TestRopeBasics(t *testing.T) {
	var zero Rope
	if zero.Len() != 0 || zero.String() != "" || zero.Slice(0, 0) != "" {
		t.Fatal("zero Rope is not empty")
	}
	if err := zero.Apply(mustOp(t, "héllo")); err != nil {
		t.Fatal(err)
	}
	if zero.String() != "héllo" || zero.Len() != 5 {
		t.Fatalf("zero Rope after insert: %q, %d", zero.String(), zero.Len())
	}

	big := strings.Repeat("ab中😀", 1000) // 11,000 bytes, 4,000 code points
	r := NewRope(big)
	checkRope(t, r)
	if r.Len() != 4000 || r.String() != big {
		t.Fatalf("NewRope: %d code points", r.Len())
	}

	tests := []struct {
		start, end int
		want       string
	}{
		{0, 0, ""},
		{0, 4, "ab中😀"},
		{2, 6, "中😀ab"},
		{3999, 4000, "😀"},
		{1000, 1004, "ab中😀"},
		{0, 4000, big},
	}
	for i, tt := range tests {
		if got := r.Slice(tt.start, tt.end); got != tt.want {
			t.Errorf("#%d: Slice(%d, %d) = %q", i, tt.start, tt.end, excerpt(got))
		}
	}

	invalid := NewRope("a\xffb")
	if invalid.Len() != 3 || invalid.String() != "a\ufffdb" {
		t.Fatalf("NewRope of invalid UTF-8: %q", invalid.String())
	}
}

func TestRopeSlicePanicsOutOfRange(t *testing.T) {
	r := NewRope("abc")
	for _, bounds := range [][2]int{{-1, 1}, {2, 1}, {0, 4}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Slice(%d, %d) did not panic", bounds[0], bounds[1])
				}
			}()
			r.Slice(bounds[0], bounds[1])
		}()
	}
}

func TestRopeApplyLengthMismatchChangesNothing(t *testing.T) {
	r := NewRope("héllo")
	before := shape(r)

	err := r.Apply(mustOp(t, 3, "x"))
	checkErr(t, err, ErrLengthMismatch, "op expects a document of 3 code points, document has 5")
	if shape(r) != before {
		t.Fatal("failed Apply changed the rope")
	}
}

// drawRopeOp draws a random op on a document of baseLen code points, with
// inserts long enough now and then to span several chunks.
func drawRopeOp(t *rapid.T, baseLen int) Op {
	var b opBuilder
	left := baseLen
	for i := 0; ; i++ {
		kind := rapid.IntRange(0, 4).Draw(t, "kind")
		if (left == 0 && kind < 3) || i > 8 {
			break
		}

		switch kind {
		case 0:
			b.retain(left)
			left = 0
		case 1, 2:
			n := rapid.IntRange(0, left).Draw(t, "length")
			if kind == 1 {
				b.retain(n)
			} else {
				b.delete(n)
			}
			left -= n
		case 3:
			b.insert(genText(8).Draw(t, "insert"))
		case 4:
			text := genText(8).Draw(t, "long insert")
			b.insert(strings.Repeat(text, rapid.IntRange(1, 300).Draw(t, "repeat")))
		}
	}
	b.retain(left)
	return b.op()
}

func TestRopeMatchesApplyProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		unit := genText(40).Draw(t, "unit")
		doc := strings.Repeat(unit, rapid.IntRange(0, 80).Draw(t, "repeat"))
		r := NewRope(doc)
		checkRope(t, r)

		steps := rapid.IntRange(1, 30).Draw(t, "steps")
		for range steps {
			op := drawRopeOp(t, r.Len())
			want := mustApply(t, doc, op)
			if err := r.Apply(op); err != nil {
				t.Fatalf("Rope.Apply(%v): %v", op, err)
			}
			checkRope(t, r)

			if got := r.String(); got != want {
				t.Fatalf("after %v: rope %q, string Apply %q", op, excerpt(got), excerpt(want))
			}
			if r.Len() != op.TargetLen() {
				t.Fatalf("Len %d, op target %d", r.Len(), op.TargetLen())
			}
			doc = want

			start := rapid.IntRange(0, r.Len()).Draw(t, "start")
			end := rapid.IntRange(start, r.Len()).Draw(t, "end")
			if got, want := r.Slice(start, end), string([]rune(doc)[start:end]); got != want {
				t.Fatalf("Slice(%d, %d) = %q, want %q", start, end, got, want)
			}
		}
	})
}

func TestRopeIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		doc := strings.Repeat(genText(20).Draw(t, "unit"), 100)
		var ops []Op
		docLen := utf8.RuneCountInString(doc)
		for range 10 {
			op := drawRopeOp(t, docLen)
			ops = append(ops, op)
			docLen = op.TargetLen()
		}

		r1, r2 := NewRope(doc), NewRope(doc)
		for _, op := range ops {
			if err := r1.Apply(op); err != nil {
				t.Fatal(err)
			}
			if err := r2.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		if shape(r1) != shape(r2) {
			t.Fatal("the same ops built different trees")
		}
	})
}

// traceDir holds the real editing traces described in its README.md.
const traceDir = "../../../shared/data"

// editingTrace is a real editing history, in the format of the README.md
// of traceDir.
type editingTrace struct {
	startContent string
	endContent   string
	patches      []tracePatch
}

// tracePatch is one patch of a trace: at pos, delete deleted code points
// and insert inserted.
type tracePatch struct {
	pos, deleted int
	inserted     string
}

// readTrace reads a trace. Its JSON is scanned by hand: encoding/json takes
// seconds under the race detector for hundreds of thousands of small
// mixed-type arrays. Each key is found by its text, which cannot occur
// inside a string value, where its quotes would be escaped.
func readTrace(t *testing.T, name string) editingTrace {
	t.Helper()

	f, err := os.Open(filepath.Join(traceDir, name))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("trace %s not found in %s", name, traceDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}

	var trace editingTrace
	s := &jsonScanner{data: data}
	s.seek(`"startContent":`)
	trace.startContent = s.str()
	s = &jsonScanner{data: data}
	s.seek(`"endContent":`)
	trace.endContent = s.str()

	s = &jsonScanner{data: data}
	for s.seek(`"patches":`) {
		s.expect('[')
		for s.peek() != ']' && s.err == nil {
			var p tracePatch
			s.expect('[')
			p.pos = s.integer()
			s.expect(',')
			p.deleted = s.integer()
			s.expect(',')
			p.inserted = s.str()
			s.expect(']')
			if s.peek() == ',' {
				s.expect(',')
			}
			trace.patches = append(trace.patches, p)
		}
		s.expect(']')
	}
	if s.err != nil {
		t.Fatalf("%s: %v", name, s.err)
	}
	return trace
}

// jsonScanner reads the few JSON forms of a trace's patches. The first
// error sticks.
type jsonScanner struct {
	data []byte
	err  error
}

// seek moves past the next occurrence of key and reports whether there
// was one.
func (s *jsonScanner) seek(key string) bool {
	at := bytes.Index(s.data, []byte(key))
	if at < 0 {
		return false
	}
	s.data = s.data[at+len(key):]
	return s.err == nil
}

func (s *jsonScanner) peek() byte {
	s.data = bytes.TrimLeft(s.data, " \t\r\n")
	if len(s.data) == 0 {
		s.fail("unexpected end")
		return 0
	}
	return s.data[0]
}

func (s *jsonScanner) expect(c byte) {
	if s.peek() != c {
		s.fail(fmt.Sprintf("want %q", c))
		return
	}
	s.data = s.data[1:]
}

func (s *jsonScanner) integer() int {
	s.peek()
	end := 0
	for end < len(s.data) && (s.data[end] == '-' || s.data[end] >= '0' && s.data[end] <= '9') {
		end++
	}
	n, err := strconv.Atoi(string(s.data[:end]))
	if err != nil {
		s.fail("want an integer")
	}
	s.data = s.data[end:]
	return n
}

func (s *jsonScanner) str() string {
	if s.peek() != '"' {
		s.fail("want a string")
		return ""
	}

	escaped := false
	for end := 1; end < len(s.data); end++ {
		switch s.data[end] {
		case '\\':
			escaped = true
			end++
		case '"':
			raw := s.data[:end+1]
			s.data = s.data[end+1:]
			if !escaped {
				return string(raw[1:end])
			}
			var text string
			if err := json.Unmarshal(raw, &text); err != nil {
				s.fail(err.Error())
			}
			return text
		}
	}
	s.fail("unterminated string")
	return ""
}

func (s *jsonScanner) fail(msg string) {
	if s.err == nil {
		s.err = fmt.Errorf("trace patches: %s near %q", msg, excerpt(string(s.data)))
	}
}

// TestRopeReplaysEditingTraces replays real keystroke histories, every
// patch as a splice through FromSplice and Rope.Apply, and checks the end
// result. seph-blog1 has non-ASCII text.
func TestRopeReplaysEditingTraces(t *testing.T) {
	tests := []struct {
		name    string
		patches int
	}{
		{"automerge-paper.json.gz", 259778},
		{"seph-blog1.json.gz", 137993},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trace := readTrace(t, tt.name)
			patches := trace.patches
			if len(patches) != tt.patches {
				t.Fatalf("read %d patches, want %d", len(patches), tt.patches)
			}

			r := NewRope(trace.startContent)
			for i, p := range patches {
				op, err := FromSplice(p.pos, p.deleted, p.inserted, r.Len())
				if err != nil {
					t.Fatalf("patch %d: %v", i, err)
				}
				if err := r.Apply(op); err != nil {
					t.Fatalf("patch %d: %v", i, err)
				}
			}

			checkRope(t, r)
			if got := r.String(); got != trace.endContent {
				t.Fatalf("after %d patches: %d code points, want %d", len(patches),
					r.Len(), utf8.RuneCountInString(trace.endContent))
			}
			t.Logf("%d patches, %d code points, %d nodes",
				len(patches), r.Len(), countNodes(r.root))
		})
	}
}

func countNodes(n *ropeNode) int {
	if n == nil {
		return 0
	}
	return 1 + countNodes(n.left) + countNodes(n.right)
}

func BenchmarkRopeApply10KB(b *testing.B) { benchmarkRopeKeystroke(b, 10<<10) }

func BenchmarkRopeApply1MB(b *testing.B) { benchmarkRopeKeystroke(b, 1<<20) }

// benchmarkRopeKeystroke measures one op that types one character at a
// seeded random position of a document of about size bytes. The document
// starts over after every cycle of keystrokes so that it does not grow
// with b.N; the ops of a cycle are made before the timer runs.
func benchmarkRopeKeystroke(b *testing.B, size int) {
	const cycle = 1024

	line := "Realtime text, naïve café, 中文, 😀 emoji. "
	base := strings.Repeat(line, size/len(line)+1)
	base = base[:size]
	base = strings.ToValidUTF8(base, "")
	baseLen := utf8.RuneCountInString(base)

	rng := rand.New(rand.NewPCG(1, 2))
	ops := make([]Op, cycle)
	for i := range ops {
		pos := rng.IntN(baseLen + i + 1)
		ops[i] = mustOp(b, pos, "x", baseLen+i-pos)
	}

	r := NewRope(base)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%cycle == 0 && i > 0 {
			b.StopTimer()
			r = NewRope(base)
			b.StartTimer()
		}
		if err := r.Apply(ops[i%cycle]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStringApply1MB is the linear-time baseline that the rope
// replaces: the same keystroke applied to a 1 MB string.
func BenchmarkStringApply1MB(b *testing.B) {
	base := strings.Repeat("x", 1<<20)
	op := mustOp(b, 1<<19, "y", 1<<19)
	for i := 0; i < b.N; i++ {
		if _, err := Apply(base, op); err != nil {
			b.Fatal(err)
		}
	}
}
