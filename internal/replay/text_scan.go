package replay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The real traces hold hundreds of thousands of patches; encoding/json
// spends seconds on them (tens of seconds under the race detector), most
// of it in reflection and in the per-patch decoder. traceScanner reads
// the trace format in one pass instead. It is a strict JSON reader for
// the values it decodes and skips unknown fields of any type.

// traceScanner reads JSON from a byte slice.
type traceScanner struct {
	data []byte
	pos  int
}

// decodeTrace parses a whole trace document.
func decodeTrace(data []byte) (*TextTrace, error) {
	s := &traceScanner{data: data}
	var trace TextTrace
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "kind":
			trace.Kind, err = s.str()
		case "numAgents":
			trace.NumAgents, err = s.int()
		case "startContent":
			trace.StartContent, err = s.str()
		case "endContent":
			trace.EndContent, err = s.str()
		case "txns":
			err = s.array(func() error {
				txn, err := s.txn()
				trace.Txns = append(trace.Txns, txn)
				return err
			})
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.ws(); s.pos != len(s.data) {
		return nil, s.errorf("data after the trace")
	}
	return &trace, nil
}

// txn reads one transaction object.
func (s *traceScanner) txn() (TextTxn, error) {
	var txn TextTxn
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "patches":
			return s.array(func() error {
				p, err := s.patch()
				txn.Patches = append(txn.Patches, p)
				return err
			})
		case "parents":
			txn.Parents = []int{}
			return s.array(func() error {
				p, err := s.int()
				txn.Parents = append(txn.Parents, p)
				return err
			})
		case "agent":
			var err error
			txn.Agent, err = s.int()
			return err
		}
		return s.skip()
	})
	return txn, err
}

// patch reads [pos, deleted, "inserted"].
func (s *traceScanner) patch() (TextPatch, error) {
	var p TextPatch
	err := s.expect('[')
	if err == nil {
		p.Pos, err = s.int()
	}
	if err == nil {
		err = s.expect(',')
	}
	if err == nil {
		p.Deleted, err = s.int()
	}
	if err == nil {
		err = s.expect(',')
	}
	if err == nil {
		p.Inserted, err = s.str()
	}
	if err == nil {
		err = s.expect(']')
	}
	if err == nil && (p.Pos < 0 || p.Deleted < 0) {
		err = s.errorf("negative position or count in a patch")
	}
	return p, err
}

func (s *traceScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("replay: read trace at byte %d: %s", s.pos, fmt.Sprintf(format, args...))
}

// ws skips white space.
func (s *traceScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (s *traceScanner) peek() byte {
	s.ws()
	if s.pos == len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *traceScanner) expect(c byte) error {
	if s.peek() != c {
		return s.errorf("want %q", c)
	}
	s.pos++
	return nil
}

// object reads an object, calling fn with each key to read its value. The
// key is valid only during the call.
func (s *traceScanner) object(fn func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		key, err := s.rawStr()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := fn(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or '}' in an object")
		}
	}
}

// array reads an array, calling fn to read each element.
func (s *traceScanner) array(fn func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or ']' in an array")
		}
	}
}

// int reads a JSON number that is a whole number fitting an int.
func (s *traceScanner) int() (int, error) {
	s.ws()
	start := s.pos
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
	}
	n, err := strconv.Atoi(string(s.data[start:s.pos]))
	if err != nil || s.pos < len(s.data) && strings.IndexByte(".eE", s.data[s.pos]) >= 0 {
		s.pos = start
		return 0, s.errorf("want a whole number")
	}
	return n, nil
}

// rawStr reads a JSON string without decoding it, returning its bytes
// between the quotes, escapes as they are. The bytes alias the input.
func (s *traceScanner) rawStr() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.pos
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			return s.data[start : s.pos-1], nil
		case c == '\\':
			s.pos += 2
		case c < 0x20:
			return nil, s.errorf("control character in a string")
		default:
			s.pos++
		}
	}
	return nil, s.errorf("unterminated string")
}

// str reads a JSON string.
func (s *traceScanner) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}

	// The common case: no escapes.
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == '"' {
			out := string(s.data[start:s.pos])
			s.pos++
			return out, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", s.errorf("control character in a string")
		}
		s.pos++
	}

	var b strings.Builder
	b.Write(s.data[start:s.pos])
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return b.String(), nil
		case c < 0x20:
			return "", s.errorf("control character in a string")
		case c != '\\':
			b.WriteByte(c)
			s.pos++
			continue
		}

		// An escape.
		if s.pos+1 >= len(s.data) {
			break
		}
		s.pos += 2
		switch e := s.data[s.pos-1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, err := s.hex4()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) {
				low := rune(-1)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					s.pos += 2
					if low, err = s.hex4(); err != nil {
						return "", err
					}
				}
				r = utf16.DecodeRune(r, low) // U+FFFD for a lone surrogate
			}
			b.WriteRune(r)
		default:
			return "", s.errorf("bad escape \\%c", e)
		}
	}
	return "", s.errorf("unterminated string")
}

// hex4 reads the four hex digits of a \u escape.
func (s *traceScanner) hex4() (rune, error) {
	if s.pos+4 > len(s.data) {
		return 0, s.errorf("short \\u escape")
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 32)
	if err != nil {
		return 0, s.errorf("bad \\u escape")
	}
	s.pos += 4
	return rune(v), nil
}

// skip reads and discards any value.
func (s *traceScanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, err := s.rawStr()
		return err
	case c == '-' || c >= '0' && c <= '9':
		start := s.pos
		for s.pos < len(s.data) && strings.IndexByte("+-.0123456789eE", s.data[s.pos]) >= 0 {
			s.pos++
		}
		if _, err := strconv.ParseFloat(string(s.data[start:s.pos]), 64); err != nil {
			return s.errorf("bad number")
		}
		return nil
	}
	for _, lit := range []string{"true", "false", "null"} {
		if strings.HasPrefix(string(s.data[s.pos:min(len(s.data), s.pos+5)]), lit) {
			s.pos += len(lit)
			return nil
		}
	}
	if s.pos == len(s.data) {
		return errors.New("replay: read trace: unexpected end")
	}
	return s.errorf("unexpected %q", s.data[s.pos])
}

// validUTF8 reports whether the decoded texts of a trace are valid UTF-8;
// an invalid byte would count as a code point of its own.
func validUTF8(trace *TextTrace) bool {
	if !utf8.ValidString(trace.StartContent) || !utf8.ValidString(trace.EndContent) {
		return false
	}
	for _, txn := range trace.Txns {
		for _, p := range txn.Patches {
			if !utf8.ValidString(p.Inserted) {
				return false
			}
		}
	}
	return true
}
