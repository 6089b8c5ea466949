package replay

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressInterval is the longest a replay goes without a progress line
// when its progress does not go to a terminal; a line is also written at
// each tenth of the work.
const progressInterval = 5 * time.Second

// progress shows how far a replay step is. On a terminal it is a bar
// redrawn in place; on anything else (a file, a pipe, a CI log) it is a
// plain line at each tenth of the work and at least every
// progressInterval, so that logs get no carriage returns or escape codes.
// Either way finish writes a closing line. A nil *progress shows nothing.
// The methods are safe for concurrent use.
type progress struct {
	bar   *progressbar.ProgressBar // on a terminal
	lines *progressLines           // elsewhere
}

// newProgress returns the progress of total steps of unit on w, labelled
// with description, or nil when w is nil.
func newProgress(w io.Writer, total int, description, unit string) *progress {
	if w == nil {
		return nil
	}
	if !isTerminal(w) {
		return &progress{lines: newProgressLines(w, total, description, unit, time.Now)}
	}
	return &progress{bar: progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

// isTerminal reports whether w is a file open on a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// add counts n more steps done.
func (p *progress) add(n int) {
	switch {
	case p == nil:
	case p.bar != nil:
		_ = p.bar.Add(n)
	default:
		p.lines.add(n)
	}
}

// finish writes the closing line: the work done, or where it stopped
// when err is not nil.
func (p *progress) finish(err error) {
	switch {
	case p == nil:
	case p.bar != nil && err == nil:
		_ = p.bar.Finish()
	case p.bar != nil:
		_ = p.bar.Exit()
	default:
		p.lines.finish(err)
	}
}

// progressLines writes progress as plain lines.
type progressLines struct {
	w                 io.Writer
	total             int
	description, unit string
	now               func() time.Time
	start             time.Time

	mu        sync.Mutex
	done      int
	last      time.Time // of the last line
	lastTenth int       // tenths of total done at the last line
}

// newProgressLines returns the lines of total steps, timed by now.
func newProgressLines(w io.Writer, total int, description, unit string,
	now func() time.Time) *progressLines {
	start := now()
	return &progressLines{w: w, total: total, description: description, unit: unit,
		now: now, start: start, last: start}
}

func (pl *progressLines) add(n int) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.done += n
	if pl.done >= pl.total {
		return // the closing line says it
	}
	now, tenth := pl.now(), pl.done*10/pl.total
	if tenth <= pl.lastTenth && now.Sub(pl.last) < progressInterval {
		return
	}
	pl.last, pl.lastTenth = now, tenth
	fmt.Fprintf(pl.w, "%s: %s%s\n", pl.description, pl.counts(), pl.rate(now))
}

func (pl *progressLines) finish(err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	elapsed := pl.now().Sub(pl.start).Round(time.Millisecond)
	if err != nil {
		fmt.Fprintf(pl.w, "%s: stopped at %s after %v\n", pl.description, pl.counts(),
			elapsed)
		return
	}
	fmt.Fprintf(pl.w, "%s: %s in %v%s\n", pl.description, pl.counts(), elapsed,
		pl.rate(pl.now()))
}

// counts is "done/total unit (percent)"; the caller holds mu.
func (pl *progressLines) counts() string {
	if pl.total <= 0 {
		return fmt.Sprintf("%d %s", pl.done, pl.unit)
	}
	return fmt.Sprintf("%d/%d %s (%d%%)", pl.done, pl.total, pl.unit, pl.done*100/pl.total)
}

// rate is ", N unit/s" since the start, or nothing before any time has
// passed; the caller holds mu.
func (pl *progressLines) rate(now time.Time) string {
	elapsed := now.Sub(pl.start)
	if elapsed <= 0 {
		return ""
	}
	return fmt.Sprintf(", %.0f %s/s", float64(pl.done)/elapsed.Seconds(), pl.unit)
}
