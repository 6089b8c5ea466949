package hottier

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tracker owns the dedicated invalidation connection: RESP3, with
// CLIENT TRACKING ON BCAST PREFIX, so Redis pushes the name of every key
// under the prefix that anyone changes, and a null list on FLUSHALL. It
// reconnects with backoff until stopped. Its callbacks run on its own
// goroutine, one at a time.
type tracker struct {
	addr   string
	prefix string
	ping   time.Duration
	logger *slog.Logger

	// up runs once the connection is subscribed; down when it is lost
	// (invalidations may have been missed from then on); keys with the
	// keys of one invalidation message, prefix removed; flushAll when
	// Redis dropped every key.
	up       func()
	down     func(err error)
	keys     func(keys []string)
	flushAll func()
}

// run keeps a subscribed connection until stop is closed.
func (t *tracker) run(stop <-chan struct{}) {
	backoff := 50 * time.Millisecond
	for {
		subscribed, err := t.session(stop)
		select {
		case <-stop:
			return
		default:
		}
		if subscribed {
			t.down(err)
			backoff = 50 * time.Millisecond
		}
		select {
		case <-stop:
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// session dials, subscribes and reads pushes until the connection fails.
// subscribed says whether it got as far as calling up.
//
// TODO(hottier): no AUTH or TLS, here or on the data client; a Redis that
// needs either cannot be used yet.
func (t *tracker) session(stop <-chan struct{}) (subscribed bool, err error) {
	conn, err := net.DialTimeout("tcp", t.addr, time.Second)
	if err != nil {
		return false, err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		conn.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		select {
		case <-stop:
			conn.Close()
		case <-done:
		}
	})

	r := bufio.NewReader(conn)
	timeout := 3 * t.ping
	command := func(args ...string) (any, error) {
		_ = conn.SetDeadline(time.Now().Add(timeout))
		if _, err := conn.Write(encodeCommand(args...)); err != nil {
			return nil, err
		}
		for {
			v, err := readRESP(r)
			if err != nil {
				return nil, err
			}
			if _, isPush := v.(respPush); !isPush {
				return v, respErr(v)
			}
		}
	}
	if _, err := command("HELLO", "3"); err != nil {
		return false, fmt.Errorf("hottier: HELLO 3 (Redis 6 or newer is needed): %w", err)
	}
	if _, err := command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", t.prefix); err != nil {
		return false, fmt.Errorf("hottier: CLIENT TRACKING: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	t.up()

	// A ping keeps proving the connection alive; any frame resets the
	// read deadline, so a silent connection counts as lost.
	wg.Go(func() {
		ticker := time.NewTicker(t.ping)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				_ = conn.SetWriteDeadline(time.Now().Add(timeout))
				if _, err := conn.Write(encodeCommand("PING")); err != nil {
					return
				}
			}
		}
	})
	for {
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		v, err := readRESP(r)
		if err != nil {
			return true, err
		}
		push, ok := v.(respPush)
		if !ok || len(push) < 2 || push[0] != "invalidate" {
			continue // a PONG, or a push of another kind
		}
		switch keys := push[1].(type) {
		case nil:
			t.flushAll()
		case []any:
			names := make([]string, 0, len(keys))
			for _, k := range keys {
				if s, ok := k.(string); ok && strings.HasPrefix(s, t.prefix) {
					names = append(names, s[len(t.prefix):])
				}
			}
			t.keys(names)
		}
	}
}

// encodeCommand writes args as a RESP array of bulk strings.
func encodeCommand(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// respPush is a RESP3 push frame; respError an error reply.
type (
	respPush  []any
	respError string
)

func respErr(v any) error {
	if e, ok := v.(respError); ok {
		return errors.New(string(e))
	}
	return nil
}

// maxRESPLength bounds one frame's declared length.
const maxRESPLength = 512 << 20

// readRESP reads one RESP2 or RESP3 value: strings and numbers as string,
// arrays, sets and maps as []any (a map as alternating keys and values),
// nulls as nil, errors as respError and pushes as respPush.
func readRESP(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return nil, errors.New("hottier: empty RESP line")
	}
	kind, rest := line[0], line[1:]
	length := func() (int, error) {
		n, err := strconv.Atoi(rest)
		if err != nil || n > maxRESPLength {
			return 0, fmt.Errorf("hottier: bad RESP length %q", rest)
		}
		return n, nil
	}
	switch kind {
	case '+', ':', '#', ',', '(':
		return rest, nil
	case '-':
		return respError(rest), nil
	case '_':
		return nil, nil
	case '$', '=', '!':
		n, err := length()
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if kind == '!' {
			return respError(buf[:n]), nil
		}
		return string(buf[:n]), nil
	case '*', '~', '>', '%', '|':
		n, err := length()
		if err != nil || n < 0 {
			return nil, err
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		items := make([]any, 0, min(n, 1024))
		for range n {
			v, err := readRESP(r)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		switch kind {
		case '>':
			return respPush(items), nil
		case '|':
			// An attribute annotates the value that follows it.
			return readRESP(r)
		}
		return items, nil
	}
	return nil, fmt.Errorf("hottier: unknown RESP type %q", kind)
}
