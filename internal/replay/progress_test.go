package replay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// plainLines returns the lines written to out, failing on any carriage
// return or escape code a bar would draw.
func plainLines(t *testing.T, out string) []string {
	t.Helper()
	require.NotContains(t, out, "\r")
	require.NotContains(t, out, "\x1b")
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// TestProgressOffTerminalWritesPlainLines checks that progress going to a
// file is written as plain lines rather than a bar: one at each tenth of
// the work and a closing line.
func TestProgressOffTerminalWritesPlainLines(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "progress")
	require.NoError(t, err)
	defer f.Close()

	p := newProgress(f, 100, "stocks", "quotes")
	require.NotNil(t, p)
	require.Nil(t, p.bar, "a file is not a terminal")
	for range 100 {
		p.add(1)
	}
	p.finish(nil)

	out, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	lines := plainLines(t, string(out))
	require.Len(t, lines, 10, "%q", out)
	for i, line := range lines[:9] {
		tenth := (i + 1) * 10
		assert.True(t, strings.HasPrefix(line, fmt.Sprintf("stocks: %d/100 quotes (%d%%)",
			tenth, tenth)), line)
	}
	assert.True(t, strings.HasPrefix(lines[9], "stocks: 100/100 quotes (100%) in "), lines[9])
}

// TestProgressLinesEveryIntervalAndOnError checks the lines of slow work:
// a line once progressInterval has passed without one, none sooner, and a
// closing line that says where the work stopped.
func TestProgressLinesEveryIntervalAndOnError(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var out bytes.Buffer
	pl := newProgressLines(&out, 1000, "votes", "votes", clock.Now)

	pl.add(1)
	require.Empty(t, out.String(), "a line before a tenth or an interval")
	clock.now = clock.now.Add(progressInterval - time.Millisecond)
	pl.add(1)
	require.Empty(t, out.String(), "a line before the interval passed")
	clock.now = clock.now.Add(time.Millisecond)
	pl.add(1)
	require.Equal(t, "votes: 3/1000 votes (0%), 1 votes/s\n", out.String())

	out.Reset()
	clock.now = clock.now.Add(time.Second)
	pl.add(1)
	require.Empty(t, out.String(), "a line before the next interval")
	pl.finish(errors.New("interrupted"))
	require.Equal(t, "votes: stopped at 4/1000 votes (0%) after 6s\n", out.String())
}

// TestProgressNilShowsNothing checks that progress without a writer is
// nil and that its methods do nothing.
func TestProgressNilShowsNothing(t *testing.T) {
	p := newProgress(nil, 10, "text", "edits")
	require.Nil(t, p)
	p.add(3)
	p.finish(nil)
}
