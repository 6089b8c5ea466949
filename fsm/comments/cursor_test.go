package comments

import (
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/shoal-db/shoal/fsm"
)

func TestCursorRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		thread := rapid.StringN(1, 20, MaxThreadLen).Draw(t, "thread")
		parent := rapid.Uint64().Draw(t, "parent")
		o := rapid.SampledFrom(orders[:]).Draw(t, "order")
		pos := rapid.SliceOfN(rapid.Byte(), positionLen, positionLen).Draw(t, "pos")
		scope := scopeKey(thread, parent, o)

		c := encodeCursor(scope, pos)
		require.Len(t, c, 35)
		got, err := decodeCursor(c, scope)
		require.NoError(t, err)
		require.Equal(t, pos, got)

		// Any other listing rejects it.
		other := scopeKey(thread, parent+1, o)
		_, err = decodeCursor(c, other)
		require.Equal(t, fsm.CodeInvalid, errCode(err))
		other = scopeKey(thread+"x", parent, o)
		_, err = decodeCursor(c, other)
		require.Equal(t, fsm.CodeInvalid, errCode(err))

		// Changing any bit of it is detected.
		raw, err := cursorEncoding.DecodeString(c)
		require.NoError(t, err)
		bit := rapid.IntRange(0, 8*len(raw)-1).Draw(t, "bit")
		raw[bit/8] ^= 1 << (bit % 8)
		_, err = decodeCursor(cursorEncoding.EncodeToString(raw), scope)
		require.Equal(t, fsm.CodeInvalid, errCode(err))
	})
}

// FuzzDecodeCursor feeds arbitrary strings to the cursor decoder: it must
// never panic, reject with CodeInvalid, and accept only the canonical
// encoding of a position of the listing it is asked about.
func FuzzDecodeCursor(f *testing.F) {
	scope := scopeKey("t", 0, orderTop)
	f.Add(encodeCursor(scope, make([]byte, positionLen)))
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := decodeCursor(s, scope)
		if err != nil {
			if code := errCode(err); code != fsm.CodeInvalid {
				t.Fatalf("decodeCursor(%q): %v", s, err)
			}
			return
		}
		if len(pos) != positionLen {
			t.Fatalf("decodeCursor(%q): position of %d bytes", s, len(pos))
		}
		if again := encodeCursor(scope, pos); again != s {
			t.Fatalf("decodeCursor(%q) accepted a non-canonical form of %q", s, again)
		}
		if _, err := decodeCursor(s, scopeKey("t", 0, orderBest)); err == nil {
			t.Fatalf("cursor %q of sort top accepted for sort best", s)
		}
	})
}
