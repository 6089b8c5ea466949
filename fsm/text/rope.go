package text

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxChunk is the most bytes of text one node of a Rope holds. Small enough
// that copying a chunk to edit it is cheap, large enough that a document of
// a megabyte is a tree of a few thousand nodes.
const maxChunk = 512

// buildChunk is the most bytes of a chunk made from a long text. It leaves
// room for typing into the chunk without cutting it in two.
const buildChunk = maxChunk * 3 / 4

// Rope is a document held as a balanced tree of text chunks of at most 512
// bytes each, every node knowing the code points and bytes below it.
// Applying an op costs time proportional to the op's number of components
// times the logarithm of the document's size, plus the length of the text
// it inserts: a retain only moves a cursor, an insert or delete touches one
// path of the tree. Len is constant time; String and Slice are linear in
// what they return.
//
// The tree is a treap whose priorities come from a counter run through a
// hash, never from a random source, so the same calls always build the same
// tree. The zero value is an empty document ready to use. A Rope is not
// safe for concurrent use: the caller serializes all calls, reads included,
// or gives each goroutine its own Rope.
type Rope struct {
	root *ropeNode

	// nodes counts the nodes ever made; its hash is the next priority.
	nodes uint64

	// path is scratch space for the nodes from the root down to the one an
	// in-place edit changes.
	path []*ropeNode
}

// ropeNode is one chunk of text in a Rope, with its subtree.
type ropeNode struct {
	left, right *ropeNode
	priority    uint64 // no child has a higher one

	chunk string // never empty
	runes int    // code points in chunk

	sumRunes int // code points in the subtree
	sumBytes int // bytes in the subtree
}

// NewRope returns a rope holding s. s should be valid UTF-8; each byte of
// an invalid sequence becomes one U+FFFD, as with Apply, so that Len counts
// the same code points Apply does.
func NewRope(s string) *Rope {
	if !utf8.ValidString(s) {
		s = replaceInvalid(s)
	}

	r := &Rope{}
	r.root = r.build(s)
	return r
}

// Len returns the length of the document in code points.
func (r *Rope) Len() int { return r.root.size() }

// String returns the whole document.
func (r *Rope) String() string {
	if r.root == nil {
		return ""
	}

	var out strings.Builder
	out.Grow(r.root.sumBytes)
	r.root.appendAll(&out)
	return out.String()
}

// Slice returns the code points from start up to but not including end. Like
// slicing a string it panics unless 0 <= start <= end <= Len().
func (r *Rope) Slice(start, end int) string {
	if start < 0 || end < start || end > r.Len() {
		panic(fmt.Sprintf("text: Rope.Slice(%d, %d) out of range for length %d",
			start, end, r.Len()))
	}

	var out strings.Builder
	r.root.appendRange(&out, start, end)
	return out.String()
}

// Apply edits the document with op. If the document does not have
// op.BaseLen() code points it returns an error wrapping ErrLengthMismatch
// and leaves the document unchanged; it cannot fail otherwise.
func (r *Rope) Apply(op Op) error {
	if docLen := r.Len(); docLen != op.baseLen {
		return lengthMismatch(op, docLen)
	}

	at := 0
	for _, c := range op.comps {
		switch c.kind() {
		case kindRetain:
			at += c.Retain
		case kindDelete:
			r.delete(at, c.Delete)
		case kindInsert:
			n := utf8.RuneCountInString(c.Insert)
			r.insert(at, c.Insert, n)
			at += n
		}
	}
	return nil
}

// insert puts s, of n code points, at code point at.
func (r *Rope) insert(at int, s string, n int) {
	if r.insertInPlace(at, s, n) {
		return
	}

	left, right := r.split(r.root, at)
	left = r.join(left, r.build(s))
	r.root = r.join(left, right)
}

// delete removes n code points from code point at on.
func (r *Rope) delete(at, n int) {
	if r.deleteInPlace(at, n) {
		return
	}

	left, rest := r.split(r.root, at)
	_, right := r.split(rest, n)
	r.root = r.join(left, right)
}

// insertInPlace puts s, of n code points, at code point at into the chunk
// there if it has room, preferring the chunk that ends at at, and reports
// whether it did. This is the common case of typing.
func (r *Rope) insertInPlace(at int, s string, n int) bool {
	r.path = r.path[:0]
	node, k := r.root, at
	for node != nil {
		r.path = append(r.path, node)
		leftLen := node.left.size()
		if k < leftLen || (k == leftLen && node.left != nil) {
			node = node.left
			continue
		}
		k -= leftLen
		if k <= node.runes {
			break
		}
		k -= node.runes
		node = node.right
	}
	if node == nil || len(node.chunk)+len(s) > maxChunk {
		return false
	}

	off := runeOffset(node.chunk, k)
	node.chunk = node.chunk[:off] + s + node.chunk[off:]
	node.runes += n
	for _, p := range r.path {
		p.sumRunes += n
		p.sumBytes += len(s)
	}
	clear(r.path)
	return true
}

// deleteInPlace removes n code points from code point at on if they lie
// inside one chunk and are not all of it, and reports whether it did. This
// is the common case of deleting a selection or a character.
func (r *Rope) deleteInPlace(at, n int) bool {
	r.path = r.path[:0]
	node, k := r.root, at
	for node != nil {
		r.path = append(r.path, node)
		leftLen := node.left.size()
		if k < leftLen {
			node = node.left
			continue
		}
		k -= leftLen
		if k < node.runes {
			break
		}
		k -= node.runes
		node = node.right
	}
	if node == nil || n >= node.runes || k+n > node.runes {
		return false
	}

	start := runeOffset(node.chunk, k)
	end := start + runeOffset(node.chunk[start:], n)
	node.chunk = node.chunk[:start] + node.chunk[end:]
	node.runes -= n
	for _, p := range r.path {
		p.sumRunes -= n
		p.sumBytes -= end - start
	}
	clear(r.path)
	return true
}

// newNode returns a node holding chunk, of n code points, with the next
// priority.
func (r *Rope) newNode(chunk string, n int) *ropeNode {
	r.nodes++
	return &ropeNode{
		priority: mix64(r.nodes),
		chunk:    chunk,
		runes:    n,
		sumRunes: n,
		sumBytes: len(chunk),
	}
}

// mix64 is the finalizer of SplitMix64: it spreads a counter's bits over
// the whole word, which is all a treap needs of its priorities.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// build returns a tree holding s: one chunk if it fits, else chunks of at
// most buildChunk bytes cut at code point boundaries.
func (r *Rope) build(s string) *ropeNode {
	var tree *ropeNode
	for len(s) > 0 {
		cut := len(s)
		if cut > maxChunk {
			cut = buildChunk
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			if cut == 0 {
				cut = buildChunk
			}
		}

		chunk := s[:cut]
		tree = merge(tree, r.newNode(chunk, utf8.RuneCountInString(chunk)))
		s = s[cut:]
	}
	return tree
}

// split cuts tree into the first k code points and the rest, cutting a
// chunk in two if k falls inside it.
func (r *Rope) split(tree *ropeNode, k int) (left, right *ropeNode) {
	left, right = splitNodes(tree, k)

	// The chunk k falls inside, if any, ended up last in left: it keeps its
	// head, and a new node with the tail goes first in right. Making the
	// node here rather than inside splitNodes keeps its fresh priority from
	// landing under a parent of a lower one.
	over := left.size() - k
	if over == 0 {
		return left, right
	}

	last := left
	for last.right != nil {
		last = last.right
	}
	keep := last.runes - over
	off := runeOffset(last.chunk, keep)
	tail := r.newNode(last.chunk[off:], over)
	last.chunk, last.runes = last.chunk[:off], keep
	for p := left; p != nil; p = p.right {
		p.sumRunes -= over
		p.sumBytes -= len(tail.chunk)
	}
	return left, merge(tail, right)
}

// splitNodes cuts tree into the nodes whose chunks start before code point
// k and the rest.
func splitNodes(tree *ropeNode, k int) (left, right *ropeNode) {
	if tree == nil {
		return nil, nil
	}

	leftLen := tree.left.size()
	if k <= leftLen {
		left, tree.left = splitNodes(tree.left, k)
		tree.update()
		return left, tree
	}
	tree.right, right = splitNodes(tree.right, k-leftLen-tree.runes)
	tree.update()
	return tree, right
}

// join returns the tree of left followed by right, making the two chunks
// that meet one if they fit in one. Joining at every edit keeps a document
// that is typed one character at a time from becoming a tree of tiny
// chunks.
func (r *Rope) join(left, right *ropeNode) *ropeNode {
	if left == nil {
		return right
	}
	if right == nil {
		return left
	}

	last := left
	for last.right != nil {
		last = last.right
	}
	first := right
	for first.left != nil {
		first = first.left
	}

	if len(last.chunk)+len(first.chunk) <= maxChunk {
		right = removeFirst(right, first)
		last.chunk += first.chunk
		last.runes += first.runes
		for p := left; p != nil; p = p.right {
			p.sumRunes += first.runes
			p.sumBytes += len(first.chunk)
		}
	}
	return merge(left, right)
}

// removeFirst returns tree without its first node, first.
func removeFirst(tree, first *ropeNode) *ropeNode {
	if tree == first {
		return first.right
	}

	for p := tree; ; p = p.left {
		p.sumRunes -= first.runes
		p.sumBytes -= len(first.chunk)
		if p.left == first {
			p.left = first.right
			return tree
		}
	}
}

// merge returns the tree of left followed by right.
func merge(left, right *ropeNode) *ropeNode {
	if left == nil {
		return right
	}
	if right == nil {
		return left
	}

	if left.priority >= right.priority {
		left.right = merge(left.right, right)
		left.update()
		return left
	}
	right.left = merge(left, right.left)
	right.update()
	return right
}

// size returns the code points in the subtree; nil is empty.
func (n *ropeNode) size() int {
	if n == nil {
		return 0
	}
	return n.sumRunes
}

// update recomputes the node's sums from its chunk and children.
func (n *ropeNode) update() {
	n.sumRunes, n.sumBytes = n.runes, len(n.chunk)
	if n.left != nil {
		n.sumRunes += n.left.sumRunes
		n.sumBytes += n.left.sumBytes
	}
	if n.right != nil {
		n.sumRunes += n.right.sumRunes
		n.sumBytes += n.right.sumBytes
	}
}

// appendAll writes the subtree's text to out.
func (n *ropeNode) appendAll(out *strings.Builder) {
	for ; n != nil; n = n.right {
		n.left.appendAll(out)
		out.WriteString(n.chunk)
	}
}

// appendRange writes the code points from start up to end of the subtree
// to out.
func (n *ropeNode) appendRange(out *strings.Builder, start, end int) {
	for n != nil && start < end {
		leftLen := n.left.size()
		if start < leftLen {
			n.left.appendRange(out, start, min(end, leftLen))
		}

		from, to := max(start-leftLen, 0), min(end-leftLen, n.runes)
		if from < to {
			off := runeOffset(n.chunk, from)
			out.WriteString(n.chunk[off : off+runeOffset(n.chunk[off:], to-from)])
		}

		skip := leftLen + n.runes
		start, end = max(start-skip, 0), end-skip
		n = n.right
	}
}
