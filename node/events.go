package node

import (
	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/internal/lock"
)

// broker fans committed events out to subscribers without ever blocking
// the apply goroutine: a subscriber whose buffer is full is dropped (its
// channel closed) and must catch up from the state.
type broker struct {
	mu     lock.Mutex
	next   int
	subs   map[int]subscriber
	closed bool
}

type subscriber struct {
	domain fsm.DomainID
	ch     chan fsm.Event
}

func newBroker() *broker { return &broker{subs: map[int]subscriber{}} }

func (b *broker) subscribe(domain fsm.DomainID, buffer int) (<-chan fsm.Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan fsm.Event, buffer)
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	id := b.next
	b.next++
	b.subs[id] = subscriber{domain: domain, ch: ch}
	return ch, func() { b.drop(id) }
}

func (b *broker) drop(id int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.subs[id]; ok {
		delete(b.subs, id)
		close(s.ch)
	}
}

// publish runs on the apply goroutine.
func (b *broker) publish(events []fsm.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.subs {
		for _, e := range events {
			if e.Domain != s.domain {
				continue
			}
			select {
			case s.ch <- e:
			default:
				delete(b.subs, id)
				close(s.ch)
			}
			if _, ok := b.subs[id]; !ok {
				break
			}
		}
	}
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for id, s := range b.subs {
		delete(b.subs, id)
		close(s.ch)
	}
}
