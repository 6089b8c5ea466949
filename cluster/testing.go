package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names an environment variable holding the path of a shoal
// binary for tests; without it, the tests build one once per process.
const BinaryEnv = "SHOAL_BIN"

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// Binary returns the shoal binary that tests run: $SHOAL_BIN, or one built
// from this module into a temporary directory.
func Binary() (string, error) {
	if path := os.Getenv(BinaryEnv); path != "" {
		return path, nil
	}
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("cluster: find module: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "shoal-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtPath = filepath.Join(dir, "shoal")
		build := exec.Command("go", "build", "-o", builtPath, "./cmd/shoal")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("cluster: build shoal: %v\n%s", err, out)
		}
	})
	return builtPath, buildErr
}

// StartTest starts a cluster of n nodes on free ports in a temporary
// directory for a test, and stops it when the test ends. On failure the
// node logs are printed.
func StartTest(t testing.TB, n int, nodeArgs ...string) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real node processes; skipped with -short")
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, Config{Binary: bin, Dir: dir, Nodes: n, NodeArgs: nodeArgs})
	if err != nil {
		dumpLogs(t, dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			dumpLogs(t, dir)
		}
	})
	return c
}

func dumpLogs(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, path := range logs {
		raw, _ := os.ReadFile(path)
		if len(raw) > 20000 {
			raw = raw[len(raw)-20000:]
		}
		t.Logf("==== %s (tail)\n%s", filepath.Base(path), raw)
	}
}

// Status is GET /v1/cluster as one node answers it.
type Status struct {
	// Node is the id of the node that answered, from its X-Shoal-Node
	// header; it is not part of the JSON.
	Node   string `json:"-"`
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
	Nodes  []struct {
		ID           string `json:"id"`
		HTTP         string `json:"http"`
		Raft         string `json:"raft"`
		State        string `json:"state"`
		Voter        bool   `json:"voter"`
		AppliedIndex uint64 `json:"applied_index"`
	} `json:"nodes"`
}

// QueryStatus asks the node at addr for the cluster's status.
func QueryStatus(ctx context.Context, addr string) (Status, error) {
	var status Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/cluster", nil)
	if err != nil {
		return status, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return status, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return status, fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&status)
	status.Node = resp.Header.Get(nodeHeader)
	return status, err
}

// Leader polls the running members until one of them names a leader that
// is running, and returns its id.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	for {
		for _, m := range c.Members() {
			c.mu.Lock()
			_, running := c.running[m.ID]
			c.mu.Unlock()
			if !running {
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			status, err := QueryStatus(qctx, m.HTTP)
			cancel()
			if err != nil || status.Leader == "" {
				continue
			}
			c.mu.Lock()
			_, leaderRunning := c.running[status.Leader]
			c.mu.Unlock()
			if leaderRunning {
				return status.Leader, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster: no leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Running reports whether this Cluster has a live process for id.
func (c *Cluster) Running(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.running[id]
	return ok
}
