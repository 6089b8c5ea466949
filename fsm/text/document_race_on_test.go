//go:build race

package text

// raceEnabled is set when the race detector is on, which makes Pebble and
// this package's long single-goroutine replays tens of times slower
// without finding anything they could not.
const raceEnabled = true
