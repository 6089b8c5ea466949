package comments

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/shoal-db/shoal/fsm"
)

// Operation codes of the comments domain. They are part of the log format:
// never renumber one.
const (
	OpCreate uint8 = 1 // CreateCommand
	OpEdit   uint8 = 2 // EditCommand
	OpDelete uint8 = 3 // DeleteCommand
	OpVote   uint8 = 4 // VoteCommand
	OpLike   uint8 = 5 // LikeCommand
)

// Limits on the values of commands and queries.
const (
	MaxThreadLen = 256    // bytes of a thread name
	MaxUserLen   = 128    // bytes of an author or user id
	MaxBodyLen   = 10_000 // bytes of a comment body
)

// Values of VoteCommand.Vote.
const (
	VoteUp   = "up"
	VoteDown = "down"
	VoteNone = "none"
)

// Command is one of the commands of the comments domain: CreateCommand,
// EditCommand, DeleteCommand, VoteCommand or LikeCommand.
type Command interface {
	// Op returns the operation code the command is proposed under.
	Op() uint8

	// Validate checks what can be checked without the state: lengths,
	// UTF-8, id syntax, enumerations. It returns nil or an *fsm.Error.
	Validate() error
}

// CreateCommand adds a comment to Thread, as a reply to Parent when Parent
// is a comment id, or at the top level when it is empty. Its reply is the
// new Comment.
type CreateCommand struct {
	Thread string `json:"thread"`
	Parent string `json:"parent,omitempty"`
	Author string `json:"author"`
	Body   string `json:"body"`
}

// EditCommand replaces the body of comment ID. Only its author may edit it.
// Its reply is the edited Comment.
type EditCommand struct {
	ID     string `json:"id"`
	Author string `json:"author"`
	Body   string `json:"body"`
}

// DeleteCommand deletes comment ID. Only its author may delete it; deleting
// a deleted comment changes nothing. Its reply is the deleted Comment.
type DeleteCommand struct {
	ID     string `json:"id"`
	Author string `json:"author"`
}

// VoteCommand sets User's vote on comment ID to VoteUp, VoteDown or
// VoteNone. Its reply is the Comment with its new counts.
type VoteCommand struct {
	ID   string `json:"id"`
	User string `json:"user"`
	Vote string `json:"vote"`
}

// LikeCommand sets whether User likes comment ID. Its reply is the Comment
// with its new counts.
type LikeCommand struct {
	ID   string `json:"id"`
	User string `json:"user"`
	Like bool   `json:"like"`
}

// Op implements Command.
func (CreateCommand) Op() uint8 { return OpCreate }

// Op implements Command.
func (EditCommand) Op() uint8 { return OpEdit }

// Op implements Command.
func (DeleteCommand) Op() uint8 { return OpDelete }

// Op implements Command.
func (VoteCommand) Op() uint8 { return OpVote }

// Op implements Command.
func (LikeCommand) Op() uint8 { return OpLike }

// Validate implements Command.
func (c CreateCommand) Validate() error {
	if err := checkThread(c.Thread); err != nil {
		return err
	}
	if c.Parent != "" {
		if _, err := parseID(c.Parent); err != nil {
			return err
		}
	}
	if err := checkUser("author", c.Author); err != nil {
		return err
	}
	return checkBody(c.Body)
}

// Validate implements Command.
func (c EditCommand) Validate() error {
	if _, err := parseID(c.ID); err != nil {
		return err
	}
	if err := checkUser("author", c.Author); err != nil {
		return err
	}
	return checkBody(c.Body)
}

// Validate implements Command.
func (c DeleteCommand) Validate() error {
	if _, err := parseID(c.ID); err != nil {
		return err
	}
	return checkUser("author", c.Author)
}

// Validate implements Command.
func (c VoteCommand) Validate() error {
	if _, err := parseID(c.ID); err != nil {
		return err
	}
	if err := checkUser("user", c.User); err != nil {
		return err
	}
	if _, ok := parseVote(c.Vote); !ok {
		return fsm.Errorf(fsm.CodeInvalid, "vote must be %q, %q or %q, not %q",
			VoteUp, VoteDown, VoteNone, c.Vote)
	}
	return nil
}

// Validate implements Command.
func (c LikeCommand) Validate() error {
	if _, err := parseID(c.ID); err != nil {
		return err
	}
	return checkUser("user", c.User)
}

// Encode validates cmd and returns the operation code and payload to
// propose it under fsm.DomainComments. The error, if any, is the *fsm.Error
// of Validate or of checkNames. Encoding before validating would be wrong:
// JSON replaces invalid UTF-8 with U+FFFD, so Apply could not see it any
// more.
func Encode(cmd Command) (op uint8, payload []byte, err error) {
	if err := cmd.Validate(); err != nil {
		return 0, nil, err
	}
	if err := checkNames(cmd); err != nil {
		return 0, nil, err
	}
	payload, err = json.Marshal(cmd)
	if err != nil {
		// The commands hold strings and a bool only.
		panic(fmt.Sprintf("comments: encoding %T: %v", cmd, err))
	}
	return cmd.Op(), payload, nil
}

// Decode parses the payload of a command with operation code op and
// validates it. It returns an *fsm.Error for an unknown op or a payload
// that does not parse or validate.
func Decode(op uint8, payload []byte) (Command, error) {
	var cmd Command
	var err error
	switch op {
	case OpCreate:
		var c CreateCommand
		err = json.Unmarshal(payload, &c)
		cmd = c
	case OpEdit:
		var c EditCommand
		err = json.Unmarshal(payload, &c)
		cmd = c
	case OpDelete:
		var c DeleteCommand
		err = json.Unmarshal(payload, &c)
		cmd = c
	case OpVote:
		var c VoteCommand
		err = json.Unmarshal(payload, &c)
		cmd = c
	case OpLike:
		var c LikeCommand
		err = json.Unmarshal(payload, &c)
		cmd = c
	default:
		return nil, fsm.Errorf(fsm.CodeInvalid, "unknown comments operation %d", op)
	}
	if err != nil {
		return nil, fsm.Errorf(fsm.CodeInvalid, "malformed comments command: %v", err)
	}
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// checkThread checks a thread name against the limits.
func checkThread(thread string) error {
	switch {
	case thread == "":
		return fsm.Errorf(fsm.CodeInvalid, "thread must not be empty")
	case len(thread) > MaxThreadLen:
		return fsm.Errorf(fsm.CodeInvalid, "thread is %d bytes, more than %d",
			len(thread), MaxThreadLen)
	case !utf8.ValidString(thread):
		return fsm.Errorf(fsm.CodeInvalid, "thread is not valid UTF-8")
	}
	return nil
}

// checkUser checks an author or user id; field names it in the message.
func checkUser(field, user string) error {
	switch {
	case user == "":
		return fsm.Errorf(fsm.CodeInvalid, "%s must not be empty", field)
	case len(user) > MaxUserLen:
		return fsm.Errorf(fsm.CodeInvalid, "%s is %d bytes, more than %d",
			field, len(user), MaxUserLen)
	case !utf8.ValidString(user):
		return fsm.Errorf(fsm.CodeInvalid, "%s is not valid UTF-8", field)
	}
	return nil
}

// checkNames rejects a command whose thread, author or user contains a
// control character (Unicode category Cc: C0, DEL and C1), the rule for
// document and client ids too. Encode checks it and Decode does not: the
// rule came after the log format, and an entry committed before it must
// apply as it did, so that replaying an old log gives the same state.
func checkNames(cmd Command) error {
	var names [][2]string // field, value
	switch c := cmd.(type) {
	case CreateCommand:
		names = [][2]string{{"thread", c.Thread}, {"author", c.Author}}
	case EditCommand:
		names = [][2]string{{"author", c.Author}}
	case DeleteCommand:
		names = [][2]string{{"author", c.Author}}
	case VoteCommand:
		names = [][2]string{{"user", c.User}}
	case LikeCommand:
		names = [][2]string{{"user", c.User}}
	}
	for _, name := range names {
		if strings.ContainsFunc(name[1], unicode.IsControl) {
			return fsm.Errorf(fsm.CodeInvalid, "%s %q contains a control character",
				name[0], name[1])
		}
	}
	return nil
}

// checkBody checks a comment body against the limits.
func checkBody(body string) error {
	switch {
	case body == "":
		return fsm.Errorf(fsm.CodeInvalid, "body must not be empty")
	case len(body) > MaxBodyLen:
		return fsm.Errorf(fsm.CodeInvalid, "body is %d bytes, more than %d",
			len(body), MaxBodyLen)
	case !utf8.ValidString(body):
		return fsm.Errorf(fsm.CodeInvalid, "body is not valid UTF-8")
	}
	return nil
}

// parseID parses a comment id: a positive decimal integer without sign or
// leading zeros. Anything else names no comment.
func parseID(s string) (uint64, error) {
	if s == "" || len(s) > 20 || s[0] == '0' {
		return 0, errNoComment(s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errNoComment(s)
		}
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errNoComment(s)
	}
	return id, nil
}

// formatID is the inverse of parseID.
func formatID(id uint64) string { return strconv.FormatUint(id, 10) }

// errNoComment is the error for a comment id that names no comment.
func errNoComment(id string) error {
	if len(id) > 64 || !utf8.ValidString(id) {
		return fsm.Errorf(fsm.CodeNotFound, "no such comment")
	}
	return fsm.Errorf(fsm.CodeNotFound, "no comment %q", id)
}

// vote is a user's vote on a comment as stored.
type vote uint8

const (
	voteNone vote = 0
	voteUp   vote = 'u'
	voteDown vote = 'd'
)

// parseVote maps a VoteCommand.Vote value to a vote.
func parseVote(s string) (vote, bool) {
	switch s {
	case VoteUp:
		return voteUp, true
	case VoteDown:
		return voteDown, true
	case VoteNone:
		return voteNone, true
	}
	return 0, false
}
