package text

import "container/list"

// ropeCache keeps the ropes of recently edited documents, least recently
// used first out, within a bound on their number and total length. It is
// used from the apply goroutine only and needs no lock. What it holds is
// derived from storage and never decides anything: a document missing from
// it is rebuilt, one at the wrong revision is dropped.
type ropeCache struct {
	maxDocs int
	maxLen  int

	length int        // code points over all cached ropes
	order  *list.List // of *cachedDoc, most recently used first
	docs   map[string]*list.Element
}

// cachedDoc is one cached document: its rope at revision rev.
type cachedDoc struct {
	id     string
	rope   *Rope
	rev    uint64
	length int // rope.Len() when last counted in ropeCache.length
}

func newRopeCache(maxDocs, maxLen int) *ropeCache {
	return &ropeCache{maxDocs: maxDocs, maxLen: maxLen, order: list.New(),
		docs: map[string]*list.Element{}}
}

// get returns the cached document id, marking it used, or nil.
func (c *ropeCache) get(id string) *cachedDoc {
	elem, ok := c.docs[id]
	if !ok {
		return nil
	}
	c.order.MoveToFront(elem)
	return elem.Value.(*cachedDoc)
}

// put caches rope as document id at revision rev and returns its entry,
// evicting others if the cache is over its bounds.
func (c *ropeCache) put(id string, rope *Rope, rev uint64) *cachedDoc {
	c.drop(id)
	doc := &cachedDoc{id: id, rope: rope, rev: rev, length: rope.Len()}
	c.docs[id] = c.order.PushFront(doc)
	c.length += doc.length
	c.evict()
	return doc
}

// applied records that doc's rope was edited to revision rev.
func (c *ropeCache) applied(doc *cachedDoc, rev uint64) {
	doc.rev = rev
	n := doc.rope.Len()
	c.length += n - doc.length
	doc.length = n
	c.evict()
}

// evict drops least recently used documents until the cache is within its
// bounds, keeping the most recently used one whatever its size.
func (c *ropeCache) evict() {
	for c.order.Len() > 1 && (c.order.Len() > c.maxDocs || c.length > c.maxLen) {
		c.remove(c.order.Back())
	}
}

// drop forgets document id.
func (c *ropeCache) drop(id string) {
	if elem, ok := c.docs[id]; ok {
		c.remove(elem)
	}
}

func (c *ropeCache) remove(elem *list.Element) {
	doc := c.order.Remove(elem).(*cachedDoc)
	delete(c.docs, doc.id)
	c.length -= doc.length
}

// clear forgets every document.
func (c *ropeCache) clear() {
	c.order.Init()
	clear(c.docs)
	c.length = 0
}
