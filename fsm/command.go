package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// CommandVersion is the envelope format this build writes. A node refuses
// to apply a command of a newer version than it knows, rather than guess.
const CommandVersion = 1

// maxIdempotencyKey bounds the client-chosen key stored with a result.
const maxIdempotencyKey = 128

// ErrBadCommand is returned when an encoded command cannot be decoded.
var ErrBadCommand = errors.New("fsm: malformed command")

// Command is the envelope of every entry shoal proposes to Raft. The
// leader fills in Time before proposing, so that applying a command never
// needs a clock.
//
// Encoding (version 1): version byte, domain byte, op byte, time as
// big-endian int64 Unix nanoseconds, idempotency key as uvarint length and
// bytes, then the domain payload up to the end.
type Command struct {
	Domain DomainID
	Op     uint8

	// Time is the leader's clock at proposal, in Unix nanoseconds.
	Time int64

	// IdempotencyKey, when set, makes a repeated command return the result
	// of the first one with that key instead of applying again, for the
	// state machine's idempotency window of leader time (a day by
	// default); a repeat after the window is applied anew.
	IdempotencyKey string

	// Payload is the domain's encoding of the operation.
	Payload []byte
}

// MarshalBinary encodes the command in the current envelope version.
func (c *Command) MarshalBinary() ([]byte, error) {
	if len(c.IdempotencyKey) > maxIdempotencyKey {
		return nil, Errorf(CodeInvalid, "idempotency key is %d bytes, at most %d allowed",
			len(c.IdempotencyKey), maxIdempotencyKey)
	}
	buf := make([]byte, 0, 11+binary.MaxVarintLen64+len(c.IdempotencyKey)+len(c.Payload))
	buf = append(buf, CommandVersion, byte(c.Domain), c.Op)
	buf = binary.BigEndian.AppendUint64(buf, uint64(c.Time))
	buf = binary.AppendUvarint(buf, uint64(len(c.IdempotencyKey)))
	buf = append(buf, c.IdempotencyKey...)
	buf = append(buf, c.Payload...)
	return buf, nil
}

// UnmarshalBinary decodes a command. The payload aliases data.
func (c *Command) UnmarshalBinary(data []byte) error {
	if len(data) < 11 {
		return fmt.Errorf("%w: %d bytes is shorter than the header", ErrBadCommand, len(data))
	}
	if data[0] != CommandVersion {
		return fmt.Errorf("%w: version %d, this build knows %d", ErrBadCommand, data[0],
			CommandVersion)
	}
	c.Domain = DomainID(data[1])
	c.Op = data[2]
	c.Time = int64(binary.BigEndian.Uint64(data[3:11]))

	rest := data[11:]
	keyLen, n := binary.Uvarint(rest)
	if n <= 0 || keyLen > maxIdempotencyKey || keyLen > uint64(len(rest)-n) {
		return fmt.Errorf("%w: bad idempotency key length", ErrBadCommand)
	}
	rest = rest[n:]
	c.IdempotencyKey = string(rest[:keyLen])
	c.Payload = rest[keyLen:]
	return nil
}

// Stamp returns the leader time of the command.
func (c *Command) Stamp() time.Time { return time.Unix(0, c.Time).UTC() }
