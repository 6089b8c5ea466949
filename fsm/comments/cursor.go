package comments

import (
	"crypto/sha256"
	"encoding/base64"

	"github.com/shoal-db/shoal/fsm"
)

// A cursor is the unpadded base64url encoding of
//
//	version (1 byte) | order (1 byte) | position (16 bytes) | tag (8 bytes)
//
// where position is the sort key and id of the last comment of a page and
// tag the first 8 bytes of SHA-256 over a fixed label, the listing's scope
// (thread, parent and order) and everything before the tag. The scope is
// not spelled out, only bound by the tag: a cursor is 35 characters
// however long the thread name. A cursor taken from another listing, or
// changed in any byte, fails the tag and is rejected with CodeInvalid.
//
// NB: the tag detects corruption and cursors that were edited or made up;
// it is not a secret MAC, so anyone who reads this code can forge one. A
// forged but well-formed cursor only positions a listing of the caller's
// own choosing, which any reader may list anyway.
const (
	cursorVersion = 1
	cursorTagLen  = 8
	cursorLen     = 2 + positionLen + cursorTagLen
)

var cursorEncoding = base64.RawURLEncoding.Strict()

const cursorLabel = "shoal/comments/cursor\x00"

// encodeCursor returns the cursor of position pos in the listing whose
// index entries start with scope (as from scopeKey, order included).
func encodeCursor(scope, pos []byte) string {
	b := make([]byte, 0, cursorLen)
	b = append(b, cursorVersion, scope[len(scope)-1])
	b = append(b, pos...)
	b = append(b, cursorTag(scope, b)...)
	return cursorEncoding.EncodeToString(b)
}

// decodeCursor returns the position held by cursor s of the listing whose
// index entries start with scope, or an *fsm.Error with CodeInvalid if s
// is not such a cursor.
func decodeCursor(s string, scope []byte) ([]byte, error) {
	if len(s) != cursorEncoding.EncodedLen(cursorLen) {
		return nil, errBadCursor()
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) != cursorLen || b[0] != cursorVersion {
		return nil, errBadCursor()
	}
	if b[1] != scope[len(scope)-1] {
		return nil, fsm.Errorf(fsm.CodeInvalid, "cursor belongs to another sort")
	}
	body, tag := b[:cursorLen-cursorTagLen], b[cursorLen-cursorTagLen:]
	if string(tag) != string(cursorTag(scope, body)) {
		return nil, errBadCursor()
	}
	return body[2:], nil
}

func errBadCursor() error { return fsm.Errorf(fsm.CodeInvalid, "invalid cursor") }

// cursorTag returns the tag of cursor body in scope.
func cursorTag(scope, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(cursorLabel))
	h.Write(scope)
	h.Write(body)
	return h.Sum(nil)[:cursorTagLen]
}
