package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// devel is the version of a binary that carries no module version.
const devel = "(devel)"

var versionCmd = &cobra.Command{
	Use:   "version",
	Short: "Print the version and the commit shoal was built from",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s version %s\n", cmd.Root().Name(),
			cmd.Root().Version)
		return err
	},
}

func init() {
	// Setting Version gives the root command its --version flag.
	rootCmd.Version = formatVersion(debug.ReadBuildInfo())
	rootCmd.AddCommand(versionCmd)
}

// formatVersion describes a build in one line: the module version, then
// what the go command stamped of the VCS (revision, commit time, whether
// the tree was modified) and the Go version, for example
// "v1.2.0 (revision 0123456789ab, 2026-12-03T15:14:34Z, go1.26.0)". A
// binary without a module version is "(devel)".
func formatVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return devel
	}
	version := info.Main.Version
	if version == "" {
		version = devel
	}

	var details []string
	settings := make(map[string]string, len(info.Settings))
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if revision := settings["vcs.revision"]; revision != "" {
		details = append(details, "revision "+revision[:min(len(revision), 12)])
	}
	if at := settings["vcs.time"]; at != "" {
		details = append(details, at)
	}
	if settings["vcs.modified"] == "true" {
		details = append(details, "modified")
	}
	if info.GoVersion != "" {
		details = append(details, info.GoVersion)
	}
	if len(details) == 0 {
		return version
	}
	return version + " (" + strings.Join(details, ", ") + ")"
}
