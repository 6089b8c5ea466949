// The operational-transformation engine of the text domain: Op describes an
// edit of a whole document, Apply and Rope.Apply carry it out, Transform and
// Compose combine concurrent and successive edits. It is pure and
// deterministic: no I/O, no clock, no random numbers, no map iteration.
//
// All lengths and positions count Unicode code points (runes), never bytes
// and never grapheme clusters: "é" written as e + U+0301 is two code points,
// a flag emoji is two, and a family emoji joined with U+200D is five or
// more. An edit may therefore split a grapheme; the engine keeps the text
// valid UTF-8 but leaves grapheme boundaries to the editor. Clients that
// count UTF-16 units (JavaScript strings) must convert.
//
// The package doc comment belongs to the domain (document*.go).

package text

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	// ErrInvalidOp is returned for an op, splice or edit that is malformed
	// in itself, whatever document it meets: JSON that is not an op, a zero
	// or fractional length, an insert that is not valid UTF-8, a length
	// beyond maxLen.
	ErrInvalidOp = errors.New("text: invalid op")

	// ErrLengthMismatch is returned when an op does not fit what it is
	// combined with: Apply to a document of another length, Transform of
	// ops made on different documents, Compose of ops that do not follow
	// each other, a splice that reaches past the end of the document.
	ErrLengthMismatch = errors.New("text: length mismatch")
)

// maxLen bounds every length in an op, one component's and the whole op's,
// so that no sum of lengths can overflow an int, even on 32-bit platforms.
const maxLen = math.MaxInt32

// Component is one step of an Op. Exactly one field is set: Retain keeps
// that many code points of the document, Delete removes that many, Insert
// adds the text at the cursor.
type Component struct {
	Retain int
	Delete int
	Insert string
}

// componentKind says which field of a Component is set.
type componentKind uint8

const (
	kindNone componentKind = iota // no component: the end of an op
	kindRetain
	kindDelete
	kindInsert
)

func (c Component) kind() componentKind {
	switch {
	case c.Insert != "":
		return kindInsert
	case c.Delete > 0:
		return kindDelete
	case c.Retain > 0:
		return kindRetain
	}
	return kindNone
}

// Op is an edit of a whole document: its components walk the document from
// start to end, retaining, deleting and inserting, and together retain or
// delete every code point of it. An op therefore applies only to a document
// of exactly BaseLen code points.
//
// An Op is always normalized: no component has length zero, adjacent
// components of one kind are merged, and where an insert and a delete meet
// the insert comes first. Two ops that make the same edit are thus equal
// component for component (see Equal).
//
// Ops are immutable values, safe to share between goroutines. The zero
// value is the no-op on the empty document.
type Op struct {
	comps     []Component
	baseLen   int
	targetLen int
}

// NewOp returns the op made of components, normalized. Each component must
// set exactly one field to a positive length or non-empty valid UTF-8 text;
// otherwise NewOp returns an error wrapping ErrInvalidOp.
func NewOp(components ...Component) (Op, error) {
	var b opBuilder
	for i, c := range components {
		if err := checkComponent(c); err != nil {
			return Op{}, fmt.Errorf("%w: component %d: %s", ErrInvalidOp, i, err)
		}

		b.add(c)
		if err := b.checkTotals(); err != nil {
			return Op{}, err
		}
	}
	return b.op(), nil
}

// checkComponent returns why c is not a valid component, or nil.
func checkComponent(c Component) error {
	set := 0
	if c.Retain != 0 {
		set++
	}
	if c.Delete != 0 {
		set++
	}
	if c.Insert != "" {
		set++
	}

	switch {
	case set == 0:
		return errors.New("empty component: set one of Retain, Delete, Insert")
	case set > 1:
		return errors.New("sets more than one of Retain, Delete, Insert")
	case c.Retain < 0 || c.Delete < 0:
		return errors.New("negative length")
	case c.Retain > maxLen || c.Delete > maxLen:
		return fmt.Errorf("length exceeds the limit of %d code points", maxLen)
	case !utf8.ValidString(c.Insert):
		return errors.New("insert is not valid UTF-8")
	}
	return nil
}

// BaseLen returns the length in code points of the documents op applies to.
func (o Op) BaseLen() int { return o.baseLen }

// TargetLen returns the length in code points of the document op produces.
func (o Op) TargetLen() int { return o.targetLen }

// IsNoop reports whether op leaves every document it applies to unchanged:
// it only retains.
func (o Op) IsNoop() bool {
	return len(o.comps) == 0 || (len(o.comps) == 1 && o.comps[0].Retain > 0)
}

// Components returns a copy of op's components, in order.
func (o Op) Components() []Component { return slices.Clone(o.comps) }

// Equal reports whether op and other are the same edit.
func (o Op) Equal(other Op) bool { return slices.Equal(o.comps, other.comps) }

// String returns op in its JSON wire form, for logs and test failures.
func (o Op) String() string { return string(o.appendJSON(nil)) }

// lengthMismatch is the error of an op applied to a document of docLen code
// points.
func lengthMismatch(op Op, docLen int) error {
	return fmt.Errorf("%w: op expects a document of %d code points, document has %d",
		ErrLengthMismatch, op.baseLen, docLen)
}

// Apply returns doc edited by op. If doc does not have op.BaseLen() code
// points it returns an error wrapping ErrLengthMismatch.
//
// doc should be valid UTF-8. Each byte of an invalid sequence counts as one
// code point and comes out as U+FFFD, so the result is always valid UTF-8
// and has exactly op.TargetLen() code points. Apply takes time linear in
// the length of doc; a Rope applies an op in time independent of it.
func Apply(doc string, op Op) (string, error) {
	if !utf8.ValidString(doc) {
		doc = replaceInvalid(doc)
	}

	docLen := utf8.RuneCountInString(doc)
	if docLen != op.baseLen {
		return "", lengthMismatch(op, docLen)
	}

	var out strings.Builder
	out.Grow(len(doc) + op.insertedBytes())
	at := 0
	for _, c := range op.comps {
		switch c.kind() {
		case kindRetain:
			end := at + runeOffset(doc[at:], c.Retain)
			out.WriteString(doc[at:end])
			at = end
		case kindDelete:
			at += runeOffset(doc[at:], c.Delete)
		case kindInsert:
			out.WriteString(c.Insert)
		}
	}
	return out.String(), nil
}

// insertedBytes returns the bytes of text op inserts.
func (o Op) insertedBytes() int {
	n := 0
	for _, c := range o.comps {
		n += len(c.Insert)
	}
	return n
}

// Transform returns a2 and b2 for two concurrent ops a and b made on the
// same document, such that applying a then b2 gives the same document as
// applying b then a2: b2 is b rebased over a, a2 is a rebased over b.
//
// Where a and b insert at the same position, a's text goes first (to the
// left of b's). This is the rule of ot.js, and callers keep it consistent
// by always passing the op that is later in the server's order as a: the
// server calls Transform(incoming, alreadyApplied) and applies a2; a client
// calls Transform(pending, fromServer), keeps a2 as its new pending op and
// applies b2. Both then agree on every tie.
//
// If a and b expect documents of different lengths Transform returns an
// error wrapping ErrLengthMismatch.
func Transform(a, b Op) (a2, b2 Op, err error) {
	if a.baseLen != b.baseLen {
		return Op{}, Op{}, fmt.Errorf("%w: concurrent ops must expect the same document, "+
			"but one expects %d code points and the other %d",
			ErrLengthMismatch, a.baseLen, b.baseLen)
	}

	var outA, outB opBuilder
	ra, rb := newOpReader(a), newOpReader(b)
	for ra.kind != kindNone || rb.kind != kindNone {
		// Inserts take no room in the other op's document: the inserting
		// side keeps its text and the other side retains over it.
		if ra.kind == kindInsert {
			n := ra.n
			outA.insert(ra.take(n))
			outB.retain(n)
			continue
		}
		if rb.kind == kindInsert {
			n := rb.n
			outA.retain(n)
			outB.insert(rb.take(n))
			continue
		}
		if ra.kind == kindNone || rb.kind == kindNone {
			return Op{}, Op{}, errors.New("text: broken invariant: op shorter than its base length")
		}

		n := min(ra.n, rb.n)
		switch {
		case ra.kind == kindRetain && rb.kind == kindRetain:
			outA.retain(n)
			outB.retain(n)
		case ra.kind == kindDelete && rb.kind == kindRetain:
			outA.delete(n)
		case ra.kind == kindRetain && rb.kind == kindDelete:
			outB.delete(n)
		}

		// Text both delete is gone for both: neither side mentions it.
		ra.take(n)
		rb.take(n)
	}
	return outA.op(), outB.op(), nil
}

// Compose returns one op that has the effect of applying a and then b. If
// b does not expect the document a produces, Compose returns an error
// wrapping ErrLengthMismatch.
func Compose(a, b Op) (Op, error) {
	if a.targetLen != b.baseLen {
		return Op{}, fmt.Errorf("%w: the second op expects a document of %d code points, "+
			"but the first produces %d", ErrLengthMismatch, b.baseLen, a.targetLen)
	}

	var out opBuilder
	ra, rb := newOpReader(a), newOpReader(b)
	for ra.kind != kindNone || rb.kind != kindNone {
		// What a deletes, b never sees; what b inserts, a never saw.
		if ra.kind == kindDelete {
			out.delete(ra.n)
			ra.take(ra.n)
			continue
		}
		if rb.kind == kindInsert {
			out.insert(rb.take(rb.n))
			continue
		}
		if ra.kind == kindNone || rb.kind == kindNone {
			return Op{}, errors.New("text: broken invariant: op shorter than its base length")
		}

		n := min(ra.n, rb.n)
		kindA, kindB := ra.kind, rb.kind
		textA := ra.take(n)
		rb.take(n)
		switch {
		case kindA == kindRetain && kindB == kindRetain:
			out.retain(n)
		case kindA == kindRetain && kindB == kindDelete:
			out.delete(n)
		case kindA == kindInsert && kindB == kindRetain:
			out.insert(textA)
		}
		// An insert of a that b deletes cancels out.
	}
	return out.op(), nil
}

// opReader walks the components of an op, possibly a part of one at a
// time.
type opReader struct {
	comps []Component
	next  int           // index of the component after the current one
	kind  componentKind // kind of the current component; kindNone at the end
	n     int           // code points left of the current component
	text  string        // text left of the current component, if an insert
}

func newOpReader(op Op) *opReader {
	r := &opReader{comps: op.comps}
	r.load()
	return r
}

// load makes the next component current.
func (r *opReader) load() {
	if r.next == len(r.comps) {
		r.kind, r.n, r.text = kindNone, 0, ""
		return
	}

	c := r.comps[r.next]
	r.next++
	r.kind = c.kind()
	switch r.kind {
	case kindRetain:
		r.n = c.Retain
	case kindDelete:
		r.n = c.Delete
	case kindInsert:
		r.n, r.text = utf8.RuneCountInString(c.Insert), c.Insert
	}
}

// take consumes n code points, at most r.n, of the current component and
// returns their text if it is an insert.
func (r *opReader) take(n int) string {
	var text string
	if r.kind == kindInsert {
		end := runeOffset(r.text, n)
		text, r.text = r.text[:end], r.text[end:]
	}

	r.n -= n
	if r.n == 0 {
		r.load()
	}
	return text
}

// opBuilder assembles a normalized op. The zero value is an empty op.
type opBuilder struct {
	comps  []Component
	base   int
	target int

	// The last insert can still grow while only deletes follow it. Its
	// text accumulates in buf once a second piece arrives, so that many
	// small pieces cost linear, not quadratic, time.
	openInsert int // index+1 of that insert in comps; 0 if none
	buf        []byte
	buffered   bool
}

// add appends a component that checkComponent accepts.
func (b *opBuilder) add(c Component) {
	switch c.kind() {
	case kindRetain:
		b.retain(c.Retain)
	case kindDelete:
		b.delete(c.Delete)
	case kindInsert:
		b.insert(c.Insert)
	}
}

func (b *opBuilder) retain(n int) {
	if n == 0 {
		return
	}

	b.closeInsert()
	b.base += n
	b.target += n
	if last := len(b.comps) - 1; last >= 0 && b.comps[last].Retain > 0 {
		b.comps[last].Retain += n
		return
	}
	b.comps = append(b.comps, Component{Retain: n})
}

func (b *opBuilder) delete(n int) {
	if n == 0 {
		return
	}

	b.base += n
	if last := len(b.comps) - 1; last >= 0 && b.comps[last].Delete > 0 {
		b.comps[last].Delete += n
		return
	}
	b.comps = append(b.comps, Component{Delete: n})
}

func (b *opBuilder) insert(s string) {
	if s == "" {
		return
	}

	b.target += utf8.RuneCountInString(s)
	if b.openInsert > 0 {
		i := b.openInsert - 1
		if !b.buffered {
			b.buf = append(b.buf[:0], b.comps[i].Insert...)
			b.buffered = true
		}
		b.buf = append(b.buf, s...)
		return
	}

	// An insert goes before a delete it meets, so that one edit has one
	// normal form.
	last := len(b.comps) - 1
	if last >= 0 && b.comps[last].Delete > 0 {
		b.comps = append(b.comps, b.comps[last])
		b.comps[last] = Component{Insert: s}
		b.openInsert = last + 1
		return
	}
	b.comps = append(b.comps, Component{Insert: s})
	b.openInsert = len(b.comps)
}

// closeInsert fixes the text of the open insert.
func (b *opBuilder) closeInsert() {
	if b.openInsert > 0 && b.buffered {
		b.comps[b.openInsert-1].Insert = string(b.buf)
	}
	b.openInsert = 0
	b.buffered = false
}

// checkTotals returns an error wrapping ErrInvalidOp if the op so far spans
// more than maxLen code points.
func (b *opBuilder) checkTotals() error {
	if b.base > maxLen || b.target > maxLen {
		return fmt.Errorf("%w: op spans more than %d code points", ErrInvalidOp, maxLen)
	}
	return nil
}

func (b *opBuilder) op() Op {
	b.closeInsert()
	return Op{comps: b.comps, baseLen: b.base, targetLen: b.target}
}

// runeOffset returns the byte offset in s just past its first n code
// points, or len(s) if s has fewer.
func runeOffset(s string, n int) int {
	i := 0
	for ; n > 0 && i < len(s); n-- {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return i
}

// replaceInvalid returns s with every byte of an invalid UTF-8 sequence
// replaced by U+FFFD, so that its code point count does not change.
func replaceInvalid(s string) string {
	var out strings.Builder
	out.Grow(len(s) + 16)
	for _, r := range s {
		out.WriteRune(r)
	}
	return out.String()
}

// MarshalJSON encodes op in its wire form: a JSON array in which a positive
// integer retains, a negative integer deletes and a string inserts, as in
// [5, "hi", -2, 10]. The empty op is [].
func (o Op) MarshalJSON() ([]byte, error) { return o.appendJSON(nil), nil }

func (o Op) appendJSON(buf []byte) []byte {
	buf = append(buf, '[')
	for i, c := range o.comps {
		if i > 0 {
			buf = append(buf, ',')
		}

		switch c.kind() {
		case kindRetain:
			buf = strconv.AppendInt(buf, int64(c.Retain), 10)
		case kindDelete:
			buf = strconv.AppendInt(buf, -int64(c.Delete), 10)
		case kindInsert:
			buf = appendJSONString(buf, c.Insert)
		}
	}
	return append(buf, ']')
}

// appendJSONString appends s as a JSON string. Unlike encoding/json it
// leaves <, > and & alone, which keeps markup in documents readable.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"

	buf = append(buf, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			buf = append(buf, '\\', byte(r))
		case r == '\n':
			buf = append(buf, '\\', 'n')
		case r == '\r':
			buf = append(buf, '\\', 'r')
		case r == '\t':
			buf = append(buf, '\\', 't')
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			buf = append(buf, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			buf = utf8.AppendRune(buf, r)
		}
	}
	return append(buf, '"')
}

// UnmarshalJSON decodes op from its wire form, as ParseOp does.
func (o *Op) UnmarshalJSON(data []byte) error {
	op, err := ParseOp(data)
	if err != nil {
		return err
	}
	*o = op
	return nil
}

// ParseOp decodes an op from its JSON wire form (see MarshalJSON) and
// normalizes it: [2, 3] becomes [5] and [-1, "x"] becomes ["x", -1].
//
// It rejects, with an error wrapping ErrInvalidOp that says what and where:
// anything but an array; elements that are neither integers nor strings;
// zero, which is neither a retain nor a delete; numbers with a fraction or
// exponent, even 1.0; lengths beyond 2147483647; empty strings, which
// insert nothing; and input that is not valid UTF-8, including \ud800-style
// escapes of unpaired surrogates (encoding/json would silently turn those
// into U+FFFD and change the text).
func ParseOp(data []byte) (Op, error) {
	if err := checkUTF8(data); err != nil {
		return Op{}, err
	}
	if first := firstByte(data); first != '[' {
		return Op{}, fmt.Errorf("%w: an op must be a JSON array such as [5, \"hi\", -2, 10], "+
			"got %s", ErrInvalidOp, describeJSON(first))
	}

	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return Op{}, fmt.Errorf("%w: malformed JSON: %v", ErrInvalidOp, err)
	}

	var b opBuilder
	for i, elem := range elems {
		c, err := parseComponent(elem)
		if err != nil {
			return Op{}, fmt.Errorf("%w: component %d: %s", ErrInvalidOp, i, err)
		}

		b.add(c)
		if err := b.checkTotals(); err != nil {
			return Op{}, err
		}
	}
	return b.op(), nil
}

// parseComponent decodes one element of an op's wire form.
func parseComponent(elem json.RawMessage) (Component, error) {
	first := firstByte(elem)
	switch {
	case first == '"':
		s, err := parseString(elem)
		if err != nil {
			return Component{}, err
		}
		if s == "" {
			return Component{}, errors.New(`empty insert "": leave the component out`)
		}
		return Component{Insert: s}, nil
	case first == '-' || (first >= '0' && first <= '9'):
		n, err := parseLength(elem)
		if err != nil {
			return Component{}, err
		}
		if n == 0 {
			return Component{}, errors.New("0 is not a length: " +
				"a positive integer retains, a negative one deletes")
		}
		if n < 0 {
			return Component{Delete: -n}, nil
		}
		return Component{Retain: n}, nil
	}
	return Component{}, fmt.Errorf("got %s, want a positive integer to retain, "+
		"a negative integer to delete or a string to insert", describeJSON(first))
}

// parseLength decodes a JSON number that must be a whole number of at most
// maxLen in magnitude.
func parseLength(raw json.RawMessage) (int, error) {
	text := string(bytes.TrimSpace(raw))
	if strings.ContainsAny(text, ".eE") {
		return 0, fmt.Errorf("%s is not a whole number of code points", excerpt(text))
	}

	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n > maxLen || n < -maxLen {
		return 0, fmt.Errorf("%s exceeds the limit of %d code points", excerpt(text), maxLen)
	}
	return int(n), nil
}

// excerpt returns s, shortened if it is too long to quote in an error.
func excerpt(s string) string {
	const limit = 24
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// parseString decodes a JSON string whose bytes are known to be valid
// UTF-8, rejecting escapes of unpaired surrogates.
func parseString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if err := checkSurrogates(raw); err != nil {
		return "", err
	}

	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("malformed string: %v", err)
	}
	return s, nil
}

// checkSurrogates returns an error if the JSON string literal raw escapes a
// UTF-16 surrogate that is not part of a pair, which stands for no
// character.
func checkSurrogates(raw []byte) error {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}

		i++
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}

		r := hexRune(raw, i+1)
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return fmt.Errorf("string escapes a lone low surrogate \\u%04x", r)
		case r >= 0xd800 && r <= 0xdbff:
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return fmt.Errorf("string escapes a lone high surrogate \\u%04x", r)
			}
			low := hexRune(raw, i+3)
			if low < 0xdc00 || low > 0xdfff {
				return fmt.Errorf("string escapes a lone high surrogate \\u%04x", r)
			}
			i += 6
		}
	}
	return nil
}

// hexRune decodes the four hex digits at raw[i:], or returns -1.
func hexRune(raw []byte, i int) rune {
	if i+4 > len(raw) {
		return -1
	}

	v, err := strconv.ParseUint(string(raw[i:i+4]), 16, 32)
	if err != nil {
		return -1
	}
	return rune(v)
}

// checkUTF8 returns an error wrapping ErrInvalidOp if data is not valid
// UTF-8. encoding/json would replace the bad bytes with U+FFFD.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) {
		return nil
	}

	at := 0
	for at < len(data) {
		r, size := utf8.DecodeRune(data[at:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		at += size
	}
	return fmt.Errorf("%w: input is not valid UTF-8 (bad byte 0x%02x at offset %d)",
		ErrInvalidOp, data[at], at)
}

// firstByte returns the first byte of data that is not JSON white space, or
// 0.
func firstByte(data []byte) byte {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

// describeJSON names the kind of JSON value that starts with first.
func describeJSON(first byte) string {
	switch {
	case first == 0:
		return "nothing"
	case first == '{':
		return "an object"
	case first == '[':
		return "an array"
	case first == '"':
		return "a string"
	case first == 't' || first == 'f':
		return "a boolean"
	case first == 'n':
		return "null"
	case first == '-' || (first >= '0' && first <= '9'):
		return "a number"
	}
	return fmt.Sprintf("%q, which is not JSON", first)
}

// Splice is an edit in the form most editors report one: at Pos, delete
// Deleted code points and insert Inserted. Unlike an Op it does not say how
// long the document is, so it becomes an Op only once that is known.
type Splice struct {
	Pos      int
	Deleted  int
	Inserted string
}

// Op returns the splice as an op on a document of docLen code points, as
// FromSplice does.
func (s Splice) Op(docLen int) (Op, error) {
	return FromSplice(s.Pos, s.Deleted, s.Inserted, docLen)
}

// FromSplice returns the op that, on a document of docLen code points,
// deletes deleted code points at pos and inserts inserted there. Negative
// numbers, numbers beyond 2147483647 and inserted text that is not valid
// UTF-8 give an error wrapping ErrInvalidOp; a splice that reaches past the
// end of the document gives one wrapping ErrLengthMismatch.
func FromSplice(pos, deleted int, inserted string, docLen int) (Op, error) {
	switch {
	case pos < 0 || deleted < 0 || docLen < 0:
		return Op{}, fmt.Errorf("%w: splice position, deleted count and document length "+
			"must not be negative, got %d, %d and %d", ErrInvalidOp, pos, deleted, docLen)
	case pos > maxLen || deleted > maxLen || docLen > maxLen:
		return Op{}, fmt.Errorf("%w: splice exceeds the limit of %d code points",
			ErrInvalidOp, maxLen)
	case !utf8.ValidString(inserted):
		return Op{}, fmt.Errorf("%w: splice inserts text that is not valid UTF-8", ErrInvalidOp)
	case pos > docLen:
		return Op{}, fmt.Errorf("%w: splice at position %d is past the end of the document, "+
			"which has %d code points", ErrLengthMismatch, pos, docLen)
	case deleted > docLen-pos:
		return Op{}, fmt.Errorf("%w: splice deletes code points %d to %d, "+
			"but the document has %d", ErrLengthMismatch, pos, pos+deleted, docLen)
	}

	var b opBuilder
	b.retain(pos)
	b.insert(inserted)
	b.delete(deleted)
	b.retain(docLen - pos - deleted)
	if err := b.checkTotals(); err != nil {
		return Op{}, err
	}
	return b.op(), nil
}

// Edit is a change as a client sends it: either a whole Op or a Splice.
// ParseEdit makes one; Op turns either form into an op. The zero value is
// the no-op on the empty document.
type Edit struct {
	delta    Op
	splice   Splice
	isSplice bool
}

// ParseEdit decodes an edit that is either an op in its wire form,
// [5, "hi", -2, 10] (see ParseOp), or a splice, {"splice": [5, 2, "hi"]}
// meaning at code point 5 delete 2 and insert "hi". The splice's position
// and count are whole numbers from 0 to 2147483647 and its text may be
// empty; the object has no other fields. Errors wrap ErrInvalidOp.
func ParseEdit(data []byte) (Edit, error) {
	if err := checkUTF8(data); err != nil {
		return Edit{}, err
	}

	switch first := firstByte(data); first {
	case '[':
		op, err := ParseOp(data)
		if err != nil {
			return Edit{}, err
		}
		return Edit{delta: op}, nil
	case '{':
		s, err := parseSplice(data)
		if err != nil {
			return Edit{}, err
		}
		return Edit{splice: s, isSplice: true}, nil
	default:
		return Edit{}, fmt.Errorf("%w: an edit must be an op such as [5, \"hi\", -2, 10] "+
			"or a splice such as {\"splice\": [5, 2, \"hi\"]}, got %s",
			ErrInvalidOp, describeJSON(first))
	}
}

// parseSplice decodes {"splice": [pos, deleted, "inserted"]}.
func parseSplice(data []byte) (Splice, error) {
	const want = `want {"splice": [position, deleted, "inserted"]}`

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return Splice{}, fmt.Errorf("%w: malformed JSON: %v", ErrInvalidOp, err)
	}
	raw, ok := fields["splice"]
	if !ok || len(fields) != 1 {
		names := make([]string, 0, len(fields))
		for name := range fields {
			names = append(names, strconv.Quote(name))
		}
		sort.Strings(names)
		return Splice{}, fmt.Errorf("%w: %s, got fields [%s]",
			ErrInvalidOp, want, strings.Join(names, ", "))
	}

	var elems []json.RawMessage
	if firstByte(raw) != '[' {
		return Splice{}, fmt.Errorf("%w: %s, got %s as the splice",
			ErrInvalidOp, want, describeJSON(firstByte(raw)))
	}
	if err := json.Unmarshal(raw, &elems); err != nil {
		return Splice{}, fmt.Errorf("%w: malformed JSON: %v", ErrInvalidOp, err)
	}
	if len(elems) != 3 {
		return Splice{}, fmt.Errorf("%w: %s, got %d elements", ErrInvalidOp, want, len(elems))
	}

	var s Splice
	for i, name := range []string{"position", "deleted count"} {
		first := firstByte(elems[i])
		if first != '-' && (first < '0' || first > '9') {
			return Splice{}, fmt.Errorf("%w: splice %s: got %s, want a whole number",
				ErrInvalidOp, name, describeJSON(first))
		}

		n, err := parseLength(elems[i])
		if err == nil && n < 0 {
			err = fmt.Errorf("%d is negative", n)
		}
		if err != nil {
			return Splice{}, fmt.Errorf("%w: splice %s: %s", ErrInvalidOp, name, err)
		}

		if i == 0 {
			s.Pos = n
		} else {
			s.Deleted = n
		}
	}

	if first := firstByte(elems[2]); first != '"' {
		return Splice{}, fmt.Errorf("%w: splice text: got %s, want a string",
			ErrInvalidOp, describeJSON(first))
	}
	text, err := parseString(elems[2])
	if err != nil {
		return Splice{}, fmt.Errorf("%w: splice text: %s", ErrInvalidOp, err)
	}
	s.Inserted = text
	return s, nil
}

// UnmarshalJSON decodes an edit as ParseEdit does.
func (e *Edit) UnmarshalJSON(data []byte) error {
	edit, err := ParseEdit(data)
	if err != nil {
		return err
	}
	*e = edit
	return nil
}

// Splice returns the edit's splice and true if it was sent as a splice.
func (e Edit) Splice() (Splice, bool) { return e.splice, e.isSplice }

// Op returns the edit as an op on the document revision it was made
// against, which has docLen code points. A splice becomes an op as with
// FromSplice; an op is returned as it is if its base length is docLen.
// Otherwise the error wraps ErrLengthMismatch.
func (e Edit) Op(docLen int) (Op, error) {
	if e.isSplice {
		return e.splice.Op(docLen)
	}
	if e.delta.baseLen != docLen {
		return Op{}, lengthMismatch(e.delta, docLen)
	}
	return e.delta, nil
}
