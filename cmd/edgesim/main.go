// Command edgesim runs simulated devices against edgegate (or any broker or server
// speaking their protocol): for demos, end-to-end tests and load. Each subcommand is
// one protocol. It only generates traffic and answers writes; it checks nothing about
// the gateway itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one simulator. Each lives in its own file and registers itself in
// init(), so that adding a protocol touches no other simulator.
type command struct {
	name    string
	summary string // the usage lines, already indented
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("edgesim: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func usage() string {
	var b strings.Builder
	b.WriteString("edgesim: simulated devices and load generators for edgegate\n\nUsage:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString(commands[n].summary)
	}
	b.WriteString("\nRun 'edgesim COMMAND -h' for a command's flags. SIGINT or SIGTERM stops a run cleanly.\n")
	return b.String()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error that is the user's: exit code 2.
var errUsage = errors.New("usage")

// simOptions are one simulator's flags.
type simOptions interface {
	flags(fs *flag.FlagSet)
	validate() error
}

// parseOptions reads a simulator's flags into o and checks them; a simulator takes
// no other arguments.
func parseOptions(name string, o simOptions, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return o.validate()
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd := args[0]; cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage())
	default:
		c, ok := commands[cmd]
		if !ok {
			fmt.Fprintf(stderr, "edgesim: unknown command %q\n\n%s", cmd, usage())
			return 2
		}
		err = c.run(ctx, args[1:], stdout, stderr)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "edgesim %s: %v\n", args[0], err)
		return 2
	}
	fmt.Fprintf(stderr, "edgesim %s: %v\n", args[0], err)
	return 1
}
