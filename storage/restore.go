package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const (
	// restoredSuffix names the sibling directory a restore is built in.
	restoredSuffix = ".restore"

	// replacedSuffix names the sibling directory the replaced database is
	// moved to until the restored one is in place.
	replacedSuffix = ".old"

	// restoreBatchSize is how many bytes of writes a restore commits at once.
	restoreBatchSize = 4 << 20
)

// Restore replaces the whole contents of the database with the snapshot
// stream in r, as written by Snapshot.WriteTo. It builds a fresh database
// next to the live one while readers carry on, and swaps it in only once
// the stream has been read to its end and its checksum matches. Until the
// swap any error, such as ErrBadSnapshot, leaves the old database intact
// and in use. Restore may read r past the end of the stream.
//
// Restore must be called from the state machine's goroutine with no batch
// open; the swap waits for open snapshots to be closed. If the swap fails
// part way the error says so, and the StateDB may be left closed.
func (s *StateDB) Restore(r io.Reader) error {
	start := time.Now()
	restored := s.dir + restoredSuffix

	if err := os.RemoveAll(restored); err != nil {
		return fmt.Errorf("storage: restore: clear %s: %w", restored, err)
	}
	entries, err := buildRestored(restored, r, s.opts)
	if err != nil {
		return errors.Join(fmt.Errorf("storage: restore: %w", err), os.RemoveAll(restored))
	}

	if err := s.swapIn(); err != nil {
		return fmt.Errorf("storage: restore: swap in %s: %w", restored, err)
	}

	s.logger.Info("restored state database from snapshot",
		"entries", entries, "elapsed", time.Since(start))
	return nil
}

// buildRestored creates the database in dir from the stream in r and
// returns the number of entries written. The database is written without
// a WAL and flushed at the end, so it is whole on disk once closed.
func buildRestored(dir string, r io.Reader, opts *pebble.Options) (int, error) {
	opts = opts.Clone()
	opts.DisableWAL = true
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return 0, err
	}

	entries, err := writeStream(db, r)
	if err == nil {
		err = db.Flush()
	}
	return entries, errors.Join(err, db.Close())
}

// writeStream writes every entry of the stream in r into db, in batches of
// about restoreBatchSize bytes.
func writeStream(db *pebble.DB, r io.Reader) (entries int, err error) {
	stream, err := newSnapshotReader(r)
	if err != nil {
		return 0, err
	}

	batch := db.NewBatch()
	defer func() { err = errors.Join(err, batch.Close()) }()

	for {
		key, value, err := stream.next()
		if err == io.EOF {
			return entries, batch.Commit(pebble.NoSync)
		}
		if err != nil {
			return entries, err
		}

		if err := batch.Set(key, value, nil); err != nil {
			return entries, err
		}
		entries++

		if batch.Len() >= restoreBatchSize {
			if err := batch.Commit(pebble.NoSync); err != nil {
				return entries, err
			}
			batch.Reset()
		}
	}
}

// swapIn waits for open batches and snapshots to be closed, closes the
// live database, moves the restored one into its place and opens it. If
// the first rename fails the old database is reopened; if no database can
// be opened, later calls return ErrClosed and the next OpenState finishes
// the swap.
func (s *StateDB) swapIn() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.db == nil {
		return ErrClosed
	}
	s.open.Wait()
	closeErr := s.db.Close()
	s.db = nil

	swapErr := swapDirs(s.dir)

	opts := s.opts.Clone()
	opts.ErrorIfNotExists = true
	db, openErr := pebble.Open(s.dir, opts)
	if openErr == nil {
		s.db = db
	}
	return errors.Join(closeErr, swapErr, openErr)
}

// swapDirs moves the database in dir aside, moves the restored one into
// its place and then removes the old one. A crash between the two renames
// is finished by recoverRestore.
func swapDirs(dir string) error {
	replaced := dir + replacedSuffix
	if err := os.RemoveAll(replaced); err != nil {
		return err
	}

	if err := os.Rename(dir, replaced); err != nil {
		return err
	}
	if err := os.Rename(dir+restoredSuffix, dir); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}

	return os.RemoveAll(replaced)
}

// recoverRestore finishes a swap that a crash interrupted and removes what
// an interrupted Restore left behind. Only between the two renames of
// swapDirs is dir missing while the replaced copy exists, and then the
// restored copy is whole.
func recoverRestore(dir string) error {
	restored, replaced := dir+restoredSuffix, dir+replacedSuffix

	if !exists(dir) && exists(replaced) {
		if err := os.Rename(restored, dir); err != nil {
			return err
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return err
		}
	}

	return errors.Join(os.RemoveAll(restored), os.RemoveAll(replaced))
}

// exists reports whether path can be seen to exist.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// syncDir makes the renames within dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
