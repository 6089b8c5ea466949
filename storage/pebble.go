package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// NewPebbleLogger returns a pebble.Logger that writes Pebble's own log lines
// to logger with component=pebble: Infof at Debug level, Errorf at Error.
// Fatalf logs at Error and then panics, because Pebble expects it not to
// return.
func NewPebbleLogger(logger *slog.Logger) pebble.Logger {
	return pebbleLogger{logger: logger.With("component", "pebble")}
}

type pebbleLogger struct {
	logger *slog.Logger
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.logger.Debug(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.logger.Error(msg, "fatal", true)
	panic("pebble: " + msg)
}

// pebbleOptions returns the options of one of a node's databases. Pebble's
// event listener is left at its quiet default, which reports only
// background errors and corruption.
func pebbleOptions(logger *slog.Logger, cacheSize int64) *pebble.Options {
	return &pebble.Options{
		CacheSize:          cacheSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             NewPebbleLogger(logger),
	}
}

// openError describes a failure to open the Pebble database in dir. A
// lock held by another process (EAGAIN from flock) gets a message that
// says so instead of "resource temporarily unavailable".
func openError(what, dir string, err error) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("storage: %s %s is in use by another process "+
			"(is a node already running on this data directory?): %w", what, dir, err)
	}
	return fmt.Errorf("storage: open %s %s: %w", what, dir, err)
}

// get returns a copy of the value under key in r, or ErrNotFound. The copy
// is never nil, so an empty value is told apart from a missing one by the
// error alone.
func get(r pebble.Reader, key []byte) ([]byte, error) {
	value, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}

	defer closer.Close()
	return append(make([]byte, 0, len(value)), value...), nil
}

// scan implements Reader.Scan over r.
func scan(
	r pebble.Reader, lower, upper []byte, reverse bool, fn func(key, value []byte) error,
) error {
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return nil
	}

	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}

	err = iterate(iter, reverse, fn)
	if closeErr := iter.Close(); err == nil {
		err = closeErr
	}
	if errors.Is(err, ErrStopScan) {
		return nil
	}
	return err
}

// iterate calls fn for every entry of iter, in the direction asked for.
func iterate(iter *pebble.Iterator, reverse bool, fn func(key, value []byte) error) error {
	step, ok := iter.Next, iter.First()
	if reverse {
		step, ok = iter.Prev, iter.Last()
	}

	for ; ok; ok = step() {
		value, err := iter.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(iter.Key(), value); err != nil {
			return err
		}
	}
	return nil
}
