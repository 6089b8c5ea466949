// Package storage owns everything shoal keeps on disk in Pebble: the state
// database that the state machine writes into, the Raft log and stable
// store, and the streaming form of a state snapshot. It knows keys and
// values, never what they mean.
package storage

import "errors"

// ErrNotFound is returned by Get when a key does not exist.
var ErrNotFound = errors.New("storage: not found")

// ErrStopScan may be returned by a Scan callback to end the scan early;
// Scan then returns nil.
var ErrStopScan = errors.New("storage: stop scan")

// Reader reads keys from one consistent view of the state: a live
// database, an open snapshot or a batch that is being built.
type Reader interface {
	// Get returns a copy of the value stored under key, or ErrNotFound.
	Get(key []byte) ([]byte, error)

	// Scan calls fn for each key in [lower, upper), in ascending order, or
	// descending when reverse is set. A nil upper means no upper bound. The
	// key and value passed to fn are only valid during the call. If fn
	// returns ErrStopScan the scan ends and Scan returns nil; any other
	// error ends the scan and is returned.
	Scan(lower, upper []byte, reverse bool, fn func(key, value []byte) error) error
}

// ReadWriter is a Reader that can also change the state. Writes become
// visible to its own reads at once and to others when it is committed.
type ReadWriter interface {
	Reader

	// Set stores value under key. Both slices may be reused by the caller
	// once Set returns.
	Set(key, value []byte) error

	// Delete removes key; deleting a missing key is not an error.
	Delete(key []byte) error
}

// PrefixEnd returns the smallest key greater than every key that starts
// with prefix, for use as an exclusive upper bound; nil if there is none.
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
