package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client/clienttest"
)

// TestTextWorkloadTypesOneDocumentPerClient runs the text workload against
// the fake document API: every client edits its own document, every edit
// is one revision, and nothing fails.
func TestTextWorkloadTypesOneDocumentPerClient(t *testing.T) {
	fake := clienttest.NewDocCluster(3)
	defer fake.Close()
	c := newClient(t, fake.Addrs())

	report, err := Run(context.Background(), c, Options{
		Workload: WorkloadText, Clients: 4, Duration: 300 * time.Millisecond,
	})
	require.NoError(t, err)
	require.Len(t, report.Ops, 1)
	edits := report.Ops[0]
	assert.Equal(t, OpEdit, edits.Op)
	assert.Zero(t, edits.Errors)
	assert.Positive(t, edits.Count)

	applied, duplicates := fake.Submits()
	assert.Equal(t, int(edits.Count), applied)
	assert.Zero(t, duplicates)
}
