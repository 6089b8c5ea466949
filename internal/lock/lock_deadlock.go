//go:build deadlock

package lock

import deadlock "github.com/sasha-s/go-deadlock"

// Mutex is a mutual exclusion lock that reports deadlocks; the zero value
// is unlocked.
type Mutex = deadlock.Mutex

// RWMutex is a reader/writer lock that reports deadlocks; the zero value
// is unlocked.
type RWMutex = deadlock.RWMutex
