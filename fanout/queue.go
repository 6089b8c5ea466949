package fanout

import "github.com/shoal-db/shoal/internal/lock"

// queue is a bounded FIFO of messages that drops its oldest message to
// make room for a new one. One goroutine pushes and one takes.
type queue struct {
	mu    lock.Mutex
	buf   []message // ring of capacity len(buf)
	head  int       // index of the oldest message
	count int

	// ready has a value whenever messages may be waiting.
	ready chan struct{}
}

func newQueue(capacity int) *queue {
	return &queue{buf: make([]message, capacity), ready: make(chan struct{}, 1)}
}

// push appends m and returns the message it dropped to make room, if any.
func (q *queue) push(m message) *message {
	q.mu.Lock()
	var dropped *message
	if q.count == len(q.buf) {
		old := q.buf[q.head]
		dropped = &old
		q.buf[q.head] = message{}
		q.head = (q.head + 1) % len(q.buf)
		q.count--
	}
	q.buf[(q.head+q.count)%len(q.buf)] = m
	q.count++
	q.mu.Unlock()

	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

// take appends up to n of the oldest messages to out, removing them.
func (q *queue) take(out []message, n int) []message {
	q.mu.Lock()
	defer q.mu.Unlock()
	for ; n > 0 && q.count > 0; n-- {
		out = append(out, q.buf[q.head])
		q.buf[q.head] = message{}
		q.head = (q.head + 1) % len(q.buf)
		q.count--
	}
	return out
}

// len returns the number of messages waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}
