package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/edgegate/edgegate/config"
)

// importTags prints the `devices:` document a tag list makes (docs/profiles.md),
// or every bad row and nothing else.
func importTags(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	deviceColumn := fs.String("device-column", "device", "the column that names each row's device")
	if err := fs.Parse(reorderFlags(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: one FILE.csv is required (edgegate import FILE.csv [--device-column device])", errUsage)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	out, err := config.ImportTags(f, *deviceColumn)
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			return fmt.Errorf("%s: %d problem(s):\n%w", fs.Arg(0), len(probs), err)
		}
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	_, err = stdout.Write(out)
	return err
}

// reorderFlags puts flags before the file name, so that the usage's order,
// `import FILE.csv --device-column tag_device`, works with package flag.
func reorderFlags(args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			if !containsEq(a) && i+1 < len(args) && (a == "--device-column" || a == "-device-column") {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			rest = append(rest, a)
		}
	}
	return append(flags, rest...)
}

func containsEq(s string) bool {
	for _, c := range s {
		if c == '=' {
			return true
		}
	}
	return false
}
