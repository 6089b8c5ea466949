package client

import (
	"context"
	"net/http"
)

// Node states reported in NodeStatus.State.
const (
	StateLeader      = "leader"
	StateFollower    = "follower"
	StateCandidate   = "candidate"
	StateUnreachable = "unreachable"
)

// ClusterStatus is the cluster as one node sees it.
type ClusterStatus struct {
	// Leader is the id of the leader, empty while there is none.
	Leader string `json:"leader"`
	// Term is the current Raft term.
	Term uint64 `json:"term"`
	// Nodes lists every member.
	Nodes []NodeStatus `json:"nodes"`
	// Node is the id of the node that answered; it is not part of the JSON.
	Node string `json:"-"`
}

// NodeStatus is one member of the cluster.
type NodeStatus struct {
	// ID is the node id, such as "n1".
	ID string `json:"id"`
	// HTTP is the node's API address, host:port.
	HTTP string `json:"http"`
	// Raft is the node's Raft address, host:port.
	Raft string `json:"raft"`
	// State is one of StateLeader, StateFollower, StateCandidate and
	// StateUnreachable.
	State string `json:"state"`
	// Voter reports whether the node votes in elections.
	Voter bool `json:"voter"`
	// AppliedIndex is the last Raft index the node has applied.
	AppliedIndex uint64 `json:"applied_index"`
}

// Cluster returns the membership and roles from any node that answers.
func (c *Client) Cluster(ctx context.Context) (ClusterStatus, error) {
	var status ClusterStatus
	info, err := c.Do(ctx, http.MethodGet, "/v1/cluster", nil, &status, RequestOptions{})
	if err != nil {
		return ClusterStatus{}, err
	}
	status.Node = info.Node
	return status, nil
}
