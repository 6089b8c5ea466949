package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// raftCacheSize is the block cache of the Raft log database. Raft reads
// mostly recent entries, which are still in the memtable.
const raftCacheSize = 8 << 20

// Keys of the Raft database start with one byte naming their kind.
var (
	logPrefix    = []byte{'l'} // then the big-endian uint64 index
	stablePrefix = []byte{'s'} // then the stable store key
)

// logEncodingVersion leads every encoded log entry.
const logEncodingVersion = 1

// errStableNotFound is returned by the StableStore getters for a missing
// key. hashicorp/raft recognizes it by its text alone, which must stay
// exactly "not found".
var errStableNotFound = errors.New("not found")

// RaftStore is the raft/ Pebble database of a node. It implements
// raft.LogStore and raft.StableStore, syncing every write to disk, and is
// safe for concurrent use.
type RaftStore struct {
	db *pebble.DB
}

var (
	_ raft.LogStore    = (*RaftStore)(nil)
	_ raft.StableStore = (*RaftStore)(nil)
)

// OpenRaftStore opens, or creates, the Raft log and stable store in dir.
func OpenRaftStore(dir string, logger *slog.Logger) (*RaftStore, error) {
	db, err := pebble.Open(dir, pebbleOptions(logger, raftCacheSize))
	if err != nil {
		return nil, openError("raft database", dir, err)
	}

	logger.With("component", "storage").Info("opened raft database", "dir", dir)
	return &RaftStore{db: db}, nil
}

// Close closes the database; the store must not be used afterwards.
func (r *RaftStore) Close() error {
	return r.db.Close()
}

// FirstIndex returns the index of the first log entry, or 0 if there is
// none.
func (r *RaftStore) FirstIndex() (uint64, error) {
	return r.edgeIndex(false)
}

// LastIndex returns the index of the last log entry, or 0 if there is
// none.
func (r *RaftStore) LastIndex() (uint64, error) {
	return r.edgeIndex(true)
}

// edgeIndex returns the index of the first or the last log entry.
func (r *RaftStore) edgeIndex(last bool) (uint64, error) {
	var index uint64
	err := scan(r.db, logPrefix, PrefixEnd(logPrefix), last, func(key, _ []byte) error {
		index = binary.BigEndian.Uint64(key[len(logPrefix):])
		return ErrStopScan
	})
	return index, err
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound.
func (r *RaftStore) GetLog(index uint64, log *raft.Log) error {
	value, err := get(r.db, logKey(index))
	if errors.Is(err, ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}

	if err := decodeLog(value, log); err != nil {
		return fmt.Errorf("storage: raft log entry %d: %w", index, err)
	}
	log.Index = index
	return nil
}

// StoreLog stores one log entry and syncs it to disk.
func (r *RaftStore) StoreLog(log *raft.Log) error {
	return r.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores log entries in one atomic write and syncs it to disk.
func (r *RaftStore) StoreLogs(logs []*raft.Log) error {
	batch := r.db.NewBatch()
	defer batch.Close()

	var value []byte
	for _, log := range logs {
		value = encodeLog(value[:0], log)
		if err := batch.Set(logKey(log.Index), value, nil); err != nil {
			return err
		}
	}
	return batch.Commit(pebble.Sync)
}

// DeleteRange deletes the log entries from min to max, both included, and
// syncs the deletion to disk.
func (r *RaftStore) DeleteRange(min, max uint64) error {
	end := PrefixEnd(logPrefix)
	if max < math.MaxUint64 {
		end = logKey(max + 1)
	}
	return r.db.DeleteRange(logKey(min), end, pebble.Sync)
}

// Set stores val under key and syncs it to disk.
func (r *RaftStore) Set(key, val []byte) error {
	return r.db.Set(stableKey(key), val, pebble.Sync)
}

// Get returns the value under key, or an empty value and an error that
// reads "not found".
func (r *RaftStore) Get(key []byte) ([]byte, error) {
	value, err := get(r.db, stableKey(key))
	if errors.Is(err, ErrNotFound) {
		return nil, errStableNotFound
	}
	return value, err
}

// SetUint64 stores val under key and syncs it to disk.
func (r *RaftStore) SetUint64(key []byte, val uint64) error {
	return r.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value under key, or 0 and an error that reads
// "not found".
func (r *RaftStore) GetUint64(key []byte) (uint64, error) {
	value, err := r.Get(key)
	if err != nil {
		return 0, err
	}
	if len(value) != 8 {
		return 0, fmt.Errorf("storage: stable key %q holds %d bytes, not a uint64",
			key, len(value))
	}
	return binary.BigEndian.Uint64(value), nil
}

func logKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), logPrefix...), index)
}

func stableKey(key []byte) []byte {
	return append(append([]byte(nil), stablePrefix...), key...)
}

// encodeLog appends the encoding of log, all but its index, to buf: the
// version, term, type, AppendedAt in Unix nanoseconds (0 for the zero
// time), then Data and Extensions, each preceded by its length.
func encodeLog(buf []byte, log *raft.Log) []byte {
	var appendedAt int64
	if !log.AppendedAt.IsZero() {
		appendedAt = log.AppendedAt.UnixNano()
	}

	buf = append(buf, logEncodingVersion)
	buf = binary.AppendUvarint(buf, log.Term)
	buf = append(buf, byte(log.Type))
	buf = binary.AppendVarint(buf, appendedAt)
	buf = binary.AppendUvarint(buf, uint64(len(log.Data)))
	buf = append(buf, log.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(log.Extensions)))
	return append(buf, log.Extensions...)
}

// decodeLog fills log, all but its index, from buf, which it keeps:
// Data and Extensions point into it.
func decodeLog(buf []byte, log *raft.Log) error {
	d := logDecoder{buf: buf}
	if version := d.byte(); version != logEncodingVersion {
		return fmt.Errorf("unknown encoding version %d", version)
	}

	log.Term = d.uvarint()
	log.Type = raft.LogType(d.byte())
	log.AppendedAt = time.Time{}
	if appendedAt := d.varint(); appendedAt != 0 {
		log.AppendedAt = time.Unix(0, appendedAt)
	}
	log.Data = d.bytes()
	log.Extensions = d.bytes()

	if d.err == nil && len(d.buf) != 0 {
		d.err = errors.New("trailing bytes")
	}
	return d.err
}

// logDecoder reads the fields of an encoded log entry. After the first
// error every read returns zero and err holds the error.
type logDecoder struct {
	buf []byte
	err error
}

func (d *logDecoder) byte() byte {
	if d.err != nil || len(d.buf) == 0 {
		d.fail()
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *logDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if d.err != nil || n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *logDecoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if d.err != nil || n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// bytes returns the next length-prefixed byte string, or nil if it is
// empty.
func (d *logDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.buf)) {
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *logDecoder) fail() {
	if d.err == nil {
		d.err = errors.New("truncated entry")
	}
}
