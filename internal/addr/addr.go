// Package addr normalizes the network addresses given on shoal's command
// line and in its API.
package addr

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Normalize accepts host:port, optionally with an http:// prefix and a
// trailing slash, and returns host:port.
func Normalize(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "http://")
	s = strings.TrimSuffix(s, "/")
	if strings.HasPrefix(s, "https://") {
		return "", fmt.Errorf("%q: https is not supported yet; use host:port", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q: want host:port, e.g. 127.0.0.1:8081", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q: port must be 1-65535", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
