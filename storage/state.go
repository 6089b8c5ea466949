package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/shoal-db/shoal/internal/lock"
)

// ErrClosed is returned by the methods of a StateDB that has been closed,
// or whose database could not be reopened after a failed Restore.
var ErrClosed = errors.New("storage: closed")

// stateCacheSize is the block cache of the state database.
const stateCacheSize = 32 << 20

// StateDB is the database the state machine applies committed commands
// into: the state/ Pebble database of a node.
//
// Get, Scan, NewSnapshot and Sync may be called from any number of
// goroutines at once. NewBatch and Restore must be called from one
// goroutine, the state machine's.
//
// NB: Close, and Restore when it swaps the database, wait until every open
// Batch and Snapshot has been closed, and meanwhile every other call waits
// too. Keep batches and snapshots short-lived, and never let the closing
// of one depend on a call to the StateDB, or they deadlock.
type StateDB struct {
	dir    string
	opts   *pebble.Options
	logger *slog.Logger

	// mu is read-locked for every use of db, including opening a batch or
	// snapshot on it, and write-locked to close it or swap it for a
	// restored one. Open batches and snapshots do not hold it: the state
	// machine opens a batch while a snapshot it opened is still being
	// streamed, and a read lock taken twice by one goroutine is what the
	// deadlock build reports.
	mu lock.RWMutex
	db *pebble.DB

	// open counts the batches and snapshots open on db; Close and Restore
	// wait for it to drop to zero while they hold mu.
	open sync.WaitGroup
}

// OpenState opens, or creates, the state database in dir. It first
// finishes or clears away a Restore that a crash interrupted.
func OpenState(dir string, logger *slog.Logger) (*StateDB, error) {
	if err := recoverRestore(dir); err != nil {
		return nil, fmt.Errorf("storage: recover interrupted restore of %s: %w", dir, err)
	}

	opts := pebbleOptions(logger, stateCacheSize)
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, openError("state database", dir, err)
	}

	s := &StateDB{dir: dir, opts: opts, logger: logger.With("component", "storage"), db: db}
	s.logger.Info("opened state database", "dir", dir)
	return s, nil
}

// Close waits for open batches and snapshots to be closed, then closes the
// database. Later calls return nil; other methods return ErrClosed.
func (s *StateDB) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.db == nil {
		return nil
	}
	s.open.Wait()
	err := s.db.Close()
	s.db = nil
	return err
}

// Get returns a copy of the value stored under key, or ErrNotFound.
func (s *StateDB) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()

	if s.db == nil {
		return nil, ErrClosed
	}
	return get(s.db, key)
}

// Scan implements Reader over the live database. The database cannot be
// restored or closed while the scan runs, so fn must not call the StateDB.
func (s *StateDB) Scan(
	lower, upper []byte, reverse bool, fn func(key, value []byte) error,
) error {
	s.mu.RLock()
	defer s.mu.RUnlock()

	if s.db == nil {
		return ErrClosed
	}
	return scan(s.db, lower, upper, reverse, fn)
}

// Sync makes every batch committed so far durable.
func (s *StateDB) Sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()

	if s.db == nil {
		return ErrClosed
	}
	return s.db.LogData(nil, pebble.Sync)
}

// NewBatch starts an indexed batch: its reads see its own writes layered
// over the database. The caller must Close it; until then Restore and
// Close wait. NewBatch panics if the StateDB is closed.
func (s *StateDB) NewBatch() *Batch {
	s.mu.RLock()
	defer s.mu.RUnlock()

	if s.db == nil {
		panic("storage: NewBatch on a closed StateDB")
	}
	s.open.Add(1)
	return &Batch{state: s, batch: s.db.NewIndexedBatch()}
}

// NewSnapshot returns a consistent point-in-time view of the database. It
// may be read from many goroutines at once. The caller must Close it;
// until then Restore and Close wait. NewSnapshot panics if the StateDB is
// closed.
func (s *StateDB) NewSnapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()

	if s.db == nil {
		panic("storage: NewSnapshot on a closed StateDB")
	}
	s.open.Add(1)
	return &Snapshot{state: s, snap: s.db.NewSnapshot()}
}

// Batch is a set of writes to a StateDB that is applied atomically by
// Commit. It implements ReadWriter and is not safe for concurrent use.
type Batch struct {
	state *StateDB
	batch *pebble.Batch
}

var _ ReadWriter = (*Batch)(nil)

// Get returns a copy of the value under key as the batch would leave it,
// or ErrNotFound.
func (b *Batch) Get(key []byte) ([]byte, error) {
	return get(b.batch, key)
}

// Scan implements Reader over the database with the batch layered on top.
func (b *Batch) Scan(
	lower, upper []byte, reverse bool, fn func(key, value []byte) error,
) error {
	return scan(b.batch, lower, upper, reverse, fn)
}

// Set stores value under key in the batch.
func (b *Batch) Set(key, value []byte) error {
	return b.batch.Set(key, value, nil)
}

// Delete removes key in the batch.
func (b *Batch) Delete(key []byte) error {
	return b.batch.Delete(key, nil)
}

// Commit applies the batch atomically. With sync unset the writes reach
// the operating system but not necessarily the disk, which is enough for
// state that can be rebuilt from the Raft log. After Commit the batch may
// only be closed.
func (b *Batch) Commit(sync bool) error {
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	return b.batch.Commit(opts)
}

// Close releases the batch, dropping it if it was not committed. Calling
// Close again does nothing.
func (b *Batch) Close() error {
	if b.batch == nil {
		return nil
	}

	err := b.batch.Close()
	b.batch = nil
	b.state.open.Done()
	return err
}

// Snapshot is a consistent point-in-time view of a StateDB. It implements
// Reader; Get, Scan and WriteTo may run from many goroutines at once, but
// all of them must have returned before Close is called.
type Snapshot struct {
	state *StateDB
	snap  *pebble.Snapshot
}

var _ Reader = (*Snapshot)(nil)

// Get returns a copy of the value under key in the snapshot, or
// ErrNotFound.
func (sn *Snapshot) Get(key []byte) ([]byte, error) {
	return get(sn.snap, key)
}

// Scan implements Reader over the snapshot.
func (sn *Snapshot) Scan(
	lower, upper []byte, reverse bool, fn func(key, value []byte) error,
) error {
	return scan(sn.snap, lower, upper, reverse, fn)
}

// Close releases the snapshot. Calling Close again does nothing.
func (sn *Snapshot) Close() error {
	if sn.snap == nil {
		return nil
	}

	err := sn.snap.Close()
	sn.snap = nil
	sn.state.open.Done()
	return err
}
