package api

import (
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/internal/addr"
	"github.com/shoal-db/shoal/storage"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.node.ID()})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ready, why := s.node.Ready()
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]any{"ready": ready, "status": why})
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	status, err := s.node.Cluster(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, status)
}

// joinNode adds or updates a member: POST /v1/cluster/nodes
// {"id": "n4", "http": "127.0.0.1:8084", "raft": "127.0.0.1:9084"}.
func (s *Server) joinNode(w http.ResponseWriter, r *http.Request) {
	var m fsm.Member
	if err := s.decodeBody(w, r, &m); err != nil {
		writeError(w, err)
		return
	}
	var err error
	if m.ID == "" || strings.ContainsAny(m.ID, "/ ") || len(m.ID) > 64 ||
		strings.ContainsFunc(m.ID, unicode.IsControl) {
		writeError(w, badRequest("id %q: want 1-64 characters without '/', spaces or "+
			"control characters", m.ID))
		return
	}
	if m.HTTP, err = addr.Normalize(m.HTTP); err != nil {
		writeError(w, badRequest("http: %v", err))
		return
	}
	if m.Raft, err = addr.Normalize(m.Raft); err != nil {
		writeError(w, badRequest("raft: %v", err))
		return
	}
	if err := s.node.AddMember(r.Context(), m); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.node.RemoveMember(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

// transferLeader hands leadership over: POST /v1/cluster/leader with an
// optional body {"id": "n2"}. Without a body or an id the cluster chooses;
// an explicit empty id is a 400, not taken for "any".
func (s *Server) transferLeader(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID *string `json:"id"`
	}
	if err := s.decodeBody(w, r, &body); err != nil && !errors.Is(err, io.EOF) &&
		!isEmptyBody(err) {
		writeError(w, err)
		return
	}
	var id string
	if body.ID != nil {
		if id = *body.ID; id == "" {
			writeError(w, badRequest(`id is empty; leave id out to let the cluster choose`))
			return
		}
	}
	from := s.node.ID()
	if err := s.node.TransferLeadership(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	// Say who leads now, once the cluster knows.
	leader, _, _ := s.node.LeaderHTTP()
	for wait := 0; leader == "" && wait < 40 && r.Context().Err() == nil; wait++ {
		time.Sleep(50 * time.Millisecond)
		leader, _, _ = s.node.LeaderHTTP()
	}
	writeJSON(w, http.StatusOK, map[string]string{"from": from, "leader": leader})
}

func isEmptyBody(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && strings.HasPrefix(ae.message, "request body is empty")
}

// digest answers with a SHA-256 of the whole state and the applied index
// it reflects, so nodes can be compared byte for byte.
func (s *Server) digest(w http.ResponseWriter, r *http.Request) {
	s.withSnapshot(w, r, func(snap *snapshotView) (any, error) {
		sum, err := storage.Digest(snap.reader)
		if err != nil {
			return nil, err
		}
		return map[string]any{"index": snap.index, "digest": hex.EncodeToString(sum[:])}, nil
	})
}

// notFound turns storage.ErrNotFound into a 404 with a helpful message.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, storage.ErrNotFound) {
		return errorf(http.StatusNotFound, fsm.CodeNotFound, format, args...)
	}
	return err
}
