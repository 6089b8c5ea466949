package storage

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// openState opens a StateDB in dir and closes it when the test ends.
func openState(t *testing.T, dir string) *StateDB {
	t.Helper()
	s, err := OpenState(dir, discardLogger())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// writeKeys commits the given key/value pairs to s in one batch.
func writeKeys(t *testing.T, s *StateDB, kvs ...string) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	for i := 0; i < len(kvs); i += 2 {
		require.NoError(t, b.Set([]byte(kvs[i]), []byte(kvs[i+1])))
	}
	require.NoError(t, b.Commit(false))
}

// collect returns "key=value" for every entry r.Scan passes to its callback.
func collect(t *testing.T, r Reader, lower, upper string, reverse bool) []string {
	t.Helper()
	var out []string
	err := r.Scan(bound(lower), bound(upper), reverse, func(k, v []byte) error {
		out = append(out, string(k)+"="+string(v))
		return nil
	})
	require.NoError(t, err)
	return out
}

// bound turns "" into a nil bound.
func bound(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}
