// Package comments is the threaded-comments domain of the state machine:
// comments on any named thread, replies to any depth, per-user votes and
// likes, reply and descendant counts, and one secondary index per listing
// order so that a page of a listing reads a single key range.
//
// # Writes
//
// The API layer builds a command (CreateCommand, EditCommand,
// DeleteCommand, VoteCommand, LikeCommand), turns it into an operation code
// and a JSON payload with Encode (which validates it first) and proposes it
// to Raft under fsm.DomainComments. Every node then applies it with
// Domain.Apply. The command's time is the leader's stamp in fsm.Request.Time;
// nothing in this package reads a clock or draws a random number.
//
// # Identifiers
//
// A comment id is a positive decimal integer without leading zeros ("1",
// "2", ...), assigned in Apply from a persistent counter: ids increase
// strictly with creation order (the Raft log order) and are never reused.
// A string that is not such a number names no comment (CodeNotFound).
//
// # Limits
//
//   - thread name: 1 to 256 bytes of valid UTF-8 (MaxThreadLen)
//   - author and user ids: 1 to 128 bytes of valid UTF-8 (MaxUserLen)
//   - body: 1 to 10,000 bytes of valid UTF-8 (MaxBodyLen)
//   - listing limit: 1 to 100, default 25 (MaxLimit, DefaultLimit)
//   - nesting: up to 100 replies per comment (MaxLimit) down to 10 levels
//     (MaxNestDepth), at most 1,000 nested comments in one page
//     (MaxNestedComments)
//
// A value outside these limits is rejected with CodeInvalid; nothing is
// written.
//
// # Deleted comments
//
// Deleting a comment keeps its place in every listing, its replies, its
// votes and likes, and it still counts in its parent's reply_count and in
// every ancestor's descendant_count: as on Reddit, a reader sees a
// "[deleted]" entry with its replies under it, and the counts agree with
// what can be listed. A deleted comment shows an empty body and author and
// "deleted": true; its body is erased from storage. It cannot be edited,
// replied to, voted on or liked (CodeConflict). Deleting it again is
// harmless: the author gets the deleted comment back and nothing changes;
// anyone else still gets CodeForbidden.
//
// # Listing orders
//
// Every order breaks ties by comment id, ascending.
//
//   - new: created time, newest first
//   - old: created time, oldest first
//   - top: upvotes - downvotes, highest first
//   - replies: reply_count (direct replies), highest first
//   - best: the lower bound of the Wilson score interval of the share of
//     upvotes at 80 % confidence (z = 1.281551565545), highest first; 0
//     with no votes. It is computed in float64 with every product rounded
//     on its own (no fused multiply-add), so it is bit-identical on every
//     platform, and it is returned as "best".
//   - controversial: Reddit's (upvotes+downvotes)^(min/max), where min and
//     max are the smaller and larger of the two counts, highest first; 0
//     when either count is 0. Because a power is not reproducible bit for
//     bit across platforms, the index holds its base-2 logarithm,
//     (min/max)·log2(upvotes+downvotes), in integer fixed point with 32
//     fractional bits: the same order, computed with integers only. Scores
//     closer than that resolution tie and fall back to the id.
//
// A listing returns top-level comments of a thread or direct replies of one
// comment, a page at a time. The cursor in a page is opaque: it holds the
// position of the last comment returned, and the next page starts strictly
// after that position. A comment whose position did not change is therefore
// never repeated nor skipped, whatever else changes meanwhile; a comment
// that moved across the position may be seen twice or not at all. Cursors
// are the same on every node.
package comments
