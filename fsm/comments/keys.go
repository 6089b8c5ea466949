package comments

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Key layout. Every key of the domain starts with keyPrefix; integers are
// 8-byte big-endian so that byte order is numeric order.
//
//	comments/seq                              last assigned comment id
//	comments/c/<id>                           comment record (see record)
//	comments/t/<thread>                       thread record (see threadRecord)
//	comments/v/<id><user>                     'u' or 'd': user's vote
//	comments/l/<id><user>                     empty: user likes the comment
//	comments/i/<scope><order><sortkey><id>    empty: one listing entry
//
// A scope is uvarint(len(thread)) thread <parent id>, with parent id 0 for
// the top level of the thread: it is prefix-free, so the entries of one
// (thread, parent, order) are exactly one key range, and the thread comes
// first so that a future split of the key space by thread keeps a thread's
// listings together. Every sort key is 8 bytes and ascending byte order is
// the listing order; the id after it breaks ties in ascending order.
const keyPrefix = "comments/"

var (
	seqKey          = []byte(keyPrefix + "seq")
	commentPrefix   = []byte(keyPrefix + "c/")
	threadKeyPrefix = []byte(keyPrefix + "t/")
	votePrefix      = []byte(keyPrefix + "v/")
	likePrefix      = []byte(keyPrefix + "l/")
	indexPrefix     = []byte(keyPrefix + "i/")
)

// Listing orders as the user names them.
const (
	SortNew           = "new"
	SortOld           = "old"
	SortTop           = "top"
	SortReplies       = "replies"
	SortBest          = "best"
	SortControversial = "controversial"
)

// DefaultSort is the order of a Query whose Sort is empty, as on Reddit.
const DefaultSort = SortBest

// order is a listing order as stored: its byte in index keys.
type order byte

const (
	orderNew           order = 'n'
	orderOld           order = 'o'
	orderTop           order = 't'
	orderReplies       order = 'r'
	orderBest          order = 'b'
	orderControversial order = 'c'
)

// orders lists every order, in the order their index keys are written.
var orders = [...]order{
	orderNew, orderOld, orderTop, orderReplies, orderBest, orderControversial,
}

// Sorts returns the names of the listing orders.
func Sorts() []string {
	return []string{SortNew, SortOld, SortTop, SortReplies, SortBest, SortControversial}
}

// parseSort maps a sort name to its order.
func parseSort(s string) (order, bool) {
	switch s {
	case SortNew:
		return orderNew, true
	case SortOld:
		return orderOld, true
	case SortTop:
		return orderTop, true
	case SortReplies:
		return orderReplies, true
	case SortBest:
		return orderBest, true
	case SortControversial:
		return orderControversial, true
	}
	return 0, false
}

func commentKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), commentPrefix...), id)
}

func threadKey(thread string) []byte {
	return append(append([]byte(nil), threadKeyPrefix...), thread...)
}

func voteKey(id uint64, user string) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), votePrefix...), id)
	return append(k, user...)
}

func likeKey(id uint64, user string) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), likePrefix...), id)
	return append(k, user...)
}

// appendScope appends the scope of the children of parent in thread
// (parent 0: the top level).
func appendScope(dst []byte, thread string, parent uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(thread)))
	dst = append(dst, thread...)
	return binary.BigEndian.AppendUint64(dst, parent)
}

// scopeKey returns the prefix of all index entries of one order in the
// scope of (thread, parent).
func scopeKey(thread string, parent uint64, o order) []byte {
	k := appendScope(append([]byte(nil), indexPrefix...), thread, parent)
	return append(k, byte(o))
}

// positionLen is the length of a position within a scope: sort key and id.
const positionLen = 16

// indexKey returns the index entry of rec in order o.
func indexKey(rec *record, o order) []byte {
	k := scopeKey(rec.thread, rec.parent, o)
	k = binary.BigEndian.AppendUint64(k, sortKey(rec, o))
	return binary.BigEndian.AppendUint64(k, rec.id)
}

// sortKey returns the 8-byte sort key of rec in order o, such that
// ascending keys are the listing order.
func sortKey(rec *record, o order) uint64 {
	switch o {
	case orderNew:
		return ^ascInt(rec.created)
	case orderOld:
		return ascInt(rec.created)
	case orderTop:
		return ^ascInt(rec.score())
	case orderReplies:
		return ^rec.replies
	case orderBest:
		return ^ascFloat(wilsonLowerBound(rec.ups, rec.downs))
	case orderControversial:
		return ^controversy(rec.ups, rec.downs)
	}
	panic(fmt.Sprintf("comments: unknown order %q", byte(o)))
}

// ascInt maps a signed integer to an unsigned one of the same order.
func ascInt(v int64) uint64 { return uint64(v) ^ 1<<63 }

// ascFloat maps a float64 that is not NaN to an unsigned integer of the
// same order; -0 and +0 map alike.
func ascFloat(f float64) uint64 {
	if f == 0 {
		f = 0 // -0 is +0
	}
	b := math.Float64bits(f)
	if b>>63 != 0 {
		return ^b
	}
	return b | 1<<63
}
