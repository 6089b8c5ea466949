package storage

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// snapshotStream returns the snapshot stream of s and the digest of the
// snapshot it was taken from.
func snapshotStream(t *testing.T, s *StateDB) ([]byte, [32]byte) {
	t.Helper()
	snap := s.NewSnapshot()
	defer snap.Close()

	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)

	digest, err := Digest(snap)
	require.NoError(t, err)
	return buf.Bytes(), digest
}

func TestSnapshotRoundTrip(t *testing.T) {
	source := openState(t, filepath.Join(t.TempDir(), "state"))

	// Enough data for Restore to commit several batches.
	value := bytes.Repeat([]byte("v"), 20<<10)
	b := source.NewBatch()
	for i := range 250 {
		require.NoError(t, b.Set(fmt.Appendf(nil, "key/%04d", i), value))
	}
	require.NoError(t, b.Set([]byte("empty value"), nil))
	require.NoError(t, b.Commit(false))
	require.NoError(t, b.Close())

	snap := source.NewSnapshot()
	defer snap.Close()
	want, err := Digest(snap)
	require.NoError(t, err)

	// Writes after the snapshot must not reach the stream.
	writeKeys(t, source, "later", "x", "key/0000", "changed")
	old, err := snap.Get([]byte("key/0000"))
	require.NoError(t, err)
	require.Equal(t, value, old)

	var stream bytes.Buffer
	n, err := snap.WriteTo(&stream)
	require.NoError(t, err)
	require.Equal(t, int64(stream.Len()), n)
	require.NoError(t, snap.Close())

	dir := filepath.Join(t.TempDir(), "state")
	target := openState(t, dir)
	writeKeys(t, target, "stale", "gone after restore")
	require.NoError(t, target.Restore(&stream))

	got, err := Digest(target)
	require.NoError(t, err)
	require.Equal(t, want, got)
	_, err = target.Get([]byte("later"))
	require.ErrorIs(t, err, ErrNotFound)
	_, err = target.Get([]byte("stale"))
	require.ErrorIs(t, err, ErrNotFound)
	require.NoDirExists(t, dir+restoredSuffix)
	require.NoDirExists(t, dir+replacedSuffix)

	// The restored database is the one on disk.
	require.NoError(t, target.Close())
	reopened := openState(t, dir)
	got, err = Digest(reopened)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestRestoreRejectsBadStreams(t *testing.T) {
	source := openState(t, t.TempDir())
	writeKeys(t, source, "a", "1", "b", "2", "c", "3")
	stream, _ := snapshotStream(t, source)

	flip := func(i int) []byte {
		bad := bytes.Clone(stream)
		bad[i] ^= 0x40
		return bad
	}
	bad := map[string][]byte{
		"empty":              nil,
		"header only":        stream[:len(snapshotMagic)+1],
		"truncated frame":    stream[:len(stream)/2],
		"no end marker":      stream[:len(stream)-5],
		"no checksum":        stream[:len(stream)-4],
		"short checksum":     stream[:len(stream)-1],
		"bad magic":          flip(0),
		"unknown version":    flip(len(snapshotMagic)),
		"corrupt value":      flip(len(stream) - 6),
		"corrupt checksum":   flip(len(stream) - 1),
		"unknown frame type": flip(len(snapshotMagic) + 1),
	}

	dir := filepath.Join(t.TempDir(), "state")
	target := openState(t, dir)
	writeKeys(t, target, "keep", "me")
	want, err := Digest(target)
	require.NoError(t, err)

	for name, stream := range bad {
		err := target.Restore(bytes.NewReader(stream))
		require.ErrorIs(t, err, ErrBadSnapshot, name)

		got, err := Digest(target)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
		require.NoDirExists(t, dir+restoredSuffix, name)
	}

	// The old database is still the live one and takes writes.
	writeKeys(t, target, "after", "ok")
	require.Equal(t, []string{"after=ok", "keep=me"}, collect(t, target, "", "", false))
}

func TestRestoreWithConcurrentReaders(t *testing.T) {
	source := openState(t, t.TempDir())
	var streams [][]byte
	for version := range 3 {
		writeKeys(t, source, "k", fmt.Sprint(version), fmt.Sprintf("only/%d", version), "x")
		stream, _ := snapshotStream(t, source)
		streams = append(streams, stream)
	}

	target := openState(t, t.TempDir())
	writeKeys(t, target, "k", "initial")

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				value, err := target.Get([]byte("k"))
				if !assertNoError(t, err) {
					return
				}

				snap := target.NewSnapshot()
				fromSnap, err := snap.Get([]byte("k"))
				entries := 0
				scanErr := snap.Scan(nil, nil, false, func(_, _ []byte) error {
					entries++
					return nil
				})
				closeErr := snap.Close()
				if !assertNoError(t, err, scanErr, closeErr) {
					return
				}
				if len(value) == 0 || len(fromSnap) == 0 || entries == 0 {
					t.Errorf("read an empty state: %q %q %d", value, fromSnap, entries)
					return
				}
			}
		})
	}

	for round := range 2 * len(streams) {
		require.NoError(t, target.Restore(bytes.NewReader(streams[round%len(streams)])))
	}
	stop.Store(true)
	wg.Wait()

	// The last stream restored was version 2, which has keys of all three.
	require.Equal(t, []string{"k=2", "only/0=x", "only/1=x", "only/2=x"},
		collect(t, target, "", "", false))
}

// assertNoError reports the first non-nil error from a reader goroutine,
// where require must not be used.
func assertNoError(t *testing.T, errs ...error) bool {
	for _, err := range errs {
		if err != nil {
			t.Error(err)
			return false
		}
	}
	return true
}

func TestRestoreWaitsForOpenSnapshots(t *testing.T) {
	source := openState(t, t.TempDir())
	writeKeys(t, source, "k", "new")
	stream, _ := snapshotStream(t, source)

	target := openState(t, t.TempDir())
	writeKeys(t, target, "k", "old")
	snap := target.NewSnapshot()

	restored := make(chan error)
	go func() { restored <- target.Restore(bytes.NewReader(stream)) }()
	select {
	case err := <-restored:
		t.Fatalf("Restore returned while a snapshot was open: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	// The open snapshot still reads the old state.
	value, err := snap.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, []byte("old"), value)

	require.NoError(t, snap.Close())
	require.NoError(t, <-restored)
	require.Equal(t, []string{"k=new"}, collect(t, target, "", "", false))
}
