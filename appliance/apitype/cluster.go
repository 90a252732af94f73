package apitype

import "time"

// ClusterStatus is the cluster's part of the status; absent on an
// appliance that stands alone.
type ClusterStatus struct {
	Node     string `json:"node"`     // this node's name
	Mode     string `json:"mode"`     // "embedded" (routes between appliances) or "external" (nats_urls)
	Replicas int    `json:"replicas"` // the stream's configured R
	// Peers are the other nodes as this one sees them: by name once a
	// route has connected, by configured address before.
	Peers []ClusterPeer `json:"peers,omitempty"`
	// MetaLeader is the JetStream meta leader (embedded mode only).
	MetaLeader string `json:"meta_leader,omitempty"`
	// StreamLeader is the node that orders the journal's writes; "" while
	// there is none (no quorum, or an election in progress).
	StreamLeader string `json:"stream_leader,omitempty"`
	// StreamReplicas are the journal stream's other replicas, as the
	// leader reports them: Lag is how many operations behind each is.
	StreamReplicas []ClusterReplica `json:"stream_replicas,omitempty"`
	// ConsumerLag is how many journaled messages this node has not yet
	// fanned out to its own clients.
	ConsumerLag uint64 `json:"consumer_lag"`
	// Quorum is false while the journal's stream cannot take writes:
	// publishes are refused, nothing new reaches any subscriber.
	Quorum          bool       `json:"quorum"`
	QuorumLostSince *time.Time `json:"quorum_lost_since,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	// Refused counts publishes refused since start because the stream
	// could not take them.
	Refused int64 `json:"refused_total"`
}

// ClusterPeer is one other node.
type ClusterPeer struct {
	Name      string `json:"name,omitempty"`    // its server name, once known
	Address   string `json:"address,omitempty"` // the route address, when known
	Connected bool   `json:"connected"`
	// LastSeen is how long ago the meta group last heard from it, when
	// it is not connected.
	LastSeenSeconds float64 `json:"last_seen_seconds,omitempty"`
}

// ClusterReplica is one replica of the journal's stream other than the
// leader.
type ClusterReplica struct {
	Name          string  `json:"name"`
	Current       bool    `json:"current"`
	Offline       bool    `json:"offline,omitempty"`
	ActiveSeconds float64 `json:"active_seconds"`
	Lag           uint64  `json:"lag"`
}
