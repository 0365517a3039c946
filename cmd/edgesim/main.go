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
	"syscall"
)

const usage = `edgesim: simulated devices and load generators for edgegate

Usage:
  edgesim mqtt [flags]      MQTT devices: readings on devices/{device}/{point},
                            writes taken from devices/{device}/{point}/set
  edgesim modbus [flags]    Modbus/TCP server (not in this build yet)
  edgesim opcua [flags]     OPC UA server (not in this build yet)
  edgesim coap [flags]      CoAP devices (not in this build yet)

Run 'edgesim COMMAND -h' for a command's flags. SIGINT or SIGTERM stops a run cleanly.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error that is the user's: exit code 2.
var errUsage = errors.New("usage")

// notYet are the simulators the contract names that this build does not have.
var notYet = map[string]string{
	"modbus": "the Modbus/TCP simulator",
	"opcua":  "the OPC UA simulator",
	"coap":   "the CoAP simulator",
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd := args[0]; cmd {
	case "mqtt":
		err = mqttMain(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		if what, ok := notYet[cmd]; ok {
			fmt.Fprintf(stderr, "edgesim %s: not yet: %s is not in this build of edgesim; only 'edgesim mqtt' is\n", cmd, what)
			return 1
		}
		fmt.Fprintf(stderr, "edgesim: unknown command %q\n\n%s", cmd, usage)
		return 2
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
