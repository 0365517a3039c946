package main

import (
	"fmt"
	"io"
	"os"

	"github.com/edgegate/edgegate/config"
)

// printExpanded writes a valid config with its profiles applied: what the gateway
// runs, every device written out (docs/profiles.md).
func printExpanded(file string, stdout io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out, err := config.Expand(b)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// warnUnusedProfiles says which profiles no device names: valid, but likely a
// mistake (a misspelt name on the devices that should use it).
func warnUnusedProfiles(file string, stdout io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for _, name := range config.UnusedProfiles(b) {
		fmt.Fprintf(stdout, "warning: profile %q is used by no device\n", name)
	}
	return nil
}
