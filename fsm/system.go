package fsm

import (
	"encoding/json"
	"errors"

	"github.com/shoal-db/shoal/storage"
)

// Operations of DomainSystem.
const (
	// OpSetMember records or updates a member's addresses.
	OpSetMember uint8 = 1

	// OpRemoveMember forgets a member's addresses.
	OpRemoveMember uint8 = 2
)

// Member is what the cluster remembers about a node beyond Raft's own
// configuration: where it serves HTTP, so any node can forward to it.
type Member struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	Raft string `json:"raft"`
}

// systemDomain applies membership records.
type systemDomain struct{}

func (systemDomain) Apply(tx storage.ReadWriter, req Request) (Output, error) {
	var m Member
	if err := json.Unmarshal(req.Payload, &m); err != nil || m.ID == "" {
		return Output{}, Errorf(CodeInvalid, "bad member record")
	}
	key := append(append([]byte(nil), prefixMember...), m.ID...)
	switch req.Op {
	case OpSetMember:
		raw, _ := json.Marshal(m)
		return Output{Value: raw}, tx.Set(key, raw)
	case OpRemoveMember:
		return Output{Value: json.RawMessage(`{}`)}, tx.Delete(key)
	}
	return Output{}, Errorf(CodeInvalid, "unknown system op %d", req.Op)
}

// Members returns every recorded member, ordered by id.
func Members(r storage.Reader) ([]Member, error) {
	var members []Member
	err := r.Scan(prefixMember, storage.PrefixEnd(prefixMember), false,
		func(_, value []byte) error {
			var m Member
			if err := json.Unmarshal(value, &m); err != nil {
				return err
			}
			members = append(members, m)
			return nil
		})
	return members, err
}

// LookupMember returns the member with the given id.
func LookupMember(r storage.Reader, id string) (Member, error) {
	raw, err := r.Get(append(append([]byte(nil), prefixMember...), id...))
	if err != nil {
		return Member{}, err
	}
	var m Member
	if err := json.Unmarshal(raw, &m); err != nil {
		return Member{}, errors.Join(storage.ErrNotFound, err)
	}
	return m, nil
}

// MemberCommand builds the command that records m.
func MemberCommand(op uint8, m Member) Command {
	raw, _ := json.Marshal(m)
	return Command{Domain: DomainSystem, Op: op, Payload: raw}
}
