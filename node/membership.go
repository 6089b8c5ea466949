package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/transport"
)

// ErrUnknownMember is returned when removing or transferring to an id that
// is not in the cluster.
var ErrUnknownMember = errors.New("node: no such member")

// AddMember adds m as a voter, or updates its Raft address if it is a
// member already, and records its HTTP address. Adding a member that is
// already present with the same addresses changes nothing. Leader only.
func (n *Node) AddMember(ctx context.Context, m fsm.Member) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	future := n.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return fmt.Errorf("node: read configuration: %w", err)
	}

	present := false
	for _, s := range future.Configuration().Servers {
		if string(s.ID) == m.ID && string(s.Address) == m.Raft && s.Suffrage == raft.Voter {
			present = true
		}
		if string(s.ID) != m.ID && string(s.Address) == m.Raft {
			return fsm.Errorf(fsm.CodeConflict, "raft address %s belongs to member %s",
				m.Raft, s.ID)
		}
	}
	if others, err := fsm.Members(n.state); err == nil {
		for _, other := range others {
			if other.ID != m.ID && other.HTTP == m.HTTP {
				return fsm.Errorf(fsm.CodeConflict, "http address %s belongs to member %s",
					m.HTTP, other.ID)
			}
		}
	}
	if !present {
		n.logger.Info("adding member", "id", m.ID, "raft", m.Raft, "http", m.HTTP)
		err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.Raft), 0,
			n.cfg.ApplyTimeout).Error()
		if err != nil {
			return fmt.Errorf("node: add voter %s: %w", m.ID, err)
		}
	}

	if current, err := fsm.LookupMember(n.state, m.ID); err == nil && current == m {
		return nil
	}
	result, err := n.proposeLocal(ctx, fsm.MemberCommand(fsm.OpSetMember, m))
	if err != nil {
		return err
	}
	if result.Err != nil {
		return result.Err
	}
	return nil
}

// RemoveMember removes a member from the cluster. Leader only. Removing
// the leader itself is allowed: it steps down once the change commits.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if !n.IsMember(id) {
		return fmt.Errorf("%w: %s", ErrUnknownMember, id)
	}
	if voters, isVoter := n.voters(id); isVoter && voters == 1 {
		// Raft refuses it anyway; refuse before forgetting the address.
		return fsm.Errorf(fsm.CodeConflict, "%s is the last voter; it cannot be removed", id)
	}

	// Forget the address first, while this node surely still leads.
	result, err := n.proposeLocal(ctx, fsm.MemberCommand(fsm.OpRemoveMember, fsm.Member{ID: id}))
	if err != nil {
		return err
	}
	if result.Err != nil {
		return result.Err
	}
	n.logger.Info("removing member", "id", id)
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("node: remove %s: %w", id, err)
	}
	return nil
}

// TransferLeadership hands leadership to the member id, or to the most
// up-to-date follower when id is empty. Leader only.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if id == n.cfg.ID {
		return nil // it leads already
	}
	var future raft.Future
	if id == "" {
		voters, selfVoter := n.voters(n.cfg.ID)
		if voters == 0 || selfVoter && voters == 1 {
			return fsm.Errorf(fsm.CodeConflict, "there is no other voter to hand leadership to")
		}
		future = n.raft.LeadershipTransfer()
	} else {
		addr, ok := n.serverAddress(id)
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownMember, id)
		}
		future = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	n.logger.Info("transferring leadership", "to", id)
	if err := future.Error(); err != nil {
		return fmt.Errorf("node: leadership transfer: %w", err)
	}
	return nil
}

// voters returns how many voters the configuration has and whether id is
// one of them.
func (n *Node) voters(id string) (count int, isVoter bool) {
	future := n.raft.GetConfiguration()
	if future.Error() != nil {
		return 0, false
	}
	for _, s := range future.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			count++
			isVoter = isVoter || string(s.ID) == id
		}
	}
	return count, isVoter
}

func (n *Node) serverAddress(id string) (raft.ServerAddress, bool) {
	future := n.raft.GetConfiguration()
	if future.Error() != nil {
		return "", false
	}
	for _, s := range future.Configuration().Servers {
		if string(s.ID) == id {
			return s.Address, true
		}
	}
	return "", false
}

// IsMember implements transport.Leader.
func (n *Node) IsMember(id string) bool {
	_, ok := n.serverAddress(id)
	return ok && id != ""
}

// joinLoop asks the member at addr to add this node until it succeeds or
// the node stops. It is harmless when the node is already a member.
func (n *Node) joinLoop(addr string) {
	defer n.wg.Done()
	self := fsm.Member{ID: n.cfg.ID, HTTP: n.cfg.HTTPAddr, Raft: n.cfg.RaftAddr}
	body, _ := json.Marshal(self)
	client := &http.Client{Timeout: n.cfg.ApplyTimeout}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, err := client.Post("http://"+addr+"/v1/cluster/nodes", "application/json",
			bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				n.logger.Info("joined cluster", "via", addr)
				return
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if attempt == 1 || attempt%10 == 0 {
			n.logger.Info("waiting to join", "via", addr, "attempt", attempt, "err", err)
		}
		select {
		case <-n.stop:
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// PeerStatus implements transport.Leader.
func (n *Node) PeerStatus() transport.PeerStatus {
	_, leader := n.raft.LeaderWithID()
	return transport.PeerStatus{
		ID:           n.cfg.ID,
		State:        strings.ToLower(n.raft.State().String()),
		Term:         n.raft.CurrentTerm(),
		AppliedIndex: n.fsm.AppliedIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		Leader:       string(leader),
	}
}

// MemberStatus is one member as GET /v1/cluster shows it.
type MemberStatus struct {
	ID           string `json:"id"`
	HTTP         string `json:"http"`
	Raft         string `json:"raft"`
	State        string `json:"state"` // leader, follower, candidate or unreachable
	Voter        bool   `json:"voter"`
	AppliedIndex uint64 `json:"applied_index"`
}

// ClusterStatus is the cluster as this node sees it.
type ClusterStatus struct {
	Leader string         `json:"leader"`
	Term   uint64         `json:"term"`
	Nodes  []MemberStatus `json:"nodes"`
}

// Cluster asks every member for its state, in parallel, and reports those
// that do not answer within a short time as unreachable.
func (n *Node) Cluster(ctx context.Context) (ClusterStatus, error) {
	future := n.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return ClusterStatus{}, fmt.Errorf("node: read configuration: %w", err)
	}
	members := map[string]fsm.Member{}
	if list, err := fsm.Members(n.state); err == nil {
		for _, m := range list {
			members[m.ID] = m
		}
	}

	_, leader := n.raft.LeaderWithID()
	status := ClusterStatus{Leader: string(leader), Term: n.raft.CurrentTerm()}
	servers := future.Configuration().Servers
	status.Nodes = make([]MemberStatus, len(servers))

	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i, s := range servers {
		id := string(s.ID)
		ms := MemberStatus{ID: id, HTTP: members[id].HTTP, Raft: string(s.Address),
			Voter: s.Suffrage == raft.Voter, State: "unreachable"}
		status.Nodes[i] = ms
		if id == n.cfg.ID {
			self := n.PeerStatus()
			status.Nodes[i].State, status.Nodes[i].AppliedIndex = self.State, self.AppliedIndex
			continue
		}
		if ms.HTTP == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer, err := n.peers.Status(ctx, ms.HTTP)
			if err == nil {
				status.Nodes[i].State, status.Nodes[i].AppliedIndex = peer.State, peer.AppliedIndex
			}
		}()
	}
	wg.Wait()
	sort.Slice(status.Nodes, func(a, b int) bool { return status.Nodes[a].ID < status.Nodes[b].ID })
	return status, nil
}

// Ready reports whether the node knows a leader and has applied what it
// knows to be committed, give or take a few in-flight entries.
func (n *Node) Ready() (bool, string) {
	if _, leader := n.raft.LeaderWithID(); leader == "" {
		return false, "no leader"
	}
	if !n.IsMember(n.cfg.ID) {
		// A joining node hears from the leader before it has received
		// the log or snapshot that makes it a member.
		return false, "not yet a member"
	}
	applied, commit := n.fsm.AppliedIndex(), n.raft.CommitIndex()
	if applied+64 < commit {
		return false, fmt.Sprintf("catching up: applied %d of %d", applied, commit)
	}
	return true, "ok"
}
