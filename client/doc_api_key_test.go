package client

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDocIdempotencyKeyStaysWithinServerLimit(t *testing.T) {
	require.Equal(t, "doc:d:c1:7", docIdempotencyKey("d", "c1", 7))

	long := strings.Repeat("x", 256)
	a := docIdempotencyKey(long, "c1", 7)
	require.LessOrEqual(t, len(a), maxIdempotencyKey)
	require.NotEqual(t, a, docIdempotencyKey(long, "c2", 7), "clients must not share keys")
	require.NotEqual(t, a, docIdempotencyKey(long, "c1", 8), "submits must not share keys")
	require.Equal(t, a, docIdempotencyKey(long, "c1", 7), "a resend reuses its key")
}
