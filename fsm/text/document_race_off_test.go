//go:build !race

package text

// raceEnabled is set when the race detector is on.
const raceEnabled = false
