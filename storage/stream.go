package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// The snapshot stream holds every key and value of a state snapshot:
//
//	magic "SHOALSNP", format version (1 byte)
//	per entry: frameEntry, uvarint len(key), key, uvarint len(value), value
//	frameEnd
//	CRC-32C of all the bytes above, big-endian uint32
const (
	snapshotMagic   = "SHOALSNP"
	snapshotVersion = 1

	frameEntry byte = 1
	frameEnd   byte = 0

	streamBufferSize = 256 << 10
)

// ErrBadSnapshot is returned by Restore for a stream that is truncated,
// corrupt, of an unknown format or could not be read.
var ErrBadSnapshot = errors.New("storage: bad snapshot stream")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteTo streams every key and value of the snapshot to w in the snapshot
// stream format that Restore reads, and returns the number of bytes
// written.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	counter := &countingWriter{w: w}
	out := &checksumWriter{w: bufio.NewWriterSize(counter, streamBufferSize)}

	if err := out.write(append([]byte(snapshotMagic), snapshotVersion)); err != nil {
		return counter.n, err
	}

	var frame []byte
	err := sn.Scan(nil, nil, false, func(key, value []byte) error {
		frame = appendEntry(append(frame[:0], frameEntry), key, value)
		return out.write(frame)
	})
	if err != nil {
		return counter.n, err
	}

	if err := out.write([]byte{frameEnd}); err != nil {
		return counter.n, err
	}
	if _, err := out.w.Write(binary.BigEndian.AppendUint32(nil, out.sum)); err != nil {
		return counter.n, err
	}
	err = out.w.Flush()
	return counter.n, err
}

// appendEntry appends key and value to buf, each preceded by its length.
func appendEntry(buf, key, value []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(key)))
	buf = append(buf, key...)
	buf = binary.AppendUvarint(buf, uint64(len(value)))
	return append(buf, value...)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// checksumWriter writes to w and keeps the CRC-32C of what it wrote.
type checksumWriter struct {
	w   *bufio.Writer
	sum uint32
}

func (c *checksumWriter) write(p []byte) error {
	c.sum = crc32.Update(c.sum, castagnoli, p)
	_, err := c.w.Write(p)
	return err
}

// snapshotReader reads the entries of a snapshot stream and checks its
// checksum at the end.
type snapshotReader struct {
	r     *bufio.Reader
	sum   uint32
	one   [1]byte
	key   []byte
	value []byte
}

// newSnapshotReader reads and checks the header of the stream in r.
func newSnapshotReader(r io.Reader) (*snapshotReader, error) {
	sr := &snapshotReader{r: bufio.NewReaderSize(r, streamBufferSize)}

	header := make([]byte, len(snapshotMagic)+1)
	if err := sr.readFull(header); err != nil {
		return nil, err
	}
	if string(header[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: no snapshot header", ErrBadSnapshot)
	}
	if version := header[len(snapshotMagic)]; version != snapshotVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrBadSnapshot, version)
	}
	return sr, nil
}

// next returns the next key and value, valid until the following call. At
// the end of a stream whose checksum matches it returns io.EOF.
func (sr *snapshotReader) next() (key, value []byte, err error) {
	tag, err := sr.ReadByte()
	if err != nil {
		return nil, nil, streamError(err)
	}

	switch tag {
	case frameEntry:
	case frameEnd:
		return nil, nil, sr.verify()
	default:
		return nil, nil, fmt.Errorf("%w: unknown frame %#x", ErrBadSnapshot, tag)
	}

	if sr.key, err = sr.readBytes(sr.key); err != nil {
		return nil, nil, err
	}
	if sr.value, err = sr.readBytes(sr.value); err != nil {
		return nil, nil, err
	}
	return sr.key, sr.value, nil
}

// verify compares the checksum that ends the stream with the one computed.
func (sr *snapshotReader) verify() error {
	var want [4]byte
	if _, err := io.ReadFull(sr.r, want[:]); err != nil {
		return streamError(err)
	}
	if binary.BigEndian.Uint32(want[:]) != sr.sum {
		return fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	return io.EOF
}

// readBytes reads a length-prefixed byte string into buf. The length is
// trusted only as far as the stream really holds that many bytes.
func (sr *snapshotReader) readBytes(buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(sr)
	if err != nil {
		return buf, streamError(err)
	}
	if n > math.MaxUint32 {
		return buf, fmt.Errorf("%w: length %d out of range", ErrBadSnapshot, n)
	}

	buf = buf[:0]
	for remaining := int(n); remaining > 0; {
		chunk := min(remaining, streamBufferSize)
		buf = append(buf, make([]byte, chunk)...)
		if err := sr.readFull(buf[len(buf)-chunk:]); err != nil {
			return buf, err
		}
		remaining -= chunk
	}
	return buf, nil
}

// ReadByte reads one byte of the stream and adds it to the checksum.
func (sr *snapshotReader) ReadByte() (byte, error) {
	b, err := sr.r.ReadByte()
	if err == nil {
		sr.one[0] = b
		sr.sum = crc32.Update(sr.sum, castagnoli, sr.one[:])
	}
	return b, err
}

// readFull fills p from the stream and adds it to the checksum.
func (sr *snapshotReader) readFull(p []byte) error {
	if _, err := io.ReadFull(sr.r, p); err != nil {
		return streamError(err)
	}
	sr.sum = crc32.Update(sr.sum, castagnoli, p)
	return nil
}

// streamError reports a failure to read the stream as ErrBadSnapshot, with
// its cause.
func streamError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated", ErrBadSnapshot)
	}
	return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
}
