package storage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStateGetReturnsCopy(t *testing.T) {
	s := openState(t, t.TempDir())
	writeKeys(t, s, "a", "1", "empty", "")

	value, err := s.Get([]byte("a"))
	require.NoError(t, err)
	value[0] = 'x'
	again, err := s.Get([]byte("a"))
	require.NoError(t, err)
	require.Equal(t, []byte("1"), again)

	empty, err := s.Get([]byte("empty"))
	require.NoError(t, err)
	require.NotNil(t, empty)
	require.Empty(t, empty)

	_, err = s.Get([]byte("missing"))
	require.ErrorIs(t, err, ErrNotFound)
}

func TestBatchReadsItsOwnWrites(t *testing.T) {
	s := openState(t, t.TempDir())
	writeKeys(t, s, "a", "1", "b", "2")

	b := s.NewBatch()
	defer b.Close()
	require.NoError(t, b.Set([]byte("c"), []byte("3")))
	require.NoError(t, b.Set([]byte("a"), []byte("10")))
	require.NoError(t, b.Delete([]byte("b")))

	value, err := b.Get([]byte("a"))
	require.NoError(t, err)
	require.Equal(t, []byte("10"), value)
	_, err = b.Get([]byte("b"))
	require.ErrorIs(t, err, ErrNotFound)
	require.Equal(t, []string{"a=10", "c=3"}, collect(t, b, "", "", false))

	// Nothing is visible outside the batch before Commit.
	require.Equal(t, []string{"a=1", "b=2"}, collect(t, s, "", "", false))

	require.NoError(t, b.Commit(false))
	require.NoError(t, b.Close())
	require.Equal(t, []string{"a=10", "c=3"}, collect(t, s, "", "", false))
}

func TestScan(t *testing.T) {
	s := openState(t, t.TempDir())
	writeKeys(t, s, "a", "1", "b", "2", "c", "3", "d", "4")

	snap := s.NewSnapshot()
	defer snap.Close()
	batch := s.NewBatch()
	defer batch.Close()
	readers := map[string]Reader{"db": s, "snapshot": snap, "batch": batch}

	cases := []struct {
		lower, upper string
		reverse      bool
		want         []string
	}{
		{"", "", false, []string{"a=1", "b=2", "c=3", "d=4"}},
		{"", "", true, []string{"d=4", "c=3", "b=2", "a=1"}},
		{"b", "d", false, []string{"b=2", "c=3"}},
		{"b", "d", true, []string{"c=3", "b=2"}},
		{"bb", "", false, []string{"c=3", "d=4"}},
		{"c", "c", false, nil},
		{"d", "a", false, nil},
	}
	for name, r := range readers {
		for i, c := range cases {
			require.Equal(t, c.want, collect(t, r, c.lower, c.upper, c.reverse),
				"%s #%d", name, i)
		}
	}
}

func TestScanStopsEarly(t *testing.T) {
	s := openState(t, t.TempDir())
	writeKeys(t, s, "a", "1", "b", "2", "c", "3")

	var seen []string
	err := s.Scan(nil, nil, true, func(k, _ []byte) error {
		seen = append(seen, string(k))
		if len(seen) == 2 {
			return ErrStopScan
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "b"}, seen)

	boom := errors.New("boom")
	err = s.Scan(nil, nil, false, func(k, _ []byte) error { return boom })
	require.ErrorIs(t, err, boom)
}

func TestSyncAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenState(dir, discardLogger())
	require.NoError(t, err)
	writeKeys(t, s, "a", "1")
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())

	_, err = s.Get([]byte("a"))
	require.ErrorIs(t, err, ErrClosed)
	require.Panics(t, func() { s.NewSnapshot() })

	s = openState(t, dir)
	require.Equal(t, []string{"a=1"}, collect(t, s, "", "", false))
}

func TestOpenStateRecoversInterruptedRestore(t *testing.T) {
	root := t.TempDir()

	// A crash between the two renames of a swap: dir is missing, the old
	// copy is aside and the restored copy is whole.
	dir := filepath.Join(root, "state")
	for path, value := range map[string]string{
		dir + replacedSuffix: "old", dir + restoredSuffix: "new",
	} {
		s, err := OpenState(path, discardLogger())
		require.NoError(t, err)
		writeKeys(t, s, "k", value)
		require.NoError(t, s.Close())
	}
	s := openState(t, dir)
	require.Equal(t, []string{"k=new"}, collect(t, s, "", "", false))
	require.NoDirExists(t, dir+replacedSuffix)
	require.NoDirExists(t, dir+restoredSuffix)

	// A crash while the restored copy was being built: it is dropped.
	other := filepath.Join(root, "other")
	for path, value := range map[string]string{other: "live", other + restoredSuffix: "partial"} {
		s, err := OpenState(path, discardLogger())
		require.NoError(t, err)
		writeKeys(t, s, "k", value)
		require.NoError(t, s.Close())
	}
	s = openState(t, other)
	require.Equal(t, []string{"k=live"}, collect(t, s, "", "", false))
	require.NoDirExists(t, other+restoredSuffix)
}

func TestPebbleLogger(t *testing.T) {
	var out bytes.Buffer
	handler := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})
	logger := NewPebbleLogger(slog.New(handler))

	logger.Infof("flushed %d tables", 3)
	require.Empty(t, out.String(), "Infof logs at Debug")

	logger.Errorf("disk %s", "slow")
	require.Contains(t, out.String(), "level=ERROR")
	require.Contains(t, out.String(), "component=pebble")
	require.Contains(t, out.String(), `msg="disk slow"`)

	require.Panics(t, func() { logger.Fatalf("corrupt") })
}

// A data directory that another process holds open is named as in use,
// not as "resource temporarily unavailable". The other process is this
// test binary run again, holding the database until its stdin closes.
func TestOpenStateInUseSaysSo(t *testing.T) {
	if dir := os.Getenv("SHOAL_TEST_HOLD_STATE"); dir != "" {
		db, err := OpenState(dir, discardLogger())
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		fmt.Println("holding")
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = db.Close()
		os.Exit(0)
	}

	dir := t.TempDir()
	holder := exec.Command(os.Args[0], "-test.run=^TestOpenStateInUseSaysSo$")
	holder.Env = append(os.Environ(), "SHOAL_TEST_HOLD_STATE="+dir)
	stdin, err := holder.StdinPipe()
	require.NoError(t, err)
	stdout, err := holder.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, holder.Start())
	defer func() {
		_ = stdin.Close()
		_ = holder.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "holding\n", line)

	_, err = OpenState(dir, discardLogger())
	require.Error(t, err)
	require.Contains(t, err.Error(), "in use by another process")
}
