package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFormatVersion(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/shoal-db/shoal", Version: "v1.2.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-03T15:14:34Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for i, tc := range []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{stamped, true, "v1.2.0 (revision 0123456789ab, 2026-12-03T15:14:34Z, modified, " +
			"go1.26.0)"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "(devel)"},
		{&debug.BuildInfo{GoVersion: "go1.26.0"}, true, "(devel) (go1.26.0)"},
		{&debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision",
			Value: "abc"}}}, true, "(devel) (revision abc)"},
		{nil, false, "(devel)"},
	} {
		require.Equal(t, tc.want, formatVersion(tc.info, tc.ok), "#%d", i)
	}
}

// TestVersionFlagAndCommand checks that --version and the version command
// print the same line.
func TestVersionFlagAndCommand(t *testing.T) {
	run := func(args ...string) string {
		var out bytes.Buffer
		rootCmd.SetOut(&out)
		rootCmd.SetArgs(args)
		t.Cleanup(func() { rootCmd.SetOut(nil); rootCmd.SetArgs(nil) })
		require.NoError(t, rootCmd.Execute())
		return out.String()
	}
	flag := run("--version")
	require.True(t, strings.HasPrefix(flag, "shoal version "), flag)
	require.Equal(t, "shoal version "+rootCmd.Version+"\n", flag)
	require.Equal(t, flag, run("version"))
}
