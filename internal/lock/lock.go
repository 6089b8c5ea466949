//go:build !deadlock

// Package lock provides the mutexes used across shoal. Built with the
// deadlock tag they come from github.com/sasha-s/go-deadlock and report
// lock-order inversions and long waits; otherwise they are sync's.
package lock

import "sync"

// Mutex is a mutual exclusion lock; the zero value is unlocked.
type Mutex = sync.Mutex

// RWMutex is a reader/writer lock; the zero value is unlocked.
type RWMutex = sync.RWMutex
