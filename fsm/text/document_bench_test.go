package text

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fillDoc creates document id with size bytes of ASCII text, in edits of
// at most 256 KiB.
func fillDoc(b *testing.B, dt *docTester, id string, size int) uint64 {
	line := strings.Repeat("the quick brown fox jumps over the lazy dog ", 2) + "\n"
	rev := uint64(0)
	length := 0
	for length < size {
		n := min(size-length, 256<<10)
		chunk := strings.Repeat(line, n/len(line)+1)[:n]
		op, err := FromSplice(length, 0, chunk, length)
		require.NoError(b, err)
		raw, _ := json.Marshal(op)
		dt.must(id, rev, "fill", rev+1, string(raw))
		rev++
		length += n
	}
	return rev
}

// BenchmarkEditCost measures one keystroke, an insert of one character at
// a random position submitted at the current revision, through Apply and
// the commit of its own Pebble batch, on documents of 10 KB and 1 MB. The
// cost includes the snapshots the policy writes, amortized. The two
// should be close: an edit never rewrites the document.
func BenchmarkEditCost(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			dt := newDocTester(b, Config{})
			rev := fillDoc(b, dt, "doc", size)
			rng := rand.New(rand.NewPCG(1, 2))
			length := size
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pos := rng.IntN(length + 1)
				edit := `[` + fmt.Sprint(pos) + `,"x",` + fmt.Sprint(length-pos) + `]`
				if pos == 0 {
					edit = `["x",` + fmt.Sprint(length) + `]`
				} else if pos == length {
					edit = `[` + fmt.Sprint(pos) + `,"x"]`
				}
				dt.must("doc", rev, "typist", rev+1, edit)
				rev++
				length++
			}
		})
	}
}

// BenchmarkGet measures a read of a whole 1 MB document from storage: its
// latest snapshot plus the ops after it, which the snapshot policy keeps
// under a quarter of the text.
func BenchmarkGet(b *testing.B) {
	dt := newDocTester(b, Config{})
	size := 1 << 20
	rev := fillDoc(b, dt, "doc", size)

	// Type until the log since the last snapshot is as long as it gets.
	for {
		m, _, err := readMeta(dt.db, "doc")
		require.NoError(b, err)
		if (m.sinceSnap+64)*snapshotLogShare >= m.length {
			break
		}
		op, _ := FromSplice(int(rev)%size, 0, "x", int(m.length))
		raw, _ := json.Marshal(op)
		dt.must("doc", rev, "typist", rev+1, string(raw))
		rev++
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Get(dt.db, "doc"); err != nil {
			b.Fatal(err)
		}
	}
}
