package fsm_test

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/shoal-db/shoal/fsm"
)

// batchSize is node's raft MaxAppendEntries, the most entries one
// ApplyBatch gets.
const batchSize = 256

// BenchmarkApplyBatchIdempotency times one full batch of writes (one
// iteration is one ApplyBatch of batchSize entries): without keys; with a
// key each and nothing due to expire; and with a key each while a backlog
// of expired keys drains, the most expiry work a batch can do (it deletes
// two expired keys per write).
func BenchmarkApplyBatchIdempotency(b *testing.B) {
	for _, bc := range []struct {
		name    string
		keyed   bool
		backlog bool
	}{
		{"unkeyed", false, false},
		{"keyed", true, false},
		{"keyed-draining-backlog", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, db := openFSMWindow(b, b.TempDir(), 0)
			defer db.Close()
			index := uint64(0)
			batch := func(at int64, key func(i int) string) []*raft.Log {
				entries := make([]*raft.Log, batchSize)
				for i := range entries {
					index++
					cmd := put(fmt.Sprintf("S%d", i%50), "1.5", at, key(i))
					data, err := cmd.MarshalBinary()
					if err != nil {
						b.Fatal(err)
					}
					entries[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand,
						Data: data}
				}
				return entries
			}

			// Enough expired keys for every batch to delete its full share.
			if bc.backlog {
				for n := range 2 * b.N {
					f.ApplyBatch(batch(t0, func(i int) string { return fmt.Sprintf("old-%d-%d", n, i) }))
				}
			}
			at := t0 + day + 1
			batches := make([][]*raft.Log, b.N)
			for n := range batches {
				batches[n] = batch(at, func(i int) string {
					if !bc.keyed {
						return ""
					}
					return fmt.Sprintf("new-%d-%d", n, i)
				})
			}

			b.ResetTimer()
			for n := range b.N {
				f.ApplyBatch(batches[n])
			}
			b.StopTimer()
			if bc.backlog {
				retry := put("S0", "1.5", 0, fmt.Sprintf("old-%d-0", 2*b.N-1))
				if _, ok := fsm.Remembered(db, &retry); ok {
					b.Fatal("an expired key still answers")
				}
			}
		})
	}
}
