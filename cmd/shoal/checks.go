package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-db/shoal/client"
)

// The checks in this file run before a command does any work, so a bad
// flag or a cluster that is not there fails at once and writes nothing.

// checkInt fails when an integer flag is outside lo-hi.
func checkInt(flag string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("--%s %d: want %d-%d", flag, v, lo, hi)
	}
	return nil
}

// checkAtLeast fails when an integer flag is below lo.
func checkAtLeast(flag string, v, lo int) error {
	if v < lo {
		return fmt.Errorf("--%s %d: want at least %d", flag, v, lo)
	}
	return nil
}

// checkPositive fails when a duration flag is zero or negative.
func checkPositive(flag string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("--%s %v: want a positive duration (such as 500ms or 10s)", flag, d)
	}
	return nil
}

// checkNotNegative fails when a duration flag is negative.
func checkNotNegative(flag string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--%s %v: want 0 or a positive duration", flag, d)
	}
	return nil
}

// checkOneOf fails when an enum flag is none of want.
func checkOneOf(flag, v string, want ...string) error {
	for _, w := range want {
		if v == w {
			return nil
		}
	}
	return fmt.Errorf("--%s %q: want one of %s", flag, v, strings.Join(want, ", "))
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// probeTimeout bounds how long each node may take to answer the probe.
const probeTimeout = 3 * time.Second

// probeCluster asks each node at addrs in turn for GET /v1/cluster, once
// and without retries, and fails unless one of them answers: a replay or
// bench against no cluster would otherwise retry every request for as
// long as it runs.
func probeCluster(ctx context.Context, addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("no --addr given")
	}
	var errs []string
	for _, a := range addrs {
		c, err := client.New(client.Config{Addrs: []string{a}, Timeout: probeTimeout,
			MaxRetries: -1})
		if err != nil {
			return fmt.Errorf("--addr %s: %w", a, err)
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, err = c.Cluster(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("no shoal node answers at %s (%s); start a cluster with "+
		"`shoal cluster up`, or name its nodes with --addr", strings.Join(addrs, ", "),
		strings.Join(errs, "; "))
}
