package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/client/clienttest"
)

func newClient(t *testing.T, addrs []string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{
		Addrs:        addrs,
		MaxRetries:   -1, // count every failure
		RetryBackoff: time.Millisecond,
	})
	require.NoError(t, err)
	return c
}

func TestRunWorkloads(t *testing.T) {
	tests := []struct {
		workload string
		wantOps  []string
	}{
		{WorkloadWrite, []string{OpWrite}},
		{WorkloadRead, []string{OpRead}},
		{WorkloadMixed, []string{OpRead, OpWrite}},
	}
	for _, tt := range tests {
		t.Run(tt.workload, func(t *testing.T) {
			fake := clienttest.NewCluster(3)
			defer fake.Close()
			c := newClient(t, fake.Addrs())

			report, err := Run(context.Background(), c, Options{
				Workload: tt.workload,
				Clients:  4,
				Duration: 200 * time.Millisecond,
				Symbols:  []string{"AAA", "BBB"},
			})
			require.NoError(t, err)

			var ops []string
			for _, s := range report.Ops {
				ops = append(ops, s.Op)
				assert.Positive(t, s.Count, s.Op)
				assert.Zero(t, s.Errors, s.Op)
				assert.Positive(t, s.Throughput, s.Op)
				assert.LessOrEqual(t, s.P50, s.P99)
				assert.LessOrEqual(t, s.P99, s.P999)
				assert.LessOrEqual(t, s.P999, s.Max)
			}
			assert.Equal(t, tt.wantOps, ops)
			assert.Empty(t, report.Errors)
			assert.GreaterOrEqual(t, report.Elapsed, 200*time.Millisecond)
			assert.Equal(t, 3, report.Nodes)

			if tt.workload != WorkloadWrite {
				reads := fake.Reads()
				for node, n := range reads {
					assert.Positive(t, n, "node %d serves reads", node)
				}
			}

			var out bytes.Buffer
			require.NoError(t, report.Print(&out))
			t.Log("\n" + out.String())
			assert.Contains(t, out.String(), "p99.9")
			assert.Contains(t, out.String(), "errors: none")
		})
	}
}

func TestRunPacesToRate(t *testing.T) {
	fake := clienttest.NewCluster(1)
	defer fake.Close()
	c := newClient(t, fake.Addrs())

	report, err := Run(context.Background(), c, Options{
		Workload: WorkloadWrite,
		Clients:  4,
		Duration: 500 * time.Millisecond,
		Rate:     100,
	})
	require.NoError(t, err)

	assert.InDelta(t, 50, report.Total.Count, 10)
	assert.Equal(t, int(report.Total.Count), fake.Writes())
}

func TestRunCountsErrorsByKind(t *testing.T) {
	fake := clienttest.NewCluster(2)
	defer fake.Close()
	var requests atomic.Int64
	fake.SetHook(func(_ int, w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && requests.Add(1)%3 == 0 {
			w.Header().Set("Retry-After", "1")
			clienttest.WriteError(w, http.StatusServiceUnavailable, "no_leader", "election")
			return true
		}
		return false
	})
	c := newClient(t, fake.Addrs())

	report, err := Run(context.Background(), c, Options{
		Workload: WorkloadWrite,
		Clients:  2,
		Duration: 100 * time.Millisecond,
	})
	require.NoError(t, err)

	require.Len(t, report.Errors, 1)
	assert.Equal(t, ErrorCount{Op: OpWrite, Kind: "503 no_leader", Count: report.Total.Errors},
		report.Errors[0])
	assert.Positive(t, report.Total.Errors)
	var out bytes.Buffer
	require.NoError(t, report.Print(&out))
	assert.Contains(t, out.String(), "503 no_leader")
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	fake := clienttest.NewCluster(1)
	defer fake.Close()
	c := newClient(t, fake.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	start := time.Now()
	report, err := Run(ctx, c, Options{Workload: WorkloadWrite, Clients: 2, Duration: time.Minute})

	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Positive(t, report.Total.Count)
	assert.Empty(t, report.Errors, "requests cut off by the end are not failures")
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		opts    Options
		wantErr bool
	}{
		{opts: DefaultOptions()},
		{opts: Options{Workload: "nope"}.withDefaults(), wantErr: true},
		{opts: Options{Clients: -1}.withDefaults(), wantErr: true},
		{opts: Options{Duration: -time.Second}.withDefaults(), wantErr: true},
		{opts: Options{Rate: -1}.withDefaults(), wantErr: true},
		{opts: Options{ReadFraction: 2}.withDefaults(), wantErr: true},
	}
	for i, tt := range tests {
		err := tt.opts.Validate()
		assert.Equal(t, tt.wantErr, err != nil, "#%d: %v", i, err)
	}

	d := DefaultOptions()
	assert.Equal(t, WorkloadWrite, d.Workload)
	assert.Equal(t, DefaultClients, d.Clients)
	assert.Len(t, d.Symbols, 16)
	assert.Equal(t, "BENCH-00", d.Symbols[0])
	assert.Subset(t, Workloads(), []string{"mixed", "read", "write"})
	assert.True(t, slices.IsSorted(Workloads()))
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&client.APIError{Status: 503, Code: "no_leader"}, "503 no_leader"},
		{fmt.Errorf("wrapped: %w", &client.APIError{Status: 502}), "502"},
		{context.DeadlineExceeded, "timeout"},
		{&client.TransportError{Err: syscall.ECONNREFUSED}, "connection refused"},
		{&client.TransportError{Err: syscall.ECONNRESET}, "connection reset"},
		{&client.TransportError{Err: errors.New("tls: bad")}, "network"},
		{errors.New("huh"), "other"},
	}
	for i, tt := range tests {
		assert.Equal(t, tt.want, ErrorKind(tt.err), "#%d", i)
	}
}
