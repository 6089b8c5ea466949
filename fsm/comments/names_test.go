package comments

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/fsm"
)

// TestControlCharactersInNames checks that a new command naming a thread,
// author or user with a control character is rejected by Encode and
// changes nothing, while a log entry that carries one, committed before
// the rule, still applies as it did, so that replaying an old log gives
// the same state.
func TestControlCharactersInNames(t *testing.T) {
	e := newTestEnv(t, t.TempDir())
	seedThreads(e)
	before := e.digest()
	for i, cmd := range []Command{
		CreateCommand{Thread: "\x00", Author: "a", Body: "b"},
		CreateCommand{Thread: "t\n", Author: "a", Body: "b"},
		CreateCommand{Thread: "t", Author: "ann\x00", Body: "b"},
		CreateCommand{Thread: "t", Author: "ann\u0085", Body: "b"}, // C1: NEL
		EditCommand{ID: "1", Author: "ann\x7f", Body: "b"},
		DeleteCommand{ID: "1", Author: "\tann"},
		VoteCommand{ID: "1", User: "u\x1b", Vote: VoteUp},
		LikeCommand{ID: "1", User: "u\r", Like: true},
	} {
		_, err := e.apply(cmd)
		require.Equal(t, fsm.CodeInvalid, errCode(err), "#%d %+v: %v", i, cmd, err)
		require.Contains(t, err.Error(), "control character", "#%d", i)
		require.Equal(t, before, e.digest(), "#%d changed the state", i)
	}

	// An entry from before the rule applies.
	old := CreateCommand{Thread: "old\x00", Author: "ann\x00", Body: "b"}
	payload, err := json.Marshal(old)
	require.NoError(t, err)
	_, err = e.applyRaw(old.Op(), payload, e.now)
	require.NoError(t, err)
	info, err := GetThread(e.db, old.Thread)
	require.NoError(t, err)
	require.Equal(t, int64(1), info.Comments, "%+v", info)
}
