package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The functions in this file act on a cluster directory from another
// process than the one that started the cluster, through StateFile: the
// `shoal cluster kill` and `restart` commands in a second terminal.

// ErrNotRunning is returned when a member's recorded process is gone.
var ErrNotRunning = errors.New("cluster: node is not running")

// Alive reports whether the process recorded for m is a running shoal
// node with m's id.
func Alive(m Member) bool {
	if m.Pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", m.Pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--id" && args[i+1] == m.ID {
			// A stopped (zombie) child still has a cmdline; check state.
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.Pid))
			return err == nil && !strings.Contains(string(stat), ") Z ")
		}
	}
	return false
}

// self returns this process as a Supervisor.
func self() *Process {
	start, _ := processStart(os.Getpid())
	return &Process{Pid: os.Getpid(), Start: start}
}

// processStart returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/PID/stat), or false if there is no such live
// process.
func processStart(pid int) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields after its closing parenthesis, starting at field 3.
	end := strings.LastIndexByte(string(stat), ')')
	if end < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0, false
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	return start, err == nil
}

// SupervisorAlive reports whether the process recorded as the supervisor
// of a cluster (`shoal cluster up`) is still running.
func SupervisorAlive(state State) bool {
	if state.Supervisor == nil {
		return false
	}
	start, ok := processStart(state.Supervisor.Pid)
	return ok && start == state.Supervisor.Start
}

// ErrNotSupervised is returned by StartDetached when no `shoal cluster up`
// watches the cluster.
var ErrNotSupervised = errors.New("cluster: the cluster is not running")

// lookup returns the member id of the cluster in dir.
func lookup(dir, id string) (State, int, error) {
	state, err := Load(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return state, -1, fmt.Errorf("cluster: no cluster in %s (start one with "+
				"`shoal cluster up --dir %s`)", dir, dir)
		}
		return state, -1, err
	}
	for i, m := range state.Members {
		if m.ID == id {
			return state, i, nil
		}
	}
	ids := make([]string, len(state.Members))
	for i, m := range state.Members {
		ids[i] = m.ID
	}
	return state, -1, fmt.Errorf("cluster: no node %q in %s (nodes: %s)", id, dir,
		strings.Join(ids, ", "))
}

// SignalMember sends sig to the recorded process of member id of the
// cluster in dir.
func SignalMember(dir, id string, sig syscall.Signal) (Member, error) {
	state, i, err := lookup(dir, id)
	if err != nil {
		return Member{}, err
	}
	m := *state.Members[i]
	if !Alive(m) {
		return m, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	return m, syscall.Kill(m.Pid, sig)
}

// StartDetached starts member id of the cluster in dir as a process of its
// own session, so it outlives the command that started it, and records
// its process id.
func StartDetached(dir, id string) (Member, error) {
	state, i, err := lookup(dir, id)
	if err != nil {
		return Member{}, err
	}
	m := state.Members[i]
	if Alive(*m) {
		return *m, fmt.Errorf("cluster: %s is already running (pid %d)", id, m.Pid)
	}
	if !SupervisorAlive(state) {
		// A node started now would run unwatched, be left running by the
		// next `cluster up`, and point at the Redis of the last one.
		return *m, fmt.Errorf("%w: no `shoal cluster up` runs for %s, so %s would run "+
			"alone and unwatched; start the whole cluster with `shoal cluster up --dir %s`",
			ErrNotSupervised, dir, id, dir)
	}

	args := []string{"node", "--id", m.ID, "--http", m.HTTP, "--raft", m.Raft, "--data", m.Data}
	args = append(args, state.NodeArgs...)
	if state.Redis != "" {
		args = append(args, "--redis", state.Redis)
	}
	logFile, err := os.OpenFile(m.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return *m, err
	}
	defer logFile.Close()
	cmd := exec.Command(state.Binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return *m, fmt.Errorf("cluster: start %s: %w", id, err)
	}
	m.Pid = cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it dies while we watch

	c := &Cluster{cfg: Config{Dir: dir}, state: state}
	if err := c.save(); err != nil {
		return *m, err
	}
	return *m, waitServing(*m, 10*time.Second)
}

// waitServing waits until m's process answers /healthz as m, and fails if
// it exits first (a port in use, a bad flag), quoting the end of its log.
func waitServing(m Member, limit time.Duration) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if !Alive(m) {
			if tail := logTail(m.Log, 3); tail != "" {
				return fmt.Errorf("cluster: %s exited at start: %s (see %s)", m.ID, tail, m.Log)
			}
			return fmt.Errorf("cluster: %s exited at start; see %s", m.ID, m.Log)
		}
		if resp, err := client.Get("http://" + m.HTTP + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get(nodeHeader) == m.ID {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster: %s does not answer on %s yet; see %s", m.ID, m.HTTP, m.Log)
}

// StopStrays sends SIGTERM to every member of the cluster in dir whose
// recorded process is alive but not in skip: the nodes another terminal
// restarted.
func StopStrays(dir string, skip map[int]bool) {
	state, err := Load(filepath.Clean(dir))
	if err != nil {
		return
	}
	for _, m := range state.Members {
		if !skip[m.Pid] && Alive(*m) {
			_ = syscall.Kill(m.Pid, syscall.SIGTERM)
		}
	}
}
