package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ErrNoRedis is returned when redis-server is not on the PATH.
var ErrNoRedis = errors.New("cluster: redis-server is not on the PATH")

// Redis is a real redis-server process on 127.0.0.1, for a local cluster
// or a test. Its methods are not safe for concurrent use.
type Redis struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts redis-server on port (0 picks a free one) with its
// files in dir, and waits until it answers.
func StartRedis(ctx context.Context, dir string, port int) (*Redis, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNoRedis
	}
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Redis{dir: dir, port: port}
	return r, r.Start(ctx)
}

// Addr returns the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Start starts the server again after Kill or Stop, on the same port.
func (r *Redis) Start(ctx context.Context) error {
	logFile, err := os.OpenFile(filepath.Join(r.dir, "redis.log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r.cmd = exec.Command("redis-server",
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no")
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("cluster: start redis-server: %w", err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}(r.cmd, r.done)

	for {
		conn, err := net.DialTimeout("tcp", r.Addr(), 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("cluster: redis-server exited at start (see %s)",
				filepath.Join(r.dir, "redis.log"))
		case <-ctx.Done():
			r.Kill()
			return fmt.Errorf("cluster: redis-server did not start: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Exited returns a channel closed when the server process started last
// exits, for whatever reason.
func (r *Redis) Exited() <-chan struct{} { return r.done }

// Kill stops the server with SIGKILL and waits for it to exit.
func (r *Redis) Kill() { r.signal(syscall.SIGKILL) }

// Stop stops the server with SIGTERM and waits for it to exit.
func (r *Redis) Stop() { r.signal(syscall.SIGTERM) }

// Pause freezes the server with SIGSTOP, making it slow rather than gone;
// Resume continues it.
func (r *Redis) Pause() { _ = r.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (r *Redis) Resume() { _ = r.cmd.Process.Signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	if r.cmd == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// StartRedisTest starts a redis-server on a free port for a test and stops
// it when the test ends. The test is skipped if redis-server is missing,
// unless the CI environment variable is set, where it fails: CI installs
// it.
func StartRedisTest(t testing.TB) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := StartRedis(ctx, t.TempDir(), 0)
	if errors.Is(err, ErrNoRedis) && os.Getenv("CI") == "" {
		t.Skip("redis-server is not installed (apt-get install redis-server)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)
	return r
}
